from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdanet.errors import DataError
from tdanet.evaluation import evaluation_dataset, mean_si_snri, summarize
from tdanet.losses import si_snr

from .synthetic_speech import write_split


class Oracle(torch.nn.Module):
    """Returns given sources in swapped order, whatever the input."""

    def __init__(self, sources: torch.Tensor) -> None:
        super().__init__()
        self.sources = sources

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.sources.flip(0).unsqueeze(0)


def test_mean_si_snri_of_perfect_estimates(tmp_path: Path) -> None:
    write_split(tmp_path / "tt", "mix", count=1)
    data = evaluation_dataset(tmp_path / "tt", 8000)
    mixture, sources, _ = data[0]
    expected = float(
        (si_snr(sources, sources) - si_snr(mixture.expand_as(sources), sources)).mean()
    )
    assert mean_si_snri(Oracle(sources), [data[0]]) == pytest.approx(expected, abs=1e-3)
    assert expected > 20


def test_evaluation_dataset_needs_references(tmp_path: Path) -> None:
    (tmp_path / "tt" / "mix").mkdir(parents=True)
    with pytest.raises(DataError, match="expected reference folders s1, s2"):
        evaluation_dataset(tmp_path / "tt", 8000)
    with pytest.raises(DataError, match="no mixture folder"):
        evaluation_dataset(tmp_path, 8000)


def test_summary_skips_missing_scores() -> None:
    rows = [{"si_snr_i": 1.0, "pesq": float("nan")}, {"si_snr_i": 3.0, "pesq": 2.0}]
    assert summarize(rows) == {"si_snr_i": 2.0, "pesq": 2.0}

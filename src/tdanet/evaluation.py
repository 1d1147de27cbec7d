"""Score a model on a folder of mixtures with reference sources (any published layout).

Each mixture is separated whole (no chunking: the scores are the model's, as in the paper)
and scored with :func:`tdanet.metrics.utterance_metrics`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import replaced_on_success
from .data.layouts import SeparationFolderDataset, count_source_folders, detect_mixture_folder
from .errors import DataError
from .metrics import utterance_metrics

METRIC_COLUMNS = ("si_snr", "si_snr_i", "sdr", "sdr_i", "pesq", "stoi")


def evaluation_dataset(
    split_dir: Path, sample_rate: int, mix_folder: str | None = None, sources: int | None = None
) -> SeparationFolderDataset:
    """The whole utterances of a split folder (mixture folder and s1..sN), checked."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: no such folder of mixtures")
    mix_folder = mix_folder or detect_mixture_folder(split_dir)
    count = sources or count_source_folders(split_dir)
    if count < 2:
        raise DataError(f"{split_dir}: expected reference folders s1, s2, ... next to {mix_folder}")
    return SeparationFolderDataset(split_dir, mix_folder, count, sample_rate, segment=None)


def evaluate(
    model: torch.nn.Module,
    dataset: SeparationFolderDataset,
    sample_rate: int,
    with_pesq: bool = False,
    with_stoi: bool = False,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per utterance: name, duration (s) and the metrics (see tdanet.metrics)."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        mixture, references, name = dataset[index]
        with torch.inference_mode():
            estimates = model(mixture.unsqueeze(0))[0].float().numpy()
        if estimates.shape[0] != references.shape[0]:
            raise DataError(
                f"{name}: the model separates {estimates.shape[0]} sources but the data has "
                f"{references.shape[0]}"
            )
        row: dict[str, Any] = {"name": name, "duration": mixture.shape[-1] / sample_rate}
        row.update(
            utterance_metrics(
                mixture.numpy(), estimates, references.numpy(), sample_rate, with_pesq, with_stoi
            )
        )
        yield row


def mean_si_snri(
    model: torch.nn.Module, items: Iterable[tuple[torch.Tensor, torch.Tensor, str]]
) -> float:
    """Mean SI-SNR improvement (dB, PIT) of ``model`` over (mixture (T,), sources (C, T), name)
    items, as the training's validation computes it."""
    from .losses import pit_si_snr, si_snr

    gains = []
    with torch.inference_mode():
        for mixture, sources, _ in items:
            score, _ = pit_si_snr(model(mixture.unsqueeze(0)).float(), sources.unsqueeze(0))
            baseline = si_snr(mixture.expand_as(sources), sources).mean()
            gains.append(float(score[0] - baseline))
    if not gains:
        raise DataError("no items to score")
    return float(np.mean(gains))


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of every metric column present (NaNs, e.g. failed PESQ, are skipped)."""
    summary = {}
    for column in METRIC_COLUMNS:
        values = [r[column] for r in rows if column in r and not math.isnan(r[column])]
        if values:
            summary[column] = float(np.mean(values))
    return summary


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """CSV with a header, written to a temporary name and renamed (no partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as temp, open(temp, "x", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def evaluate_to_csv(
    model: torch.nn.Module,
    dataset: SeparationFolderDataset,
    sample_rate: int,
    csv_path: Path,
    with_pesq: bool = False,
    with_stoi: bool = False,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Evaluate, write the per-utterance CSV, and return the means."""
    rows = []
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for row in evaluate(model, dataset, sample_rate, with_pesq, with_stoi, limit):
        rows.append(row)
        if progress is not None:
            progress(len(rows), total)
    write_rows(csv_path, rows)
    return summarize(rows)

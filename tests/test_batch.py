from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet.audio import InputFile
from tdanet.batch import BatchOptions, separate_many
from tdanet.model import PRESETS
from tdanet.separate import Separator


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator("tdanet-tiny", chunk_seconds=1.0, overlap_seconds=0.25)


def noise(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = 0.1 * np.random.default_rng(0).standard_normal(round(seconds * 16000))
    sf.write(path, signal.astype(np.float32), 16000)
    return path


def test_one_outcome_per_input_and_a_bad_file_does_not_stop_the_batch(
    tmp_path: Path, separator: Separator
) -> None:
    good = noise(tmp_path / "in" / "a" / "talk.wav")
    twin = noise(tmp_path / "in" / "b" / "talk.wav")
    silent = tmp_path / "in" / "quiet.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    files = [InputFile(good, Path()), InputFile(twin, Path()), InputFile(silent, Path())]
    outcomes = list(separate_many(separator, files, tmp_path / "out", BatchOptions()))
    assert [o.status for o in outcomes] == ["done", "failed", "failed"]
    assert [p.name for p in outcomes[0].outputs] == ["talk_spk1.wav", "talk_spk2.wav"]
    assert "would overwrite those of" in (outcomes[1].error or "")
    assert "is silent" in (outcomes[2].error or "")
    assert outcomes[0].seconds == pytest.approx(0.5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "talk_spk1.wav",
        "talk_spk2.wav",
    ]


def test_skip_existing_and_overwrite(tmp_path: Path, separator: Separator) -> None:
    files = [InputFile(noise(tmp_path / "talk.wav"), Path())]
    out = tmp_path / "out"
    assert next(separate_many(separator, files, out, BatchOptions())).status == "done"
    again = next(separate_many(separator, files, out, BatchOptions()))
    assert again.status == "failed" and "already exists" in (again.error or "")
    skipped = next(separate_many(separator, files, out, BatchOptions(skip_existing=True)))
    assert skipped.status == "skipped" and skipped.outputs == []
    assert next(separate_many(separator, files, out, BatchOptions(overwrite=True))).status == "done"
    with pytest.raises(ValueError, match="exclude each other"):
        next(separate_many(separator, files, out, BatchOptions(overwrite=True, skip_existing=True)))


class FixedOutputs:
    """A stand-in model whose outputs are fixed functions of time: ``single`` puts all of a
    200 Hz tone in output 1 and next to nothing in output 2 (a recording of one voice, cleanly
    kept apart); ``alike`` has the tone take turns between the outputs every second (two
    voices that sound alike); ``two`` the tone and a noise (two different voices)."""

    def __init__(self, kind: str) -> None:
        self.config = PRESETS["tdanet-tiny"]
        self.kind = kind

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        length = batch.shape[-1]
        t = torch.arange(length) / 16000
        tone = 0.3 * torch.sin(2 * torch.pi * 200 * t)
        hiss = 0.1 * torch.randn(length, generator=torch.Generator().manual_seed(length))
        if self.kind == "single":
            return torch.stack([tone, 1e-4 * hiss])[None]
        other = tone if self.kind == "alike" else hiss
        first = ((t % 2) < 1).float()
        return torch.stack([tone * first, other * (1 - first)])[None]


@pytest.mark.parametrize(("kind", "single"), [("single", True), ("alike", False), ("two", False)])
def test_a_recording_of_one_voice_gets_a_note(tmp_path: Path, kind: str, single: bool) -> None:
    model = FixedOutputs(kind)
    # The recording is the sum of the stand-in's outputs, so they keep their levels.
    path = tmp_path / "in.wav"
    sf.write(path, model(torch.zeros(1, 6 * 16000))[0].sum(dim=0).numpy(), 16000)
    separator = Separator(model, chunk_seconds=10.0)
    (outcome,) = separate_many(
        separator, [InputFile(path, Path())], tmp_path / "out", BatchOptions()
    )
    noted = any("seems to hold a single speaker" in note for note in outcome.notes)
    assert outcome.status == "done" and noted == single

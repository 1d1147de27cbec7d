"""Bad audio in training data never turns into NaN weights, and a run reports what it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet.checkpoint import load_checkpoint, read_checkpoint
from tdanet.cli import main
from tdanet.errors import TrainingError
from tdanet.model import PRESETS, TDANet
from tdanet.train.module import SeparationModule
from tdanet.train.recipe import OptimSection

from ..synthetic_speech import voice, write_speaker_corpus
from .test_train import RECIPE, tiny_overrides


def spoil_corpus(root: Path) -> list[Path]:
    """Add a NaN file to every speaker, and a truncated WAV and a cut-off FLAC to two."""
    bad = []
    for speaker in sorted(p for p in root.iterdir() if p.is_dir()):
        path = speaker / "1" / "nan.wav"
        samples = voice(0, 1.5, 8000, 0)
        samples[100:200] = np.nan
        sf.write(path, samples, 8000, subtype="FLOAT")
        bad.append(path)
    truncated = root / "spk00" / "1" / "truncated.wav"
    sf.write(truncated, voice(0, 1.5, 8000, 1), 8000)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    cut = root / "spk01" / "1" / "cut.flac"
    sf.write(cut, voice(1, 1.5, 8000, 1), 8000)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return [*bad, truncated, cut]


def test_bad_files_are_skipped_one_warning_each_and_never_reach_the_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6)
    bad = spoil_corpus(corpus)
    run = tmp_path / "run"
    code = main(["train", "--recipe", str(RECIPE), *tiny_overrides(corpus, run, 1)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert f"skipped {len(bad)} unusable data file(s):" in captured.err
    for path in bad:
        assert str(path) in captured.err
    assert f"{bad[0]}: contains NaN or infinite samples" in captured.err
    assert "truncated.wav: truncated: the header declares" in captured.err
    assert "cut.flac: decoding failed" in captured.err
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    assert f"checkpoints: {best} (best), {last} (last)" in captured.out
    assert best.is_file() and last.is_file()
    for tensor in read_checkpoint(last)["state_dict"].values():
        assert torch.isfinite(tensor).all()
    load_checkpoint(best)


def test_a_non_finite_training_loss_stops_the_run() -> None:
    module = SeparationModule(TDANet(PRESETS["tdanet-tiny"]), OptimSection(), seed=0)
    mixture = torch.full((1, 4000), float("nan"))
    batch = (mixture, torch.zeros(1, 2, 4000), ["broken"])
    with pytest.raises(TrainingError, match=r"training loss is nan at step 0 \(batch broken\)"):
        module.training_step(batch, 0)


def test_a_run_without_a_validation_reports_no_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6, utterances=2)
    overrides = [*tiny_overrides(corpus, tmp_path / "run", 1), "trainer.max_time=00:00:00:00"]
    assert main(["train", "--recipe", str(RECIPE), *overrides]) == 1
    captured = capsys.readouterr()
    assert "best validation loss" not in captured.out
    assert "tdanet train: error: the run ended before its first validation" in captured.err
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tdanet.checkpoint import checkpoint_metadata
from tdanet.cli import main

from ..synthetic_speech import write_speaker_corpus
from ..test_cli import run_cli
from ..train.test_train import RECIPE, tiny_overrides


def test_two_process_ddp_training_on_cpu(tmp_path: Path) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6)
    overrides = tiny_overrides(corpus, tmp_path / "run", 1)
    overrides += ["data.batch_size=1", "trainer.accelerator=cpu", "trainer.devices=2"]
    result = run_cli("train", "--recipe", str(RECIPE), *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    # 4 mixtures shared by 2 processes at batch 1: 2 optimizer steps, not 4.
    metadata = checkpoint_metadata(tmp_path / "run" / "checkpoints" / "last.pt")
    assert metadata["global_step"] == 2
    assert result.stdout.count("best validation loss") == 1


def test_bad_recipe_and_data_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, message in [
        (["data.nope=1"], "data.nope: unknown recipe key"),
        ([f"data.root={tmp_path / 'missing'}"], "no such folder of speaker recordings"),
        ([f"output_dir={tmp_path / 'new'}", "--resume"], "resume.ckpt: no checkpoint to resume"),
    ]:
        code = main(["train", "--recipe", str(RECIPE), f"data.root={tmp_path}", *extra])
        err = capsys.readouterr().err
        assert code == 1
        assert message in err and err.strip().count("\n") == 0


def test_bad_resume_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from tdanet import load_model
    from tdanet.checkpoint import save_checkpoint

    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    state = {"pytorch-lightning_version": "2.6.6", "loops": {}, "epoch": 0}
    foreign = tmp_path / "foreign.ckpt"
    torch.save({**state, "state_dict": {"model.other.weight": torch.zeros(3)}}, foreign)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(foreign.read_bytes()[:300])
    model_file = save_checkpoint(load_model("tdanet-tiny", sample_rate=8000), tmp_path / "best.pt")
    for path, message in [
        (empty, "not a loadable TDANet checkpoint (EOFError)"),
        (truncated, "not a loadable TDANet checkpoint (PytorchStreamReader failed"),
        (model_file, "not a training checkpoint written by tdanet train; it holds model weights"),
        (foreign, "this training checkpoint is for another model configuration"),
    ]:
        overrides = tiny_overrides(corpus, tmp_path / f"run-{path.stem}", 1)
        argv = ["train", "--recipe", str(RECIPE), *overrides, "--resume-from", str(path)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{path}: {message}" in err, err
        assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_time_limit_includes_the_final_validation_and_no_lightning_tips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning's info lines, whatever handlers and levels earlier tests left behind.
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    monkeypatch.setattr(lightning_log, "level", logging.INFO)
    lightning_log.addHandler(handler)
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6)
    overrides = tiny_overrides(corpus, tmp_path / "run", 50)
    try:
        code = main(["train", "--recipe", str(RECIPE), *overrides, "trainer.max_time=00:00:00:01"])
    finally:
        lightning_log.removeHandler(handler)
    output = "\n".join(lines)
    assert code == 0
    assert "Time limit: stopping after" in output
    assert "💡" not in output and "litlogger" not in output
    assert checkpoint_metadata(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] < 49

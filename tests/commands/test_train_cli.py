from __future__ import annotations

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

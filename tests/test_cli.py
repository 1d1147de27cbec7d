from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tdanet.cli import main, parse

from .conftest import OFFICIAL_SMALL


def cli_command() -> list[str]:
    """The installed ``tdanet`` script, or ``python -m tdanet`` without one."""
    exe = shutil.which("tdanet")
    return [exe] if exe else [sys.executable, "-m", "tdanet"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_info_reports_release_checkpoint() -> None:
    result = run_cli("info", str(OFFICIAL_SMALL / "checkpoint.pth"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parameters"] == 25463
    assert report["config"]["num_blocks"] == 3


def test_bad_model_is_one_line_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    result = run_cli("info", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "bad.pt" in result.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    # `tdanet info M | head -1`: the pipe's reader is gone before the command writes.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [*cli_command(), "info", "tdanet-tiny"],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    finally:
        os.close(write)
    assert result.returncode == 141
    assert b"Traceback" not in result.stderr


def test_checkpoint_with_a_foreign_object_names_it(tmp_path: Path) -> None:
    import argparse

    import torch

    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        payload = torch.load(OFFICIAL_SMALL / "checkpoint.pth", weights_only=True)
    payload["hparams"] = argparse.Namespace(lr=1e-3)
    path = tmp_path / "with-hparams.pth"
    torch.save(payload, path)
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "mix.wav"
    sf.write(audio, np.load(OFFICIAL_SMALL / "input.npy")[0], 16000)
    out = tmp_path / "out"
    result = run_cli("separate", str(audio), "-o", str(out), "--model", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "argparse.Namespace" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not out.exists() or not any(out.iterdir())


def test_untrained_presets_are_named_on_stderr_and_in_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["info", "tdanet-tiny"]) == 0
    captured = capsys.readouterr()
    assert "weights: random: an untrained preset" in captured.out
    assert captured.err.startswith("tdanet info: warning: tdanet-tiny is an untrained preset")
    assert "tdanet-demo" in captured.err
    assert main(["info", "tdanet-tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] is False

    assert main(["info", str(OFFICIAL_SMALL / "checkpoint.pth"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["trained"] is True
    assert captured.err == ""


def test_onnx_file_on_the_torch_backend_and_unknown_names_say_what_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07onnx-ish")
    assert main(["info", str(onnx_file)]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "--backend onnxruntime" in err and "pickled" not in err

    assert main(["info", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "tdanet-demo" in err and "JusperLee/TDANetBest-4ms-LRS2" in err


def test_positional_items_may_follow_the_options() -> None:
    args = parse(["train", "--recipe", "r.yaml", "--resume", "data.root=/d", "a.b=1"])
    assert args.resume and args.overrides == ["data.root=/d", "a.b=1"]
    args = parse(["separate", "a.wav", "-o", "out", "b.wav"])
    assert args.inputs == ["a.wav", "b.wav"] and args.output_dir == "out"


def test_unknown_options_are_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["separate", "a.wav", "--no-such-option"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_average_writes_a_new_file_and_never_replaces_one_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = str(OFFICIAL_SMALL / "checkpoint.pth")
    out = tmp_path / "mean.pt"
    assert main(["average", release, release, "--out", str(out)]) == 0
    assert "the mean of 2 checkpoints" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["average", release, "--out", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["average", str(out), "--out", str(out), "--force"]) == 1
    assert "is one of the inputs" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == 25463

"""``tdanet stream``: files and stdin, block by block, equal to the offline causal model."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet import save_checkpoint
from tdanet.cli import main
from tdanet.model import TFACM, TFACM_PRESETS

from ..conftest import randomize_
from .test_separate_cli import files_under, speech_like


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> tuple[Path, TFACM]:
    model = randomize_(TFACM(TFACM_PRESETS["tfacm-tiny"])).eval()
    return save_checkpoint(model, tmp_path / "tiny.pt"), model


def stream_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "tdanet", "stream", *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=300, env=os.environ)


def test_file_output_equals_the_offline_model(
    tmp_path: Path, tiny_checkpoint: tuple[Path, TFACM], capsys: pytest.CaptureFixture[str]
) -> None:
    path, model = tiny_checkpoint
    mixture = speech_like(0.3, 8000)[:, 0]
    sf.write(tmp_path / "mix.wav", mixture, 8000, subtype="FLOAT")
    out = tmp_path / "out"
    args = ["stream", str(tmp_path / "mix.wav"), "-o", str(out), "--model", str(path)]
    assert main([*args, "--block-ms", "3"]) == 0
    printed = capsys.readouterr()
    assert "algorithmic latency: 4 ms" in printed.out
    assert "real-time factor:" in printed.out
    assert "random weights" not in printed.err
    with torch.no_grad():
        offline = model(torch.from_numpy(mixture))[0].numpy()
    for index in range(2):
        data, rate = sf.read(out / f"mix_spk{index + 1}.wav", dtype="float32")
        assert rate == 8000
        assert data.shape == mixture.shape
        assert np.abs(data - offline[index]).max() <= 1e-5


def test_other_rates_and_channels_keep_the_input_length_and_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf.write(tmp_path / "call.flac", speech_like(0.4, 44100, channels=2), 44100)
    out = tmp_path / "out"
    assert main(["stream", str(tmp_path / "call.flac"), "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err  # the bundled, trained tfacm-demo
    assert files_under(out) == ["call_spk1.wav", "call_spk2.wav"]
    for name in files_under(out):
        info = sf.info(out / name)
        assert (info.samplerate, info.channels, info.frames) == (44100, 1, int(0.4 * 44100))


def test_stdin_wav_and_raw_pcm(tmp_path: Path, tiny_checkpoint: tuple[Path, TFACM]) -> None:
    path, _ = tiny_checkpoint
    samples = (speech_like(0.25, 16000)[:, 0] * 32767).astype("<i2")
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    result = stream_cli(
        "-", "-o", str(tmp_path / "wav"), "--model", str(path), stdin=buffer.getvalue()
    )
    assert result.returncode == 0, result.stderr.decode()
    assert sf.info(tmp_path / "wav" / "stdin_spk2.wav").frames == samples.shape[0]
    raw = stream_cli(
        "-", "--raw-rate", "8000", "-o", str(tmp_path / "raw"), "--model", str(path),
        stdin=samples.tobytes() + b"\x01",  # a trailing odd byte is not a sample
    )  # fmt: skip
    assert raw.returncode == 0, raw.stderr.decode()
    info = sf.info(tmp_path / "raw" / "stdin_spk1.wav")
    assert (info.samplerate, info.frames) == (8000, samples.shape[0])


def test_errors_are_one_line_and_leave_no_output(tmp_path: Path) -> None:
    sf.write(tmp_path / "mix.wav", speech_like(0.2, 8000), 8000)
    out = tmp_path / "out"
    result = stream_cli(str(tmp_path / "mix.wav"), "-o", str(out), "--model", "tdanet-tiny")
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "cannot stream" in stderr
    bad = stream_cli("-", "-o", str(out), stdin=b"not audio at all")
    assert bad.returncode == 1 and "--raw-rate" in bad.stderr.decode()
    assert "Traceback" not in bad.stderr.decode()
    assert not out.exists() or files_under(out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block-ms", "0"], "--block-ms must be positive"),
        (["--mic"], "exactly one of INPUT"),
        (["--raw-rate", "8000"], "--raw-rate"),
        (["--seconds", "2"], "only to --mic"),
    ],
)
def test_bad_options(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sf.write(tmp_path / "mix.wav", speech_like(0.1, 8000), 8000)
    assert main(["stream", str(tmp_path / "mix.wav"), "-o", str(tmp_path / "o"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_samples_midway_leave_no_partial_output(
    tmp_path: Path, tiny_checkpoint: tuple[Path, TFACM], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = tiny_checkpoint
    mixture = speech_like(0.5, 8000)[:, 0]
    mixture[3000] = np.nan
    sf.write(tmp_path / "mix.wav", mixture, 8000, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["stream", str(tmp_path / "mix.wav"), "-o", str(out), "--model", str(path)]) == 1
    assert "NaN" in capsys.readouterr().err
    assert files_under(out) == []


def test_existing_outputs_are_kept_without_overwrite(
    tmp_path: Path, tiny_checkpoint: tuple[Path, TFACM], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = tiny_checkpoint
    sf.write(tmp_path / "mix.wav", speech_like(0.1, 8000), 8000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mix_spk1.wav").write_bytes(b"keep me")
    args = ["stream", str(tmp_path / "mix.wav"), "-o", str(out), "--model", str(path)]
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err
    assert (out / "mix_spk1.wav").read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert sf.info(out / "mix_spk1.wav").frames == 800


def test_microphone_needs_sounddevice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    assert main(["stream", "--mic", "-o", str(tmp_path / "o"), "--model", "tfacm-tiny"]) == 1
    assert "pip install sounddevice" in capsys.readouterr().err


def test_microphone_mode_with_a_stand_in_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--mic reads blocks from sounddevice's callback, writes every source and plays one."""
    played: list[np.ndarray] = []

    class Microphone:
        def __init__(self, *, blocksize: int, callback: Any, **_: Any) -> None:
            self.blocksize, self.callback = blocksize, callback

        def __enter__(self) -> Microphone:
            for _ in range(10):
                block = 0.1 * np.ones((self.blocksize, 1), np.float32)
                self.callback(block, self.blocksize, None, None)
            return self

        def __exit__(self, *_: object) -> None:
            pass

    class Speaker:
        def __init__(self, **_: Any) -> None:
            pass

        def start(self) -> None:
            pass

        def write(self, data: np.ndarray) -> None:
            played.append(data)

        def close(self) -> None:
            pass

    fake = types.SimpleNamespace(InputStream=Microphone, OutputStream=Speaker)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    out = tmp_path / "o"
    args = ["stream", "--mic", "-o", str(out), "--model", "tfacm-tiny", "--block-ms", "4"]
    assert main([*args, "--seconds", "0.04", "--play", "2"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert [sf.info(out / f"mic_spk{i}.wav").frames for i in (1, 2)] == [320, 320]
    assert sum(block.shape[0] for block in played) == 320 - 32 + 8  # all but the last window


def test_the_default_is_the_bundled_causal_model_and_presets_are_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tdanet.commands.stream import DEFAULT_STREAM_MODEL
    from tdanet.pretrained import BUNDLED_MODELS, DEFAULT_CAUSAL_MODEL

    assert DEFAULT_STREAM_MODEL == DEFAULT_CAUSAL_MODEL and DEFAULT_CAUSAL_MODEL in BUNDLED_MODELS
    sf.write(tmp_path / "a.wav", speech_like(0.3, 16000), 16000)
    out = tmp_path / "out"
    assert main(["stream", str(tmp_path / "a.wav"), "-o", str(out), "--model", "tfacm-tiny"]) == 0
    err = capsys.readouterr().err
    assert "tfacm-tiny is an untrained preset" in err and "bundled causal tfacm-demo" in err

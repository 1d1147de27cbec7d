from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.cli import main

from ..test_cli import run_cli

MODEL = (
    "--model",
    "tdanet-tiny",
    "--threads",
    "1",
    "--chunk-seconds",
    "1",
    "--overlap-seconds",
    "0.25",
)


def speech_like(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    mono = 0.2 * np.sin(2 * np.pi * 200 * t) + 0.05 * rng.standard_normal(frames)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_files_folders_and_globs_mirror_the_input_tree(tmp_path: Path) -> None:
    src = tmp_path / "recordings"
    (src / "day1").mkdir(parents=True)
    sf.write(src / "day1" / "meeting.flac", speech_like(2.5, 44100, channels=2), 44100)
    sf.write(src / "call.wav", speech_like(1.2, 8000), 8000, subtype="PCM_24")
    loose = tmp_path / "loose"
    loose.mkdir()
    sf.write(loose / "memo.ogg", speech_like(1.0, 16000), 16000)
    out = tmp_path / "out"

    result = run_cli("separate", str(src), str(loose / "*.ogg"), "-o", str(out), *MODEL)
    assert result.returncode == 0, result.stderr
    assert files_under(out) == [
        "call_spk1.wav",
        "call_spk2.wav",
        "day1/meeting_spk1.wav",
        "day1/meeting_spk2.wav",
        "memo_spk1.wav",
        "memo_spk2.wav",
    ]
    meeting = sf.info(out / "day1" / "meeting_spk1.wav")
    assert (meeting.samplerate, meeting.channels, meeting.frames) == (44100, 1, int(2.5 * 44100))
    assert sf.info(out / "call_spk2.wav").samplerate == 8000
    assert "meeting.flac: 2 channels downmixed to mono" in result.stderr
    assert "separated 3 file(s)" in result.stdout and "0 failed" in result.stdout

    before = (out / "memo_spk1.wav").read_bytes()
    again = run_cli("separate", str(loose / "memo.ogg"), "-o", str(out), *MODEL)
    assert again.returncode == 1
    assert "memo_spk1.wav: already exists; pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "memo_spk1.wav").read_bytes() == before
    forced = run_cli("separate", str(loose / "memo.ogg"), "-o", str(out), "--overwrite", *MODEL)
    assert forced.returncode == 0, forced.stderr


def test_bad_inputs_fail_one_by_one_and_the_rest_is_processed(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "empty_dir").mkdir()
    sf.write(src / "good.wav", speech_like(1.5, 16000), 16000)
    (src / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (src / "zero_bytes.flac").write_bytes(b"")
    sf.write(src / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(
        src / "nan.wav",
        np.r_[np.ones(8000) * 0.1, np.nan].astype(np.float32),
        16000,
        subtype="FLOAT",
    )
    sf.write(src / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(src / "short.wav", np.full(20, 0.1, np.float32), 16000)
    out = tmp_path / "out"

    result = run_cli(
        "separate",
        str(src),
        str(tmp_path / "missing.wav"),
        str(tmp_path / "empty_dir"),
        "-o",
        str(out),
        *MODEL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    expected = {
        "missing.wav": "no such file",
        "empty_dir": "no audio files",
        "corrupt.wav": "not a readable audio file",
        "zero_bytes.flac": "not a readable audio file",
        "empty.wav": "no audio samples",
        "nan.wav": "NaN or infinite",
        "silent.wav": "silent",
        "short.wav": "too short",
    }
    assert len(errors) == len(expected)
    for name, problem in expected.items():
        assert any(name in line and problem in line for line in errors), (name, errors)
    # Only the good file's outputs, and no temporary or scratch file left behind.
    assert files_under(out) == ["good_spk1.wav", "good_spk2.wav"]
    assert "separated 1 file(s)" in result.stdout and "8 failed" in result.stdout


def test_unwritable_output_folder_and_wrong_backend_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Error paths that stop before any model runs, checked in-process (no start-up cost)."""
    sf.write(tmp_path / "a.wav", speech_like(1.0, 16000), 16000)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    assert main(["separate", str(tmp_path / "a.wav"), "-o", str(blocker / "out"), *MODEL]) == 1
    err = capsys.readouterr().err
    assert f"{blocker}: is a file, not a folder" in err
    assert "tdanet separate: warning: tdanet-tiny is an untrained preset" in err

    bad_model = ["--backend", "onnxruntime", "--model", str(tmp_path / "m.pt")]
    assert main(["separate", str(tmp_path / "a.wav"), *bad_model]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "m.pt" in err and ".onnx" in err


def test_inputs_with_the_same_output_names_are_not_mixed_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf.write(tmp_path / "take.wav", speech_like(1.0, 16000, seed=1), 16000)
    sf.write(tmp_path / "take.flac", speech_like(1.0, 16000, seed=2), 16000)
    out = tmp_path / "out"
    code = main(
        [
            "separate",
            str(tmp_path / "take.flac"),
            str(tmp_path / "take.wav"),
            "-o",
            str(out),
            *MODEL,
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"{tmp_path / 'take.wav'}: its outputs would overwrite those of" in captured.err
    assert "separated 1 file(s)" in captured.out
    assert files_under(out) == ["take_spk1.wav", "take_spk2.wav"]


def test_output_folder_may_be_the_input_folder_and_earlier_outputs_are_not_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    sf.write(folder / "good.wav", speech_like(1.0, 16000), 16000)
    assert main(["separate", str(folder), "-o", str(folder), "--quiet", *MODEL]) == 0
    assert files_under(folder) == ["good.wav", "good_spk1.wav", "good_spk2.wav"]
    capsys.readouterr()

    other = tmp_path / "other"
    assert main(["separate", str(folder), "-o", str(other), "--quiet", *MODEL]) == 0
    captured = capsys.readouterr()
    assert f"note: {folder}: skipped 2 earlier output(s)" in captured.err
    assert files_under(other) == ["good_spk1.wav", "good_spk2.wav"]
    # Named as a file, an earlier output is separated like any recording.
    named = ["separate", str(folder / "good_spk1.wav"), "-o", str(other), "--quiet", *MODEL]
    assert main(named) == 0
    assert "good_spk1_spk1.wav" in files_under(other)


def test_skip_existing_finishes_an_interrupted_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(("a.wav", "b.wav")):
        sf.write(folder / name, speech_like(1.0, 16000, seed=seed), 16000)
    out = tmp_path / "out"
    assert main(["separate", str(folder / "a.wav"), "-o", str(out), "--quiet", *MODEL]) == 0
    before = (out / "a_spk1.wav").read_bytes()
    capsys.readouterr()

    argv = ["separate", str(folder), "-o", str(out), "--quiet", *MODEL]
    assert main([*argv, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert f"{folder / 'a.wav'}: skipped, its outputs exist" in captured.out
    assert "separated 1 file(s)" in captured.out
    assert "1 skipped (outputs exist); 0 failed" in captured.out
    assert files_under(out) == ["a_spk1.wav", "a_spk2.wav", "b_spk1.wav", "b_spk2.wav"]
    assert (out / "a_spk1.wav").read_bytes() == before
    # Without it, existing outputs are still failures.
    assert main(argv) == 1


def test_files_and_globs_mirror_their_folders_below_the_common_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed, day in enumerate(("mon", "tue")):
        (tmp_path / "in" / day).mkdir(parents=True)
        sf.write(tmp_path / "in" / day / "take.wav", speech_like(1.0, 16000, seed=seed), 16000)
    explicit = [str(tmp_path / "in" / day / "take.wav") for day in ("mon", "tue")]
    out = tmp_path / "out"
    assert main(["separate", *explicit, "-o", str(out), "--quiet", *MODEL]) == 0
    expected = ["mon/take_spk1.wav", "mon/take_spk2.wav", "tue/take_spk1.wav", "tue/take_spk2.wav"]
    assert files_under(out) == expected
    globbed = tmp_path / "globbed"
    pattern = str(tmp_path / "in" / "*" / "take.wav")
    assert main(["separate", pattern, "-o", str(globbed), "--quiet", *MODEL]) == 0
    assert files_under(globbed) == expected

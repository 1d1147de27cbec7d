from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet import audio
from tdanet.cli import main

from ..media import FORMATS, make, video_only
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


def test_recordings_in_every_ffmpeg_format_are_separated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "phone"
    src.mkdir()
    made = {}
    for name in FORMATS:
        rate = FORMATS[name][3]
        channels = 1 if name == "amr" else 2
        path, _ = make(src / name, name, speech_like(1.2, rate, channels), streams=1)
        made[path.name] = path
    silent_video = video_only(src / "screen.mp4")
    out = tmp_path / "out"
    assert main(["separate", str(src), "-o", str(out), "--quiet", *MODEL]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == [
        f"tdanet separate: error: {silent_video}: holds no audio (video only); "
        "choose a recording with sound"
    ]
    for file_name, path in made.items():
        decoded, rate = audio.load_audio(path)
        for speaker in (1, 2):
            info = sf.info(out / f"{Path(file_name).stem}_spk{speaker}.wav")
            assert (info.samplerate, info.channels, info.frames) == (rate, 1, decoded.shape[1])
    assert not (out / "screen_spk1.wav").exists()
    assert f"separated {len(made)} file(s)" in captured.out


def seeded(args: list[str]) -> int:
    """``main(args)`` with the same random weights of the tiny preset every time."""
    torch.manual_seed(0)
    return main(args)


def test_stream_and_output_format_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = speech_like(1.0, 48000, 2)
    path, _ = make(tmp_path / "dubbed", "mkv-video", loud, streams=2)
    out = tmp_path / "out"
    assert seeded(["separate", str(path), "-o", str(out), "--format", "flac", *MODEL]) == 0
    err = capsys.readouterr().err
    assert f"note: {path}: 2 audio streams (0: opus, 2 ch, 48000 Hz; 1: opus" in err
    assert "separating stream 0 (choose another with --stream N)" in err

    args = ["separate", str(path), "-o", str(out), "--overwrite", *MODEL]
    assert seeded([*args, "--stream", "1", "--format", "flac", "--bit-depth", "24"]) == 0
    assert "separating stream 1" in capsys.readouterr().err
    info = sf.info(out / "dubbed_spk2.flac")
    assert (info.subtype, info.samplerate, info.frames) == ("PCM_24", 48000, 48000)
    # The same as separating the second stream's decoded audio saved as a WAV file.
    sf.write(tmp_path / "second.wav", audio.load_audio(path, stream=1)[0].T, 48000, "FLOAT")
    flac24 = ["--format", "flac", "--bit-depth", "24"]
    assert seeded(["separate", str(tmp_path / "second.wav"), "-o", str(out), *flac24, *MODEL]) == 0
    np.testing.assert_array_equal(
        sf.read(out / "dubbed_spk1.flac")[0], sf.read(out / "second_spk1.flac")[0]
    )

    for audio_format, subtype in [("mp3", "MPEG_LAYER_III"), ("opus", "OPUS")]:
        assert seeded([*args, "--format", audio_format]) == 0
        info = sf.info(out / f"dubbed_spk1.{audio_format}")
        assert (info.subtype, info.samplerate) == (subtype, 48000)
        assert info.frames == pytest.approx(48000, abs=1200)

    for bad, message in [
        (["--stream", "2"], "has 2 audio stream(s), no stream 2 (streams count from 0)"),
        (["--format", "opus", "--bit-depth", "24"], "opus has no bit depth"),
        (["--format", "flac", "--bit-depth", "32"], "flac cannot be written at 32 bits"),
    ]:
        assert seeded([*args, *bad]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("error:") == 1


def test_truncated_wav_is_separated_with_a_warning_naming_the_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "whole.wav"
    sf.write(whole, speech_like(1.0, 16000), 16000)
    data = whole.read_bytes()
    # A recording cut short by a crash or a partial copy: the header still says 16000 frames.
    cut = tmp_path / "in" / "cut.wav"
    cut.parent.mkdir()
    cut.write_bytes(data[: 44 + 2 * 9000])
    assert main(["separate", str(cut), "-o", str(tmp_path / "out"), "--quiet", *MODEL]) == 0
    err = capsys.readouterr().err
    assert (
        f"tdanet separate: warning: {cut}: truncated: the header declares 16000 frames but the "
        "file holds 9000; separating the frames found"
    ) in err
    assert sf.info(tmp_path / "out" / "cut_spk1.wav").frames == 9000
    capsys.readouterr()
    assert main(["separate", str(whole), "-o", str(tmp_path / "out"), "--quiet", *MODEL]) == 0
    assert "the header declares" not in capsys.readouterr().err  # the path holds "truncated"


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


def test_workers_and_threads_are_checked_and_give_the_same_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(3.0, 16000), 16000, subtype="FLOAT")
    base = ["separate", str(path), "--chunk-seconds", "1", "--overlap-seconds", "0.25", "--quiet"]
    assert seeded([*base, "-o", str(tmp_path / "one"), "--workers", "1", *MODEL]) == 0
    assert seeded([*base, "-o", str(tmp_path / "two"), "--workers", "2", *MODEL]) == 0
    for speaker in (1, 2):
        one = sf.read(tmp_path / "one" / f"long_spk{speaker}.wav")[0]
        two = sf.read(tmp_path / "two" / f"long_spk{speaker}.wav")[0]
        np.testing.assert_array_equal(one, two)
    capsys.readouterr()
    for bad in (["--workers", "0"], ["--threads", "-1"]):
        assert main([*base, "-o", str(tmp_path / "bad"), *MODEL, *bad]) == 1
        err = capsys.readouterr().err
        assert f"{bad[0]} must be at least 1" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


FORKED_SEPARATE = """
import sys
import tdanet.separate as separate
from tdanet.cli import main

forked = []
real = separate.fork_is_safe
separate.fork_is_safe = lambda: forked.append(real()) or forked[-1]
code = main(["separate", sys.argv[1], "-o", sys.argv[2], "--workers", "2", "--model",
             "tdanet-tiny", "--chunk-seconds", "1", "--overlap-seconds", "0.25"])
print("exit", code, "forked", forked)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="forked workers are used on Linux only")
def test_the_cli_starts_no_thread_that_would_keep_workers_from_forking(tmp_path: Path) -> None:
    # A fresh interpreter, progress bars on: tqdm's monitor thread once made every run fall
    # back to worker threads.
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(3.0, 16000), 16000)
    done = subprocess.run(
        [sys.executable, "-c", FORKED_SEPARATE, str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "exit 0 forked [True]" in done.stdout


def test_precision_option_offers_the_library_precisions_and_separates(tmp_path: Path) -> None:
    from tdanet.commands.separate import add_arguments
    from tdanet.separate import PRECISIONS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    option = next(a for a in parser._actions if a.dest == "precision")
    assert tuple(option.choices or ()) == tuple(PRECISIONS)
    path = tmp_path / "clip.wav"
    sf.write(path, speech_like(1.5, 16000), 16000, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["separate", str(path), "-o", str(out), "--precision", "bf16", *MODEL]) == 0
    assert files_under(out) == ["clip_spk1.wav", "clip_spk2.wav"]


def test_no_pause_gate_keeps_what_the_model_gives_through_pauses(tmp_path: Path) -> None:
    rate = 16_000
    speech = speech_like(3.0, rate)[:, 0]
    hush = 1e-3 * np.random.default_rng(1).standard_normal(2 * rate).astype(np.float32)
    sf.write(tmp_path / "talk.wav", np.concatenate([speech, hush, speech]), rate)
    outputs = {}
    for name, extra in (("gated", ()), ("plain", ("--no-pause-gate",))):
        args = ["separate", str(tmp_path / "talk.wav"), "-o", str(tmp_path / name)]
        assert seeded([*args, *MODEL, "--bit-depth", "32", "--quiet", *extra]) == 0
        outputs[name] = np.stack([sf.read(tmp_path / name / f"talk_spk{i}.wav")[0] for i in (1, 2)])
    pause = slice(round(3.3 * rate), round(4.7 * rate))
    ratio = (outputs["gated"][:, pause] ** 2).sum() / (outputs["plain"][:, pause] ** 2).sum()
    assert 10 * np.log10(ratio) == pytest.approx(-20.0, abs=1.0)
    # Where the input speaks, the louder output is kept as it is (the untrained model's other
    # output may stay 8 dB or more below it: a pause too).
    speaking = slice(rate // 2, round(2.5 * rate))
    loud = int(np.argmax((outputs["plain"][:, speaking] ** 2).sum(axis=1)))
    np.testing.assert_array_equal(
        outputs["gated"][loud, speaking], outputs["plain"][loud, speaking]
    )

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tdanet import audio
from tdanet.errors import AudioContentError, AudioReadError, AudioWriteError, TDANetError


def tone(frames: int, channels: int, rate: int) -> np.ndarray:
    """(frames, channels) float32 test signal, a different tone per channel."""
    t = np.arange(frames)[:, None] / rate
    return (0.5 * np.sin(2 * np.pi * 440 * (1 + np.arange(channels)) * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "subtype", "atol"),
    [
        ("pcm_u8.wav", "PCM_U8", 1e-2),
        ("pcm16.wav", "PCM_16", 1e-4),
        ("pcm24.wav", "PCM_24", 1e-6),
        ("pcm32.wav", "PCM_32", 1e-7),
        ("float.wav", "FLOAT", 0.0),
        ("double.wav", "DOUBLE", 0.0),
        ("ulaw.wav", "ULAW", 5e-2),
        ("lossless.flac", "PCM_16", 1e-4),
        ("vorbis.ogg", "VORBIS", None),
        ("mpeg.mp3", "MPEG_LAYER_III", None),
    ],
)
def test_load_audio_reads_every_format_as_float32_channels_first(
    tmp_path: Path, name: str, subtype: str, atol: float | None
) -> None:
    data = tone(22050, 2, 22050)
    sf.write(tmp_path / name, data, 22050, subtype=subtype)
    samples, rate = audio.load_audio(tmp_path / name)
    assert rate == 22050
    assert samples.dtype == np.float32 and samples.shape[0] == 2
    if atol is not None:
        np.testing.assert_allclose(samples, data.T, atol=atol)
    else:  # lossy codecs: same length give or take the codec's padding, similar content
        assert abs(samples.shape[1] - 22050) < 2048
        assert 0.2 < np.abs(samples).max() < 1.0


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (44100, 6), (48000, 3)])
@pytest.mark.parametrize("block_frames", [1000, 48000])
def test_mono_reader_downmixes_and_resamples_in_blocks(
    tmp_path: Path, rate: int, channels: int, block_frames: int
) -> None:
    data = tone(int(2.5 * rate), channels, rate)
    sf.write(tmp_path / "in.wav", data, rate, subtype="FLOAT")
    reader = audio.MonoReader(tmp_path / "in.wav", 16000, block_frames=block_frames)
    streamed = np.concatenate(list(reader))
    expected = soxr.resample(data.mean(axis=1), rate, 16000, quality=audio.RESAMPLE_QUALITY)
    assert streamed.dtype == np.float32
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    assert reader.frames == data.shape[0]
    assert reader.peak == pytest.approx(np.abs(data.mean(axis=1)).max())
    assert reader.info.channels == channels and reader.info.duration == pytest.approx(2.5, abs=1e-3)


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "junk.wav").write_bytes(b"RIFF....WAVEjunk")
    (tmp_path / "empty.wav").write_bytes(b"")
    for path, message in [
        (tmp_path / "missing.wav", "no such file"),
        (tmp_path, "is a folder"),
        (tmp_path / "junk.wav", "not a readable audio file"),
        (tmp_path / "empty.wav", "not a readable audio file"),
    ]:
        with pytest.raises(AudioReadError, match=message) as info:
            audio.load_audio(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert isinstance(info.value, TDANetError)


def test_non_finite_and_empty_content_are_reported(tmp_path: Path) -> None:
    sf.write(tmp_path / "nan.wav", np.r_[np.zeros(10), np.nan], 8000, subtype="FLOAT")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 8000)
    with pytest.raises(AudioContentError, match=r"nan\.wav.*NaN"):
        audio.load_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioContentError, match=r"nan\.wav.*NaN"):
        list(audio.MonoReader(tmp_path / "nan.wav", 16000))
    with pytest.raises(AudioContentError, match=r"empty\.wav.*no audio"):
        audio.load_audio(tmp_path / "empty.wav")


def test_atomic_writer_publishes_all_files_or_none(tmp_path: Path) -> None:
    paths = [tmp_path / "out" / "a.wav", tmp_path / "out" / "b.wav"]
    block = np.stack([np.full(100, 0.25), np.full(100, -0.5)], axis=1).astype(np.float32)
    with audio.AtomicAudioWriter(paths, 16000, subtype="FLOAT") as writer:
        writer.write(block)
        writer.write(block)
        assert not any(p.exists() for p in paths)  # only temporary names until the end
    assert sf.read(paths[0])[0].tolist() == [0.25] * 200
    assert sf.read(paths[1])[0].tolist() == [-0.5] * 200

    with (
        pytest.raises(AudioWriteError, match="already exists"),
        audio.AtomicAudioWriter(paths, 16000),
    ):
        pass
    fresh = [tmp_path / "fail" / "a.wav", tmp_path / "fail" / "b.wav"]
    with pytest.raises(RuntimeError, match="boom"), audio.AtomicAudioWriter(fresh, 16000) as writer:
        writer.write(block)
        raise RuntimeError("boom")
    assert list((tmp_path / "fail").iterdir()) == []


def test_atomic_writer_writes_files_side_by_side_and_stops_its_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = threading.active_count()
    block = np.zeros((100, 2), np.float32)
    real_write = sf.SoundFile.write

    def full_disk_for_b(handle: sf.SoundFile, data: np.ndarray) -> None:
        if Path(handle.name).name.startswith(".b.wav"):
            raise OSError(28, "No space left on device")
        real_write(handle, data)

    monkeypatch.setattr(sf.SoundFile, "write", full_disk_for_b)
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    with (
        pytest.raises(AudioWriteError, match=r"b\.wav: cannot write \(No space left"),
        audio.AtomicAudioWriter(paths, 16000) as writer,
    ):
        writer.write(block)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == threads  # a later fork of chunk workers stays safe


def test_write_audio_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "x.wav"
    audio.write_audio(target, np.zeros((2, 50), np.float32), 8000)
    assert sf.info(target).channels == 2 and sf.info(target).frames == 50
    with pytest.raises(AudioWriteError, match=r"x\.wav: already exists"):
        audio.write_audio(target, np.zeros(50, np.float32), 8000)
    audio.write_audio(target, np.zeros(60, np.float32), 8000, overwrite=True)
    assert sf.info(target).frames == 60
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(AudioWriteError, match="is a file, not a folder"):
        audio.write_audio(tmp_path / "file" / "y.wav", np.zeros(50, np.float32), 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.wav"]


def test_expand_inputs_handles_folders_globs_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "in" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "none").mkdir()
    for name in ["in/a.wav", "in/deep/b.FLAC", "in/deep/er/c.mp3", "in/notes.txt", "x.ogg"]:
        (tmp_path / name).write_bytes(b"")
    files, errors, _ = audio.expand_inputs(
        [
            str(tmp_path / "in"),
            str(tmp_path / "x.ogg"),
            str(tmp_path / "in" / "a.wav"),  # already found through its folder
            str(tmp_path / "*.ogg"),
            str(tmp_path / "nothing*.wav"),
            str(tmp_path / "missing.wav"),
            str(tmp_path / "none"),
        ]
    )
    assert [
        (f.path.relative_to(tmp_path).as_posix(), f.relative_dir.as_posix()) for f in files
    ] == [
        ("in/a.wav", "."),
        ("in/deep/b.FLAC", "deep"),
        ("in/deep/er/c.mp3", "deep/er"),
        ("x.ogg", "."),
    ]
    assert len(errors) == 3
    assert "nothing*.wav: pattern matches no files" in errors[0]
    assert "missing.wav: no such file or folder" in errors[1]
    assert "none: folder holds no audio files" in errors[2]


def test_fit_length_crops_and_pads() -> None:
    data = np.ones((2, 5), np.float32)
    assert audio.fit_length(data, 3).shape == (2, 3)
    padded = audio.fit_length(data, 7)
    assert padded.shape == (2, 7) and padded[:, 5:].sum() == 0


def test_folder_search_skips_the_output_folder(tmp_path: Path) -> None:
    (tmp_path / "separated").mkdir()
    (tmp_path / "take.wav").write_bytes(b"")
    (tmp_path / "separated" / "take_spk1.wav").write_bytes(b"")
    files, errors, _ = audio.expand_inputs([str(tmp_path)], exclude=tmp_path / "separated")
    assert [f.path.name for f in files] == ["take.wav"] and errors == []


def test_peak_limit_gain() -> None:
    assert audio.peak_limit_gain(0.5) == 1.0
    assert audio.peak_limit_gain(3.0) * 3.0 == pytest.approx(0.99)

"""Reading the formats libsndfile does not (through PyAV) and writing every output format."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from tdanet import audio
from tdanet.errors import AudioContentError, AudioReadError, AudioWriteError

from .media import FORMATS, make, video_only


def tone(seconds: float, channels: int, rate: int) -> np.ndarray:
    """(frames, channels) float32, a different tone per channel."""
    t = np.arange(round(seconds * rate))[:, None] / rate
    return (0.4 * np.sin(2 * np.pi * 440 * (1 + np.arange(channels)) * t)).astype(np.float32)


def ffmpeg_decode(path: Path, channels: int, stream: int = 0) -> np.ndarray:
    """The ffmpeg command's decode of audio stream ``stream``: float32 (channels, frames)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map"]
    raw = subprocess.run(
        [*command, f"0:a:{stream}", "-f", "f32le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, channels).T


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_load_audio_decodes_like_the_ffmpeg_command(tmp_path: Path, name: str) -> None:
    channels = 1 if name == "amr" else 2
    rate = FORMATS[name][3]
    path, _ = make(tmp_path / "rec", name, tone(1.0, channels, rate))
    samples, got_rate = audio.load_audio(path)
    info = audio.audio_info(path)
    assert (got_rate, samples.shape[0], samples.dtype) == (rate, channels, np.float32)
    assert (info.sample_rate, info.channels) == (rate, channels)
    # Same samples, same length as ffmpeg itself decodes (AAC end padding trimmed in MP4).
    np.testing.assert_allclose(samples, ffmpeg_decode(path, channels), atol=1e-6)
    assert abs(samples.shape[1] - rate) < 0.03 * rate
    if FORMATS[name][0] in (".m4a", ".mp4", ".mov"):
        assert samples.shape[1] == rate


def test_read_blocks_streams_in_bounded_blocks_and_read_mono_cuts_windows(tmp_path: Path) -> None:
    path, rate = make(tmp_path / "talk", "mp4-video", tone(3.0, 2, 48000))
    info = audio.audio_info(path)
    assert info.decoder == "ffmpeg" and not info.exact_frames
    blocks = list(audio.read_blocks(info, block_frames=4000))
    # Each block is the requested size plus at most one decoded AAC frame.
    assert max(b.shape[0] for b in blocks) < 4000 + 1024
    whole = np.concatenate(blocks)
    np.testing.assert_array_equal(whole.T, audio.load_audio(path)[0])
    window, window_rate = audio.read_mono(path, 50_000, 60_123)
    assert window_rate == rate
    np.testing.assert_array_equal(window, whole[50_000:60_123].mean(axis=1))
    reader = audio.MonoReader(path, 16000, block_frames=4000)
    assert sum(b.shape[0] for b in reader) == pytest.approx(3 * 16000, abs=2)
    assert reader.frames == whole.shape[0]


def test_streams_are_chosen_by_number(tmp_path: Path) -> None:
    path, _ = make(tmp_path / "dub", "mkv-video", tone(0.5, 2, 48000), streams=2)
    first, second = audio.load_audio(path, stream=0)[0], audio.load_audio(path, stream=1)[0]
    np.testing.assert_allclose(second, ffmpeg_decode(path, 2, stream=1), atol=1e-6)
    assert np.abs(second).max() < 0.7 * np.abs(first).max()
    assert len(audio.audio_info(path).streams) == 2
    with pytest.raises(AudioReadError, match=r"has 2 audio stream\(s\), no stream 2"):
        audio.audio_info(path, stream=2)
    sf.write(tmp_path / "plain.wav", tone(0.1, 1, 8000), 8000)
    with pytest.raises(AudioReadError, match="has 1 audio stream, no stream 1"):
        audio.MonoReader(tmp_path / "plain.wav", 8000, stream=1)


def test_a_container_without_audio_is_one_clear_line(tmp_path: Path) -> None:
    path = video_only(tmp_path / "screen.mp4")
    with pytest.raises(AudioContentError, match=r"holds no audio \(video only\)") as info:
        audio.load_audio(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_headerless_pcm_says_how_to_give_it_a_header(tmp_path: Path) -> None:
    path = tmp_path / "call.raw"
    path.write_bytes((tone(0.5, 1, 16000) * 10000).astype("<i2").tobytes())
    with pytest.raises(AudioReadError, match="headerless PCM") as info:
        audio.load_audio(path)
    assert "sox -t raw -r 16000" in str(info.value) and "--raw-rate" in str(info.value)
    sf.write(path, tone(0.5, 1, 16000), 16000, format="WAV")  # the content decides, not the name
    assert audio.load_audio(path)[1] == 16000


def test_content_decides_not_the_name(tmp_path: Path) -> None:
    path, _ = make(tmp_path / "memo", "m4a-aac", tone(0.5, 1, 44100))
    disguised = path.rename(tmp_path / "memo.wav")
    assert audio.audio_info(disguised).subtype == "aac"
    (tmp_path / "fake.m4a").write_bytes(b"this is text, not a recording\n" * 100)
    with pytest.raises(AudioReadError, match="not a readable audio file"):
        audio.load_audio(tmp_path / "fake.m4a")


@pytest.mark.parametrize(
    ("audio_format", "bit_depth", "rate", "subtype", "written_rate"),
    [
        ("wav", None, 44100, "PCM_16", 44100),
        ("wav", 24, 44100, "PCM_24", 44100),
        ("wav", 32, 8000, "FLOAT", 8000),
        ("flac", 24, 96000, "PCM_24", 96000),
        ("mp3", None, 22050, "MPEG_LAYER_III", 22050),
        ("mp3", None, 96000, "MPEG_LAYER_III", 48000),
        ("opus", None, 44100, "OPUS", 48000),
        ("opus", None, 16000, "OPUS", 16000),
    ],
)
def test_every_output_format_is_written(
    tmp_path: Path,
    audio_format: str,
    bit_depth: int | None,
    rate: int,
    subtype: str,
    written_rate: int,
) -> None:
    chosen = audio.output_subtype(audio_format, bit_depth)
    samples = tone(1.0, 1, rate)[:, 0]
    path = tmp_path / f"out.{audio_format}"
    with audio.AtomicAudioWriter([path], rate, subtype=chosen) as writer:
        for start in range(0, rate, 7000):
            writer.write(samples[start : start + 7000, None])
    info = sf.info(path)
    assert (info.subtype, info.samplerate, info.channels) == (subtype, written_rate, 1)
    assert info.frames == pytest.approx(written_rate, abs=0.01 * written_rate)
    encoded = sf.info(io.BytesIO(audio.encode_audio(samples, rate, audio_format, chosen)))
    assert (encoded.subtype, encoded.samplerate) == (subtype, written_rate)


def test_bad_bit_depths_are_refused() -> None:
    with pytest.raises(AudioWriteError, match="flac cannot be written at 32 bits"):
        audio.output_subtype("flac", 32)
    with pytest.raises(AudioWriteError, match="mp3 has no bit depth"):
        audio.output_subtype("mp3", 16)
    with pytest.raises(AudioWriteError, match="unknown output format"):
        audio.output_subtype("aiff")

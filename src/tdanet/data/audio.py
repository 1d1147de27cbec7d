"""Reading and writing audio files for datasets: mono float32, checked sample rates."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


def is_audio_file(path: Path) -> bool:
    """True for a visible file with a known audio extension."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def audio_info(path: Path) -> tuple[int, int]:
    """(frames, sample_rate) from the file header; unreadable files raise DataError."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise DataError(f"{path}: cannot read audio ({str(exc).splitlines()[0][:120]})") from None
    return int(info.frames), int(info.samplerate)


def read_mono(path: Path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of a file, channels averaged: ((T,) float32, sample_rate)."""
    try:
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as exc:  # as in audio_info
        raise DataError(f"{path}: cannot read audio ({str(exc).splitlines()[0][:120]})") from None
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def resample(signal: np.ndarray, rate_in: int, rate_out: float) -> np.ndarray:
    """(T,) at rate_in -> (T * rate_out / rate_in,) float32 (soxr, high quality)."""
    if rate_in == rate_out:
        return signal
    import soxr

    return np.asarray(soxr.resample(signal, rate_in, rate_out), dtype=np.float32)


def write_wav(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    """Write (T,) float audio as 32-bit float WAV, atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(signal, dtype=np.float32), sample_rate, subtype="FLOAT")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

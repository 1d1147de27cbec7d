"""The blocking work behind one request: check the upload is audio, separate it, encode WAVs.

These functions run in a worker thread (never on the event loop). Audio problems become
:class:`ApiError` answers whose messages name the client's file, never the server's path.
"""

from __future__ import annotations

import io
import math
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from ..audio import AudioInfo, audio_info, check_finite, downmix
from ..errors import AudioContentError, AudioReadError, TDANetError
from .errors import ApiError


class SeparatorLike(Protocol):
    """What the server needs from :class:`tdanet.separate.Separator`."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def num_sources(self) -> int: ...

    def separate(self, waveform: np.ndarray, sample_rate: int, *, name: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Separated:
    """One separated recording: ``sources`` (C, T) and the mono ``mixture`` (T,) at ``sample_rate``."""

    sources: np.ndarray
    mixture: np.ndarray
    sample_rate: int
    seconds: float


def _scrub(exc: TDANetError, path: Path, name: str) -> str:
    """The error's message naming the client's file, not the server's temporary path."""
    return str(exc).replace(str(path), name)


def check_upload(path: Path, name: str, max_duration_s: float) -> AudioInfo:
    """Open the upload's header with libsndfile: it must be audio, non-empty and short enough.

    Raises :class:`ApiError` 415 (not audio libsndfile can read, whatever its name says),
    422 (no samples) or 413 (longer than ``max_duration_s``).
    """
    try:
        info = audio_info(path)
    except AudioReadError as exc:
        raise ApiError(415, "not_audio", _scrub(exc, path, name)) from None
    if info.frames <= 0:
        raise ApiError(422, "empty_audio", f"{name}: contains no audio samples")
    if info.duration > max_duration_s:
        raise ApiError(
            413,
            "audio_too_long",
            f"{name}: {info.duration:.1f} s is longer than the limit of {max_duration_s:g} s; "
            "cut it into shorter pieces",
        )
    return info


def read_mono(path: Path, name: str, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Decode the upload to mono float32 (T,) and its rate, never more than the duration limit.

    Reads at most one frame past ``max_duration_s``, so a file whose header understates its
    length (or a highly compressed one) cannot make the server decode more than the limit.
    Raises :class:`ApiError` 415 if decoding fails, 413 past the limit, 422 for no samples or
    NaN/Inf samples.
    """
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            max_frames = math.floor(max_duration_s * rate)
            data = handle.read(max_frames + 1, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        reason = getattr(exc, "error_string", "") or str(exc).replace(str(path), name)
        raise ApiError(415, "not_audio", f"{name}: decoding failed ({reason})") from None
    if data.shape[0] > max_frames:
        raise ApiError(
            413,
            "audio_too_long",
            f"{name}: longer than the limit of {max_duration_s:g} s; cut it into shorter pieces",
        )
    if data.shape[0] == 0:
        raise ApiError(422, "empty_audio", f"{name}: contains no audio samples")
    mono = downmix(data)
    try:
        check_finite(mono, name)
    except AudioContentError as exc:
        raise ApiError(422, "unusable_audio", str(exc)) from None
    return mono, rate


def separate_upload(
    separator: SeparatorLike, path: Path, name: str, max_duration_s: float
) -> Separated:
    """Decode the upload (:func:`read_mono`) and separate it.

    Returns the sources and the mono mixture at the file's own sample rate. Input the
    separator refuses (too short, silent) gives 422.
    """
    mixture, rate = read_mono(path, name, max_duration_s)
    start = time.perf_counter()
    try:
        sources = np.asarray(separator.separate(mixture, rate, name=name), dtype=np.float32)
    except TDANetError as exc:
        error = "unusable_audio" if isinstance(exc, AudioContentError) else "cannot_separate"
        raise ApiError(422, error, _scrub(exc, path, name)) from None
    return Separated(sources, mixture, rate, time.perf_counter() - start)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes of float (T,) samples.

    A signal peaking above full scale is scaled down to fit rather than clipped: separated
    sources may overshoot 1.0 and clipping would add distortion.
    """
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    scaled = samples / peak if peak > 1.0 else samples
    buffer = io.BytesIO()
    sf.write(buffer, scaled, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def source_name(index: int) -> str:
    """File stem of source ``index`` (0-based): ``speaker1``, ``speaker2``, ..."""
    return f"speaker{index + 1}"


def archive_stem(name: str) -> str:
    """The client's file name without its extension, reduced to letters, digits, ``.``, ``-``
    and ``_`` and not starting with a dot, so that it is a plain name in any unzip tool."""
    stem = re.sub(r"[^\w.-]", "_", Path(name).stem).lstrip(".")
    return stem[:100] or "upload"


def encode_zip(result: Separated, include_mixture: bool, name: str) -> bytes:
    """A zip of ``<stem>_spk<i>.wav`` per source (and ``<stem>_mixture.wav``) for the client's
    file ``name``, as ``tdanet separate`` names its outputs; stored uncompressed."""
    stem = archive_stem(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, source in enumerate(result.sources):
            archive.writestr(f"{stem}_spk{index + 1}.wav", encode_wav(source, result.sample_rate))
        if include_mixture:
            archive.writestr(f"{stem}_mixture.wav", encode_wav(result.mixture, result.sample_rate))
    return buffer.getvalue()

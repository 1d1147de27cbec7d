"""The blocking work behind one request: check the upload is audio, separate it, encode it.

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

from ..audio import (
    AudioInfo,
    audio_info,
    check_finite,
    downmix,
    encode_audio,
    peak_limit_gain,
    read_blocks,
)
from ..errors import AudioContentError, AudioReadError, TDANetError
from ..segments import Segment, csv_text, frame_energies, rttm_text, speech_segments
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
    """Open the upload's header: it must be audio, non-empty and short enough.

    The upload's name has no extension, so libsndfile and ffmpeg recognise it by content
    only. Raises :class:`ApiError` 415 (not audio either can read, whatever its name says),
    422 (no samples, or a container without audio) or 413 (longer than ``max_duration_s``
    by a header that states its length exactly; :func:`decode_upload` enforces the limit
    while decoding anyway).
    """
    try:
        info = audio_info(path)
    except AudioReadError as exc:
        raise ApiError(415, "not_audio", _scrub(exc, path, name)) from None
    except AudioContentError as exc:
        raise ApiError(422, "empty_audio", _scrub(exc, path, name)) from None
    if not info.exact_frames:
        return info
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


def decode_upload(info: AudioInfo, name: str, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Decode the upload ``info`` describes (its header, read once by :func:`check_upload`) to
    mono float32 (T,) and its rate, never more than the duration limit.

    Reads at most one frame past ``max_duration_s``, so a file whose header understates its
    length (or a highly compressed one) cannot make the server decode more than the limit.
    Raises :class:`ApiError` 415 if decoding fails, 413 past the limit, 422 for no samples or
    NaN/Inf samples.
    """
    path = info.path
    try:
        rate = info.sample_rate
        max_frames = math.floor(max_duration_s * rate)
        blocks = list(read_blocks(info, max(1, min(max_frames + 1, 1 << 20)), stop=max_frames + 1))
    except AudioReadError as exc:
        raise ApiError(415, "not_audio", _scrub(exc, path, name)) from None
    except AudioContentError as exc:
        raise ApiError(422, "empty_audio", _scrub(exc, path, name)) from None
    data = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.float32)
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
    separator: SeparatorLike, info: AudioInfo, name: str, max_duration_s: float
) -> Separated:
    """Decode the upload ``info`` describes (:func:`decode_upload`) and separate it.

    Returns the sources and the mono mixture at the file's own sample rate. Input the
    separator refuses (too short, silent) gives 422.
    """
    mixture, rate = decode_upload(info, name, max_duration_s)
    start = time.perf_counter()
    try:
        sources = np.asarray(separator.separate(mixture, rate, name=name), dtype=np.float32)
    except TDANetError as exc:
        error = "unusable_audio" if isinstance(exc, AudioContentError) else "cannot_separate"
        raise ApiError(422, error, _scrub(exc, info.path, name)) from None
    return Separated(sources, mixture, rate, time.perf_counter() - start)


def encode_track(
    samples: np.ndarray, sample_rate: int, audio_format: str = "wav", subtype: str | None = None
) -> bytes:
    """Mono file bytes of float (T,) samples: 16-bit PCM WAV by default, else ``audio_format``
    with ``subtype`` (see :func:`tdanet.audio.encode_audio`).

    A signal peaking above full scale is scaled down to fit rather than clipped: separated
    sources may overshoot 1.0 and clipping would add distortion.
    """
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return encode_audio(samples * peak_limit_gain(peak, 1.0), sample_rate, audio_format, subtype)


def source_name(index: int) -> str:
    """File stem of source ``index`` (0-based): ``speaker1``, ``speaker2``, ..."""
    return f"speaker{index + 1}"


def archive_stem(name: str) -> str:
    """The client's file name without its extension, reduced to letters, digits, ``.``, ``-``
    and ``_`` and not starting with a dot, so that it is a plain name in any unzip tool."""
    stem = re.sub(r"[^\w.-]", "_", Path(name).stem).lstrip(".")
    return stem[:100] or "upload"


def speaker_segments(result: Separated) -> list[Segment]:
    """Who speaks when in ``result``: (start s, end s, source index) from its sources."""
    return speech_segments(frame_energies(result.sources, result.sample_rate))


def encode_zip(
    result: Separated,
    include_mixture: bool,
    name: str,
    audio_format: str = "wav",
    subtype: str | None = None,
    include_segments: bool = False,
) -> bytes:
    """A zip of ``<stem>_spk<i>.<audio_format>`` per source (and ``<stem>_mixture``, and with
    ``include_segments`` ``<stem>.rttm`` and ``<stem>_segments.csv``) for the client's file
    ``name``, as ``tdanet separate`` names its outputs; stored uncompressed."""
    stem = archive_stem(name)
    buffer = io.BytesIO()
    tracks = [(f"spk{i + 1}", source) for i, source in enumerate(result.sources)]
    if include_mixture:
        tracks.append(("mixture", result.mixture))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for track, samples in tracks:
            archive.writestr(
                f"{stem}_{track}.{audio_format}",
                encode_track(samples, result.sample_rate, audio_format, subtype),
            )
        if include_segments:
            found = speaker_segments(result)
            archive.writestr(f"{stem}.rttm", rttm_text(found, stem))
            archive.writestr(f"{stem}_segments.csv", csv_text(found))
    return buffer.getvalue()


def upload_warnings(header: AudioInfo, path: Path, name: str) -> list[str]:
    """Problems of the upload that did not stop it (a truncated WAV), naming the client's file."""
    if header.truncation is None:
        return []
    return [f"{header.truncation.replace(str(path), name)}; separated the frames found"]

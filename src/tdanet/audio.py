"""Audio in and out: any format ffmpeg decodes, any rate, any channel count; atomic writes.

Reading tries libsndfile first (fast; WAV, FLAC, OGG, MP3, AIFF, ...) and falls back to
ffmpeg's libraries through PyAV (M4A/AAC, MP4/MOV/MKV/WebM audio tracks, WMA, Opus, AMR,
...), both chosen by the file's content, never its name. PyAV decodes in the process, a
packet at a time, so memory stays bounded whatever the file's length; only the audio
stream's packets are decoded (video is skipped).
  * :func:`audio_info` opens a file's header (:class:`AudioInfo`); ``stream`` picks one of
    several audio streams (numbered from 0);
  * :func:`load_audio` reads a whole file as float32 ``(channels, samples)`` and its rate;
  * :func:`read_blocks` decodes a file as float32 ``(frames, channels)`` blocks;
  * :class:`MonoReader` reads a file block by block, downmixes to mono and resamples with
    soxr, so memory stays bounded by the block size whatever the file's length.

Writing (:data:`OUTPUT_FORMATS`: WAV, FLAC, MP3, Opus, all through libsndfile):
:class:`AtomicAudioWriter` writes several files at once under temporary names in the
destination folder and renames them only when every block was written; on any error the
temporary files are removed, so no partial output is ever left behind. :func:`write_audio`
is the one-shot form.

Every problem raises an :class:`~tdanet.errors.AudioError` subclass with a one-line message
that names the file.
"""

from __future__ import annotations

import glob
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .atomic import replaced_on_success, temporary_path
from .errors import AudioContentError, AudioError, AudioReadError, AudioWriteError

# File name endings of common audio and video files (case-insensitive); used only to pick
# the recordings out of a folder. A file named explicitly is read whatever its name.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".m4a",
        ".m4b",
        ".aac",
        ".mp4",
        ".m4v",
        ".mov",
        ".3gp",
        ".mkv",
        ".mka",
        ".webm",
        ".wma",
        ".wmv",
        ".asf",
        ".amr",
        ".avi",
        ".ac3",
        ".mpg",
        ".mpeg",
        ".ts",
        ".wv",
        ".ape",
        ".alac",
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".voc",
        ".sd2",
        ".nist",
        ".sph",
    }
)
# Formats outputs can be written in (``--format``), each its file name ending.
OUTPUT_FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus")
# libsndfile format and subtype per bit depth of each writable file name ending; the lossy
# ones have a single subtype (key None).
_WRITE_FORMATS: dict[str, tuple[str, dict[int | None, str]]] = {
    ".wav": ("WAV", {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}),
    ".flac": ("FLAC", {16: "PCM_16", 24: "PCM_24"}),
    ".mp3": ("MP3", {None: "MPEG_LAYER_III"}),
    ".opus": ("OGG", {None: "OPUS"}),
    ".ogg": ("OGG", {None: "VORBIS"}),
}
# Sample rates the lossy codecs can store; other rates are resampled to the next one up.
_CODEC_RATES: dict[str, tuple[int, ...]] = {
    ".mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    ".opus": (8000, 12000, 16000, 24000, 48000),
}
# Input frames read per block when streaming (one second at 48 kHz).
DEFAULT_BLOCK_FRAMES = 48_000
# soxr quality used both ways (input rate -> model rate -> input rate).
RESAMPLE_QUALITY = "HQ"
# Largest absolute sample this package writes: a little headroom below full scale.
PEAK_LIMIT = 0.99


class TruncatedAudioWarning(UserWarning):
    """A file holds fewer frames than its header declares; what is there is used."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: ``frames`` per channel at ``sample_rate``.

    ``decoder`` is ``"libsndfile"`` or ``"ffmpeg"``. For ffmpeg, ``format`` is the
    container and ``subtype`` the codec; ``frames`` is exact only if ``exact_frames``
    (otherwise the container's duration estimate, 0 when it states none: decode to count).
    ``stream`` is the audio stream described (from 0) and ``streams`` one line per audio
    stream of the file. ``header_frames`` is what a WAV header declares when that is more
    than the file holds (libsndfile then reports only the frames present), else ``None``.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    decoder: str = "libsndfile"
    exact_frames: bool = True
    stream: int = 0
    streams: tuple[str, ...] = ()
    header_frames: int | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    @property
    def truncation(self) -> str | None:
        """One line saying the file is truncated (frames found and expected), or ``None``."""
        if self.header_frames is None:
            return None
        return (
            f"{self.path}: truncated: the header declares {self.header_frames} frames but the "
            f"file holds {self.frames}"
        )


def audio_info(path: str | os.PathLike[str], stream: int = 0) -> AudioInfo:
    """Read the header of ``path``, describing audio stream ``stream`` (from 0).

    Raises :class:`AudioReadError` if the file is missing or neither libsndfile nor ffmpeg
    reads it or it has no such stream, and :class:`AudioContentError` if it is a readable
    container without any audio stream (a silent video).
    """
    file = Path(path)
    _check_readable(file)
    try:
        info = sf.info(str(file))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _ffmpeg_info(file, stream)
    if stream != 0:
        raise AudioReadError(
            f"{file}: has 1 audio stream, no stream {stream} (streams count from 0)"
        )
    frames = int(info.frames)
    declared = wav_header_frames(file) if info.format == "WAV" else None
    return AudioInfo(
        file,
        int(info.samplerate),
        int(info.channels),
        frames,
        info.format,
        info.subtype,
        streams=(f"0: {info.subtype_info}, {info.channels} ch, {info.samplerate} Hz",),
        header_frames=declared if declared is not None and declared > frames else None,
    )


def wav_header_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header declares (data chunk size / block align), if it says."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            for _ in range(64):  # a few chunks precede the data; never walk a hostile file far
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"fmt ":
                    fmt = handle.read(size + (size & 1))
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                elif chunk[:4] == b"data":
                    # 0xFFFFFFFF: a stream whose length was never written.
                    if block_align == 0 or size == 0xFFFFFFFF:
                        return None
                    return size // block_align
                else:
                    handle.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def read_blocks(
    info: AudioInfo,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode frames [start, stop) of the file ``info`` describes: float32 (frames, channels).

    Blocks hold about ``block_frames`` frames (never none), so memory does not grow with
    the file. Raises :class:`AudioReadError` if decoding fails part-way.
    """
    if info.decoder == "ffmpeg":
        yield from _ffmpeg_blocks(info, block_frames, start, stop)
        return
    file = info.path
    try:
        handle = sf.SoundFile(str(file))
        if start:
            handle.seek(start)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
    with handle:
        left = None if stop is None else max(0, stop - start)
        while left is None or left > 0:
            want = block_frames if left is None else min(block_frames, left)
            try:
                block = handle.read(want, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioReadError(f"{file}: decoding failed ({_reason(exc)})") from None
            if block.shape[0] == 0:
                return
            if left is not None:
                left -= block.shape[0]
            yield block


def load_audio(path: str | os.PathLike[str], stream: int = 0) -> tuple[np.ndarray, int]:
    """Read a whole file: float32 array (channels, samples) in [-1, 1] and its sample rate.

    Keeps the file's rate and channels (of audio stream ``stream``). Raises
    :class:`AudioReadError` for a missing, corrupt or truncated file and
    :class:`AudioContentError` for an empty one, one without audio or with NaN/Inf samples.
    """
    info = audio_info(path, stream)
    blocks = list(read_blocks(info, block_frames=max(DEFAULT_BLOCK_FRAMES, info.frames)))
    if not blocks:
        raise AudioContentError(f"{info.path}: contains no audio samples")
    data = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    check_finite(data, info.path)
    return np.ascontiguousarray(data.T), info.sample_rate


def check_audio_file(path: str | os.PathLike[str]) -> AudioInfo:
    """Decode a whole file block by block and return its info if every sample is usable.

    Raises :class:`AudioReadError` if it cannot be opened or decoded, or holds fewer frames
    than its header declares, and :class:`AudioContentError` for NaN or infinite samples.
    Memory stays bounded by one block.
    """
    info = audio_info(path)
    if info.truncation is not None:
        raise AudioReadError(info.truncation)
    decoded = 0
    for block in read_blocks(info):
        check_finite(block, info.path)
        decoded += block.shape[0]
    if info.exact_frames and decoded < info.frames:
        raise AudioReadError(
            f"{info.path}: truncated: the header declares {info.frames} frames but only "
            f"{decoded} decode"
        )
    return info


def find_unusable(paths: Iterable[Path], workers: int | None = None) -> dict[Path, str]:
    """Each file of ``paths`` that :func:`check_audio_file` refuses, with its one-line reason.

    Files are decoded in ``workers`` threads (default: one per core, at most 8); libsndfile
    releases the GIL while decoding.
    """
    unique = list(dict.fromkeys(paths))
    workers = workers or min(8, os.cpu_count() or 1)

    def problem(path: Path) -> str | None:
        try:
            check_audio_file(path)
        except AudioError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(problem, unique))
    return {path: reason for path, reason in zip(unique, reasons, strict=True) if reason}


def is_audio_file(path: Path) -> bool:
    """True for a visible file name with one of the :data:`AUDIO_EXTENSIONS`."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def read_mono(
    path: str | os.PathLike[str], start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of a file, channels averaged: ((T,) float32, sample_rate).

    ffmpeg-decoded files are decoded from their beginning up to ``stop`` (compressed
    formats cannot seek to an exact sample).
    """
    info = audio_info(path)
    blocks = [downmix(b) for b in read_blocks(info, start=start, stop=stop)]
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return mono, info.sample_rate


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono as the mean of the channels: (frames, channels) -> (frames,) float32."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


def check_finite(samples: np.ndarray, file: str | os.PathLike[str]) -> None:
    """Raise :class:`AudioContentError` if ``samples`` hold NaN or infinite values."""
    if not np.isfinite(samples).all():
        raise AudioContentError(
            f"{file}: contains NaN or infinite samples; repair or re-export the file"
        )


def is_silent(info: AudioInfo, *, block_frames: int = DEFAULT_BLOCK_FRAMES) -> bool:
    """True if every downmixed sample of the file ``info`` describes is zero; stops at the
    first that is not.

    A quick look before a model pass: reading stops in the first block of any real recording.
    Raises :class:`AudioReadError` if the file cannot be decoded.
    """
    # NaN != 0, so a NaN file is not "silent": the model pass reports it as NaN.
    return not any(np.any(downmix(block) != 0) for block in read_blocks(info, block_frames))


class MonoReader:
    """Iterate over a file downmixed to mono and resampled: float32 (n,) blocks at ``sample_rate``.

    Reads about ``block_frames`` input frames at a time (of audio stream ``stream``), so
    memory does not grow with the file; the concatenated blocks equal ``soxr.resample`` of
    the whole downmixed signal. While iterating, ``frames`` counts the input frames read (at
    the file's own rate) and ``peak`` is the largest absolute downmixed input sample so far.
    Raises :class:`AudioReadError` if decoding fails part-way and
    :class:`AudioContentError` on NaN/Inf samples.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        *,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
        stream: int = 0,
    ) -> None:
        self.info = audio_info(path, stream)
        self.sample_rate = sample_rate
        self.block_frames = block_frames
        self.frames = 0
        self.peak = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        file = self.info.path
        rate = self.info.sample_rate
        resampler = (
            None
            if rate == self.sample_rate
            else soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        )
        for block in read_blocks(self.info, self.block_frames):
            mono = downmix(block)
            check_finite(mono, file)
            self.frames += mono.shape[0]
            self.peak = max(self.peak, float(np.abs(mono).max()))
            yield mono if resampler is None else resampler.resample_chunk(mono, last=False)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def resample(samples: np.ndarray, rate_in: int, rate_out: float) -> np.ndarray:
    """Resample float32 (..., samples) from ``rate_in`` to ``rate_out`` with soxr.

    ``rate_out`` may be fractional (speed perturbation resamples to ``rate / speed``).
    """
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    data = np.ascontiguousarray(np.moveaxis(samples, -1, 0)).astype(np.float32, copy=False)
    out = soxr.resample(data, rate_in, rate_out, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1))


def peak_limit_gain(peak: float, limit: float = PEAK_LIMIT) -> float:
    """Common factor (<= 1) that brings the largest absolute sample ``peak`` down to ``limit``."""
    return 1.0 if peak <= limit else limit / peak


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the last axis to ``length`` (resampling may be off by a sample)."""
    have = samples.shape[-1]
    if have >= length:
        return samples[..., :length]
    pad = [(0, 0)] * (samples.ndim - 1) + [(0, length - have)]
    return np.pad(samples, pad)


class AtomicAudioWriter:
    """Write several audio files block by block; they appear only if all writes succeed.

    Each file is written to a hidden temporary name in its destination folder and renamed
    on a clean exit from the ``with`` block; on an exception the temporary files are
    deleted and no destination is touched. ``write`` takes (frames, len(paths)) float32:
    column ``i`` goes to ``paths[i]``. The format follows each path's ending (.wav, .flac,
    .mp3, .opus, .ogg); ``subtype`` (libsndfile's name, see :func:`output_subtype`) applies
    to WAV and FLAC, 16-bit PCM by default. MP3 and Opus files are written at
    :func:`encoded_rate` (resampled if ``sample_rate`` is not one the codec stores).
    Existing destinations raise :class:`AudioWriteError` unless ``overwrite``. With
    ``parallel`` (and several files and cores) the files are encoded side by side in threads;
    ``frames`` counts the frames written so far.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        *,
        subtype: str | None = None,
        overwrite: bool = False,
        parallel: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.parallel = parallel
        self._discarded = False
        self.sample_rate = sample_rate
        self.subtype = subtype
        self.overwrite = overwrite
        self._temps: list[Path] = []
        self._files: list[sf.SoundFile] = []
        self._resamplers: list[soxr.ResampleStream | None] = []
        self._pool: ThreadPoolExecutor | None = None
        self.frames = 0  # written per file so far

    def __enter__(self) -> AtomicAudioWriter:
        check_writable(self.paths, overwrite=self.overwrite)
        if self.parallel and len(self.paths) > 1 and (os.cpu_count() or 1) > 1:
            # Encoding runs in libsndfile without the GIL: the files are written side by side.
            self._pool = ThreadPoolExecutor(max_workers=len(self.paths))
        try:
            for path in self.paths:
                file_format, subtype = _format_and_subtype(path, self.subtype)
                rate = encoded_rate(path, self.sample_rate)
                temp = temporary_path(path)
                self._temps.append(temp)
                self._files.append(
                    sf.SoundFile(
                        str(temp),
                        "w",
                        samplerate=rate,
                        channels=1,
                        subtype=subtype,
                        format=file_format,
                    )
                )
                self._resamplers.append(
                    None
                    if rate == self.sample_rate
                    else soxr.ResampleStream(
                        self.sample_rate, rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
                    )
                )
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self._discard()
            raise AudioWriteError(f"{path}: cannot write ({_reason(exc)})") from None
        return self

    def write(self, block: np.ndarray) -> None:
        """Append (frames, files) float32 samples, column ``i`` to file ``i``."""
        if block.ndim != 2 or block.shape[1] != len(self._files):
            raise ValueError(f"expected (frames, {len(self._files)}), got {block.shape}")
        self.frames += block.shape[0]
        columns = [np.ascontiguousarray(block[:, i], np.float32) for i in range(block.shape[1])]
        if self._pool is None:
            for index, column in enumerate(columns):
                self._write(index, column, last=False)
            return
        jobs = [
            self._pool.submit(self._write, i, column, last=False)
            for i, column in enumerate(columns)
        ]
        wait(jobs)  # every write ends before an error is raised and the files are discarded
        for job in jobs:
            job.result()

    def _write(self, index: int, samples: np.ndarray, *, last: bool) -> None:
        resampler = self._resamplers[index]
        if resampler is not None:
            samples = resampler.resample_chunk(samples, last=last)
        try:
            self._files[index].write(samples)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            raise AudioWriteError(f"{self.paths[index]}: cannot write ({_reason(exc)})") from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None or self._discarded:
            self._discard()
            return
        self._stop_pool()
        try:
            for index, resampler in enumerate(self._resamplers):
                if resampler is not None:
                    self._write(index, np.zeros(0, np.float32), last=True)
            for handle in self._files:
                handle.close()
            for temp, path in zip(self._temps, self.paths, strict=True):
                os.replace(temp, path)
        except (OSError, sf.LibsndfileError, RuntimeError) as error:
            self._discard()
            raise AudioWriteError(f"{path}: cannot write ({_reason(error)})") from None

    def discard(self) -> None:
        """Delete the temporary files now; leaving the ``with`` block then publishes nothing."""
        self._discard()
        self._discarded = True

    def _discard(self) -> None:
        self._stop_pool()
        for handle in self._files:
            handle.close()
        for temp in self._temps:
            temp.unlink(missing_ok=True)

    def _stop_pool(self) -> None:
        """End the writing threads (so that a later fork finds none)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def write_audio(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write float32 (samples,) or (channels, samples) to ``path`` atomically; returns it.

    A multi-channel array becomes one multi-channel file. Format, ``subtype`` and rate as
    for :class:`AtomicAudioWriter`. Values are written as given: clip or scale beforehand
    if the subtype is integer PCM.
    """
    target = Path(path)
    data = samples[np.newaxis] if samples.ndim == 1 else samples
    check_writable([target], overwrite=overwrite)
    file_format, file_subtype = _format_and_subtype(target, subtype)
    rate = encoded_rate(target, sample_rate)
    data = resample(data, sample_rate, rate)
    try:
        with replaced_on_success(target) as temp:
            sf.write(
                str(temp),
                np.ascontiguousarray(data.T),
                rate,
                subtype=file_subtype,
                format=file_format,
            )
    except (OSError, sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioWriteError(f"{target}: cannot write ({_reason(exc)})") from None
    return target


def encode_audio(
    samples: np.ndarray, sample_rate: int, audio_format: str = "wav", subtype: str | None = None
) -> bytes:
    """The bytes of a mono file of float (T,) ``samples`` in ``audio_format``
    (:data:`OUTPUT_FORMATS`); ``subtype`` and the rate as for :class:`AtomicAudioWriter`."""
    name = Path(f"encoded.{audio_format}")
    file_format, file_subtype = _format_and_subtype(name, subtype)
    rate = encoded_rate(name, sample_rate)
    buffer = io.BytesIO()
    try:
        sf.write(
            buffer,
            resample(np.asarray(samples, np.float32), sample_rate, rate),
            rate,
            subtype=file_subtype,
            format=file_format,
        )
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioWriteError(f"cannot encode {audio_format} ({_reason(exc)})") from None
    return buffer.getvalue()


def check_writable(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Create the parent folders; refuse existing files unless ``overwrite``."""
    for path in paths:
        if path.exists() and not overwrite:
            raise AudioWriteError(f"{path}: already exists; pass --overwrite to replace it")
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise AudioWriteError(
                f"{blocker}: is a file, not a folder; choose another output folder"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AudioWriteError(
                f"{path.parent}: cannot create the output folder ({_reason(exc)})"
            ) from None
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise AudioWriteError(f"{path.parent}: output folder is not writable")


def output_subtype(audio_format: str, bit_depth: int | None = None) -> str | None:
    """libsndfile subtype for writing ``audio_format`` (one of :data:`OUTPUT_FORMATS`).

    ``bit_depth`` is 16 (default), 24 or 32 (float) for wav, 16 or 24 for flac; mp3 and
    opus take none (returns None). Raises :class:`AudioWriteError` for other values.
    """
    if audio_format not in OUTPUT_FORMATS:
        raise AudioWriteError(
            f"unknown output format {audio_format!r}; choose {', '.join(OUTPUT_FORMATS)}"
        )
    depths = _WRITE_FORMATS[f".{audio_format}"][1]
    if None in depths:
        if bit_depth is not None:
            raise AudioWriteError(
                f"{audio_format} has no bit depth; a bit depth applies to wav and flac only"
            )
        return None
    chosen = 16 if bit_depth is None else bit_depth
    if chosen not in depths:
        raise AudioWriteError(
            f"{audio_format} cannot be written at {chosen} bits; choose "
            f"{' or '.join(str(d) for d in depths)}"
        )
    return depths[chosen]


def encoded_rate(path: Path, sample_rate: int) -> int:
    """The rate a file at ``path`` is written at: ``sample_rate``, unless the format (MP3,
    Opus) cannot store it; then the next rate up it can (or its highest)."""
    rates = _CODEC_RATES.get(path.suffix.lower())
    if rates is None or sample_rate in rates:
        return sample_rate
    return next((r for r in rates if r >= sample_rate), rates[-1])


def _format_and_subtype(path: Path, subtype: str | None) -> tuple[str, str]:
    """libsndfile format and subtype to write ``path`` with; lossy formats ignore ``subtype``."""
    entry = _WRITE_FORMATS.get(path.suffix.lower())
    if entry is None:
        raise AudioWriteError(
            f"{path}: unsupported output extension; use .wav, .flac, .mp3 or .opus"
        )
    file_format, depths = entry
    fixed = depths.get(None)
    return file_format, fixed or subtype or "PCM_16"


@dataclass(frozen=True)
class InputFile:
    """An audio file to process and the sub-folder of the output folder its results go to."""

    path: Path
    relative_dir: Path


# Names `tdanet separate` writes (<stem>_spk1.wav, <stem>_spk2.wav, ...).
SEPARATED_NAME = re.compile(r"^(?P<stem>.+)_spk(?P<index>[1-9][0-9]*)\.wav$")


def is_separated_output(path: Path) -> bool:
    """True for ``<stem>_spkN.wav`` next to both ``<stem>_spk1.wav`` and ``<stem>_spk2.wav``:
    an earlier result of ``tdanet separate``, not a recording."""
    match = SEPARATED_NAME.match(path.name)
    if match is None:
        return False
    stem = match["stem"]
    return all((path.parent / f"{stem}_spk{i}.wav").is_file() for i in (1, 2))


def expand_inputs(
    inputs: Iterable[str], *, exclude: Path | None = None
) -> tuple[list[InputFile], list[str], list[str]]:
    """Expand files, folders (recursively, by :data:`AUDIO_EXTENSIONS`) and glob patterns.

    Returns the files in order (duplicates dropped), one error line for each input that
    names nothing usable, and one note line for each folder or pattern in which earlier
    outputs were skipped. Outputs mirror the input tree: files found inside a folder keep
    their path relative to it as ``relative_dir``; files named directly or by a pattern
    keep theirs relative to the deepest folder that holds them all, so two inputs with the
    same name do not collide. Folder searches skip the ``exclude`` folder (the output
    folder) when it lies inside the searched one, and folder and pattern searches skip
    earlier results (:func:`is_separated_output`); files named directly are always kept.
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[InputFile] = []
    errors: list[str] = []
    notes: list[str] = []
    seen: set[Path] = set()
    # Files named directly or matched by a pattern; placed below their common folder at the end.
    loose: list[tuple[int, Path]] = []

    def add(path: Path, relative_dir: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            if relative_dir is None:
                loose.append((len(found), path))
            found.append(InputFile(path, relative_dir or Path()))

    def without_outputs(name: str, files: list[Path]) -> list[Path]:
        kept = [file for file in files if not is_separated_output(file)]
        if len(kept) < len(files):
            notes.append(
                f"{name}: skipped {len(files) - len(kept)} earlier output(s) of tdanet separate "
                "(<stem>_spkN.wav); name them as files to separate them"
            )
        return kept

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            folder = path.resolve()
            # Only an output folder strictly inside the input is skipped: `-o .` hides nothing.
            inside = skip is not None and skip != folder and skip.is_relative_to(folder)
            excluded = skip if inside else None
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_audio_file(p)
                and (excluded is None or not p.resolve().is_relative_to(excluded))
            )
            files = without_outputs(str(path), candidates)
            if not candidates:
                errors.append(
                    f"{path}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                )
            for file in files:
                add(file, file.parent.relative_to(path))
        elif path.exists():
            add(path, None)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                errors.append(f"{text}: pattern matches no files")
            for file in without_outputs(text, files):
                add(file, None)
        else:
            errors.append(f"{text}: no such file or folder")
    if loose:
        parents = [Path(os.path.abspath(path.parent)) for _, path in loose]
        common = Path(os.path.commonpath(parents))
        for (index, path), parent in zip(loose, parents, strict=True):
            found[index] = InputFile(path, parent.relative_to(common))
    return found, errors, notes


# Suffixes of headerless PCM, which states neither its rate nor its sample format (ffmpeg
# reads such a file as an image, or not at all).
HEADERLESS_SUFFIXES = (".raw", ".pcm")


def _headerless(file: Path) -> AudioReadError | None:
    """For a file that no decoder reads as audio and whose name says headerless PCM, the
    error that says how to give it a header; otherwise None."""
    if file.suffix.lower() not in HEADERLESS_SUFFIXES:
        return None
    return AudioReadError(
        f"{file}: headerless PCM states neither its sample rate nor its format; add a header "
        f"(e.g. sox -t raw -r 16000 -e signed -b 16 -c 1 {file.name} {file.stem}.wav) or "
        "pipe it to `tdanet stream --raw-rate RATE`"
    )


def _open_container(file: Path) -> Any:
    """``av.open`` for reading; :class:`AudioReadError` if ffmpeg cannot read the file."""
    # Imported here: PyAV takes a noticeable time to load and most files never need it.
    import av

    try:
        return av.open(str(file), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        unreadable = AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})")
        raise (_headerless(file) or unreadable) from None


def _audio_stream(file: Path, container: Any, stream: int) -> Any:
    """Audio stream number ``stream`` (from 0) of an open container."""
    streams = list(container.streams.audio)
    if not streams:
        headerless = _headerless(file)
        if headerless is not None:
            raise headerless
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise AudioContentError(
            f"{file}: holds no audio ({', '.join(kinds)} only); choose a recording with sound"
        )
    if not 0 <= stream < len(streams):
        raise AudioReadError(
            f"{file}: has {len(streams)} audio stream(s), no stream {stream} (streams count from 0)"
        )
    return streams[stream]


def _describe(index: int, stream: Any) -> str:
    """One line for an audio stream: number, codec, channels, rate and language if tagged."""
    context = stream.codec_context
    language = stream.metadata.get("language")
    tag = f", {language}" if language and language != "und" else ""
    return f"{index}: {context.name}, {context.channels} ch, {context.sample_rate} Hz{tag}"


def _ffmpeg_info(file: Path, stream: int) -> AudioInfo:
    """:class:`AudioInfo` of audio stream ``stream`` read by ffmpeg (PyAV)."""
    with _open_container(file) as container:
        chosen = _audio_stream(file, container, stream)
        rate = int(chosen.codec_context.sample_rate)
        channels = int(chosen.codec_context.channels)
        if rate <= 0 or channels <= 0:
            raise AudioReadError(f"{file}: not a readable audio file (no sample rate or channels)")
        if chosen.duration is not None and chosen.time_base is not None:
            seconds = float(chosen.duration * chosen.time_base)
        elif container.duration is not None:
            # Container-wide duration, in microseconds (AV_TIME_BASE).
            seconds = container.duration / 1_000_000
        else:
            seconds = 0.0
        streams = tuple(_describe(i, s) for i, s in enumerate(container.streams.audio))
        return AudioInfo(
            file,
            rate,
            channels,
            max(0, round(seconds * rate)),
            container.format.name,
            chosen.codec_context.name,
            decoder="ffmpeg",
            exact_frames=False,
            stream=stream,
            streams=streams,
        )


def _ffmpeg_blocks(
    info: AudioInfo, block_frames: int, start: int, stop: int | None
) -> Iterator[np.ndarray]:
    """:func:`read_blocks` for files read by ffmpeg: decodes one packet at a time."""
    import av

    file = info.path
    pending: list[np.ndarray] = []
    have = 0
    position = 0  # frames decoded so far, from the start of the stream
    with _open_container(file) as container:
        stream = _audio_stream(file, container, info.stream)
        frames = container.decode(stream)
        while stop is None or position < stop:
            try:
                frame = next(frames, None)
            except (av.FFmpegError, ValueError) as exc:
                raise AudioReadError(f"{file}: decoding failed ({_reason(exc)})") from None
            if frame is None:
                break
            samples = _frame_samples(frame, info)
            begin, position = position, position + samples.shape[0]
            if position <= start:
                continue
            samples = samples[max(0, start - begin) :]
            if stop is not None:
                samples = samples[: stop - max(begin, start)]
            pending.append(samples)
            have += samples.shape[0]
            if have >= block_frames:
                yield np.concatenate(pending)
                pending, have = [], 0
    if have:
        yield np.concatenate(pending)


def _frame_samples(frame: Any, info: AudioInfo) -> np.ndarray:
    """A decoded PyAV audio frame as float32 (frames, channels) in [-1, 1].

    A frame whose stated duration is shorter than its samples by more than the time base's
    resolution (the end padding of an AAC stream in MP4) is cut to that duration, as the
    ffmpeg command does; a coarse time base (Matroska's milliseconds) states no more than
    rounded durations, so those frames are kept whole.
    """
    channels = len(frame.layout.channels)
    if frame.sample_rate != info.sample_rate or channels != info.channels:
        raise AudioReadError(
            f"{info.path}: the audio changes from {info.sample_rate} Hz, {info.channels} ch to "
            f"{frame.sample_rate} Hz, {channels} ch part-way; convert it to one format first"
        )
    data = frame.to_ndarray()
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    if data.dtype.kind == "u":
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        data = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    data = np.ascontiguousarray(data, np.float32)
    if frame.duration and frame.time_base is not None:
        stated = float(frame.duration * frame.time_base) * frame.sample_rate
        tick = float(frame.time_base) * frame.sample_rate
        if 0 < stated < data.shape[0] - tick:
            data = data[: round(stated)]
    return data


def _check_readable(file: Path) -> None:
    if not file.exists():
        raise AudioReadError(f"{file}: no such file")
    if file.is_dir():
        raise AudioReadError(f"{file}: is a folder, not an audio file")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without the path libsndfile repeats."""
    text = str(getattr(exc, "error_string", "") or getattr(exc, "strerror", "") or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__

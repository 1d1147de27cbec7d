"""Audio in and out: any format libsndfile reads, any rate, any channel count; atomic writes.

Reading:
  * :func:`audio_info` opens a file's header (:class:`AudioInfo`);
  * :func:`load_audio` reads a whole file as float32 ``(channels, samples)`` and its rate;
  * :class:`MonoReader` reads a file block by block, downmixes to mono and resamples with
    soxr, so memory stays bounded by the block size whatever the file's length.

Writing: :class:`AtomicAudioWriter` writes several files at once under temporary names in
the destination folder and renames them only when every block was written; on any error
the temporary files are removed, so no partial output is ever left behind.
:func:`write_audio` is the one-shot form.

Every problem raises an :class:`~tdanet.errors.AudioError` subclass with a one-line message
that names the file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from .atomic import replaced_on_success, temporary_path
from .errors import AudioContentError, AudioError, AudioReadError, AudioWriteError

# File name endings of the formats libsndfile reads (case-insensitive); used to pick the
# audio files out of a folder.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
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
# Input frames read per block when streaming (one second at 48 kHz).
DEFAULT_BLOCK_FRAMES = 48_000
# soxr quality used both ways (input rate -> model rate -> input rate).
RESAMPLE_QUALITY = "HQ"


class TruncatedAudioWarning(UserWarning):
    """A file holds fewer frames than its header declares; what is there is used."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: ``frames`` per channel at ``sample_rate``.

    ``header_frames`` is what a WAV header declares when that is more than the file holds
    (libsndfile then reports only the frames present), else ``None``.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
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


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of ``path``; :class:`AudioReadError` if missing or not readable audio."""
    file = Path(path)
    _check_readable(file)
    try:
        info = sf.info(str(file))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
    frames = int(info.frames)
    declared = wav_header_frames(file) if info.format == "WAV" else None
    return AudioInfo(
        file,
        int(info.samplerate),
        int(info.channels),
        frames,
        info.format,
        info.subtype,
        declared if declared is not None and declared > frames else None,
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


def load_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a whole file: float32 array (channels, samples) in [-1, 1] and its sample rate.

    Keeps the file's rate and channels. Raises :class:`AudioReadError` for a missing,
    corrupt or truncated file and :class:`AudioContentError` for an empty one or one with
    NaN/Inf samples.
    """
    file = Path(path)
    _check_readable(file)
    try:
        data, rate = sf.read(str(file), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
    if data.shape[0] == 0:
        raise AudioContentError(f"{file}: contains no audio samples")
    check_finite(data, file)
    return np.ascontiguousarray(data.T), int(rate)


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
    try:
        with sf.SoundFile(str(info.path)) as handle:
            for block in handle.blocks(DEFAULT_BLOCK_FRAMES, dtype="float32", always_2d=True):
                check_finite(block, info.path)
                decoded += block.shape[0]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioReadError(f"{info.path}: decoding failed ({_reason(exc)})") from None
    if decoded < info.frames:
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
    """Frames [start, stop) of a file, channels averaged: ((T,) float32, sample_rate)."""
    file = Path(path)
    _check_readable(file)
    try:
        data, rate = sf.read(str(file), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
    return downmix(data), int(rate)


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


class MonoReader:
    """Iterate over a file downmixed to mono and resampled: float32 (n,) blocks at ``sample_rate``.

    Reads ``block_frames`` input frames at a time, so memory does not grow with the file;
    the concatenated blocks equal ``soxr.resample`` of the whole downmixed signal. While
    iterating, ``frames`` counts the input frames read (at the file's own rate) and
    ``peak`` is the largest absolute downmixed input sample so far. Raises
    :class:`AudioReadError` if decoding fails part-way and :class:`AudioContentError` on
    NaN/Inf samples.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        *,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
    ) -> None:
        self.info = audio_info(path)
        self.sample_rate = sample_rate
        self.block_frames = block_frames
        self.frames = 0
        self.peak = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        file = self.info.path
        try:
            handle = sf.SoundFile(str(file))
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
        with handle:
            rate = int(handle.samplerate)
            resampler = (
                None
                if rate == self.sample_rate
                else soxr.ResampleStream(
                    rate, self.sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
                )
            )
            while True:
                try:
                    block = handle.read(self.block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioReadError(f"{file}: decoding failed ({_reason(exc)})") from None
                if block.shape[0] == 0:
                    break
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
    column ``i`` goes to ``paths[i]``. Existing destinations raise :class:`AudioWriteError`
    unless ``overwrite``.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        *,
        subtype: str = "PCM_16",
        overwrite: bool = False,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.sample_rate = sample_rate
        self.subtype = subtype
        self.overwrite = overwrite
        self._temps: list[Path] = []
        self._files: list[sf.SoundFile] = []

    def __enter__(self) -> AtomicAudioWriter:
        check_writable(self.paths, overwrite=self.overwrite)
        try:
            for path in self.paths:
                temp = temporary_path(path)
                self._temps.append(temp)
                self._files.append(
                    sf.SoundFile(
                        str(temp),
                        "w",
                        samplerate=self.sample_rate,
                        channels=1,
                        subtype=self.subtype,
                        format=audio_format(path),
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
        for index, handle in enumerate(self._files):
            try:
                handle.write(np.ascontiguousarray(block[:, index]))
            except (OSError, sf.LibsndfileError, RuntimeError) as exc:
                raise AudioWriteError(
                    f"{self.paths[index]}: cannot write ({_reason(exc)})"
                ) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            for handle in self._files:
                handle.close()
            for temp, path in zip(self._temps, self.paths, strict=True):
                os.replace(temp, path)
        except (OSError, sf.LibsndfileError, RuntimeError) as error:
            self._discard()
            raise AudioWriteError(f"{path}: cannot write ({_reason(error)})") from None

    def _discard(self) -> None:
        for handle in self._files:
            handle.close()
        for temp in self._temps:
            temp.unlink(missing_ok=True)


def write_audio(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int,
    *,
    subtype: str = "PCM_16",
    overwrite: bool = False,
) -> Path:
    """Write float32 (samples,) or (channels, samples) to ``path`` atomically; returns it.

    A multi-channel array becomes one multi-channel file. Values are written as given: clip
    or scale beforehand if the subtype is integer PCM.
    """
    target = Path(path)
    data = samples[np.newaxis] if samples.ndim == 1 else samples
    check_writable([target], overwrite=overwrite)
    try:
        with replaced_on_success(target) as temp:
            sf.write(
                str(temp),
                np.ascontiguousarray(data.T),
                sample_rate,
                subtype=subtype,
                format=audio_format(target),
            )
    except (OSError, sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioWriteError(f"{target}: cannot write ({_reason(exc)})") from None
    return target


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


def audio_format(path: Path) -> str:
    """libsndfile format name for an output path, from its extension (``.wav`` -> WAV)."""
    name = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(path.suffix.lower())
    if name is None:
        raise AudioWriteError(f"{path}: unsupported output extension; use .wav, .flac or .ogg")
    return name


@dataclass(frozen=True)
class InputFile:
    """An audio file to process and the sub-folder of the output folder its results go to."""

    path: Path
    relative_dir: Path


def expand_inputs(
    inputs: Iterable[str], *, exclude: Path | None = None
) -> tuple[list[InputFile], list[str]]:
    """Expand files, folders (recursively, by :data:`AUDIO_EXTENSIONS`) and glob patterns.

    Returns the files in order (duplicates dropped) and one error line for each input that
    names nothing usable. Files found inside a folder keep their path relative to it as
    ``relative_dir``, so outputs can mirror the input tree. Folder searches skip the
    ``exclude`` folder (the output folder, so earlier results are not separated again).
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[InputFile] = []
    errors: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, relative_dir: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, relative_dir))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_audio_file(p)
                and (skip is None or not p.resolve().is_relative_to(skip))
            )
            if not files:
                errors.append(
                    f"{path}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                )
            for file in files:
                add(file, file.parent.relative_to(path))
        elif path.exists():
            add(path, Path())
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                errors.append(f"{text}: pattern matches no files")
            for file in files:
                add(file, Path())
        else:
            errors.append(f"{text}: no such file or folder")
    return found, errors


def _check_readable(file: Path) -> None:
    if not file.exists():
        raise AudioReadError(f"{file}: no such file")
    if file.is_dir():
        raise AudioReadError(f"{file}: is a folder, not an audio file")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without the path libsndfile repeats."""
    text = str(getattr(exc, "error_string", "") or getattr(exc, "strerror", "") or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__

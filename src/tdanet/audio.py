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
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from .atomic import replaced_on_success, temporary_path
from .errors import AudioContentError, AudioReadError, AudioWriteError

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


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``frames`` per channel at ``sample_rate``."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of ``path``; :class:`AudioReadError` if missing or not readable audio."""
    file = Path(path)
    _check_readable(file)
    try:
        info = sf.info(str(file))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: not a readable audio file ({_reason(exc)})") from None
    return AudioInfo(
        file, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype
    )


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


def is_silent(path: str | os.PathLike[str], *, block_frames: int = DEFAULT_BLOCK_FRAMES) -> bool:
    """True if every downmixed sample of the file is zero; stops at the first that is not.

    A quick look before a model pass: reading stops in the first block of any real recording.
    Raises :class:`AudioReadError` if the file cannot be opened or decoded.
    """
    file = Path(path)
    _check_readable(file)
    try:
        with sf.SoundFile(str(file)) as handle:
            for block in handle.blocks(block_frames, dtype="float32", always_2d=True):
                # NaN != 0, so a NaN file is not "silent": the model pass reports it as NaN.
                if np.any(downmix(block) != 0):
                    return False
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(f"{file}: decoding failed ({_reason(exc)})") from None
    return True


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


def _check_readable(file: Path) -> None:
    if not file.exists():
        raise AudioReadError(f"{file}: no such file")
    if file.is_dir():
        raise AudioReadError(f"{file}: is a folder, not an audio file")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without the path libsndfile repeats."""
    text = str(getattr(exc, "error_string", "") or getattr(exc, "strerror", "") or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__

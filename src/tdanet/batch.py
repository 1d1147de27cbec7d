"""Separating many recordings: skip, overwrite, refuse colliding outputs, and keep going past
a bad file, one :class:`FileOutcome` per input. The command line prints these; it decides
nothing itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import audio
from .atomic import replaced_on_success
from .errors import AudioWriteError, TDANetError
from .segments import Segment, csv_text, rttm_text, segment_paths, single_speaker
from .separate import Separator, output_paths

Status = Literal["done", "skipped", "failed"]
# Called per file with its header; returns the progress callback (seconds read so far).
ProgressFactory = Callable[[audio.AudioInfo], Callable[[float], None] | None]


@dataclass
class FileOutcome:
    """What happened to one input: ``status``, the files written, notes and warnings (one
    line each, for the user), the error if it failed, and its duration in seconds."""

    path: Path
    status: Status
    outputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchOptions:
    """How to write each input's outputs (see ``tdanet separate --help``)."""

    overwrite: bool = False
    skip_existing: bool = False
    audio_format: str = "wav"
    subtype: str | None = None
    stream: int = 0
    segments: bool = False


def separate_many(
    separator: Separator,
    files: Iterable[audio.InputFile],
    out_root: Path,
    options: BatchOptions,
    progress: ProgressFactory | None = None,
) -> Iterator[FileOutcome]:
    """Separate each input into ``out_root / relative_dir``; yields one outcome per input.

    An input whose outputs would replace another input's of this batch fails; with
    ``skip_existing`` one whose outputs all exist is skipped; any :class:`TDANetError` of
    one file fails that file only (nothing of it is written) and the batch goes on.
    """
    if options.overwrite and options.skip_existing:
        raise ValueError("overwrite and skip_existing exclude each other")
    claimed: dict[Path, Path] = {}
    for item in files:
        out_dir = out_root / item.relative_dir
        outputs = output_paths(item.path, out_dir, separator.num_sources, options.audio_format)
        if outputs[0] in claimed:
            yield FileOutcome(
                item.path,
                "failed",
                error=f"{item.path}: its outputs would overwrite those of "
                f"{claimed[outputs[0]]}; separate it on its own or rename it",
            )
            continue
        claimed[outputs[0]] = item.path
        if options.skip_existing and all(path.is_file() for path in outputs):
            yield FileOutcome(
                item.path, "skipped", notes=[f"{item.path}: skipped, its outputs exist"]
            )
            continue
        try:
            yield separate_one(separator, item.path, out_dir, options, progress)
        except TDANetError as exc:
            yield FileOutcome(item.path, "failed", error=str(exc))


def separate_one(
    separator: Separator,
    path: Path,
    out_dir: Path,
    options: BatchOptions,
    progress: ProgressFactory | None = None,
) -> FileOutcome:
    """One input: its notes (streams, channels, a single speaker), the separation, and its
    speech segments if asked for; raises :class:`TDANetError` for a bad input."""
    if options.segments:
        check_segment_paths(path, out_dir, options.overwrite)
    info = audio.audio_info(path, options.stream)
    notes = []
    if len(info.streams) > 1:
        notes.append(
            f"{path}: {len(info.streams)} audio streams ({'; '.join(info.streams)}); "
            f"separating stream {info.stream} (choose another with --stream N)"
        )
    if info.channels > 1:
        notes.append(f"{path}: {info.channels} channels downmixed to mono")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", audio.TruncatedAudioWarning)
        outputs = separator.separate_file(
            path,
            out_dir,
            overwrite=options.overwrite,
            subtype=options.subtype,
            audio_format=options.audio_format,
            stream=options.stream,
            progress=None if progress is None else progress(info),
        )
    segments = separator.speech_segments()
    # Only the speech-time share: outputs that sound alike also come from two-speaker
    # recordings with the shipped model (docs/separate.md).
    if single_speaker(segments, separator.num_sources):
        notes.append(
            f"{path}: seems to hold a single speaker (one output holds nearly all the speech)"
        )
    if options.segments:
        outputs += write_segments(path, out_dir, segments)
    return FileOutcome(
        path,
        "done",
        outputs=outputs,
        notes=notes,
        warnings=[str(warning.message) for warning in caught],
        seconds=info.duration,
    )


def check_segment_paths(path: Path, out_dir: Path, overwrite: bool) -> None:
    """Refuse, before separating, segment files that exist (unless ``overwrite``)."""
    for target in segment_paths(path, out_dir):
        if Path(target).exists() and not overwrite:
            raise AudioWriteError(f"{target}: already exists; pass --overwrite to replace it")


def write_segments(path: Path, out_dir: Path, segments: list[Segment]) -> list[Path]:
    """Write ``out_dir/<stem>.rttm`` and ``<stem>_segments.csv``, each renamed into place
    when complete; returns their paths."""
    rttm, table = (Path(p) for p in segment_paths(path, out_dir))
    for target, text in ((rttm, rttm_text(segments, path.stem)), (table, csv_text(segments))):
        try:
            with replaced_on_success(target) as temp:
                temp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AudioWriteError(f"{target}: cannot write ({exc.strerror})") from None
    return [rttm, table]

"""``tdanet separate INPUT... [-o OUTDIR]``: one file per speaker for each input recording."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from . import add_cpu_arguments, apply_cpu_arguments

HELP = "separate recordings (files, folders, globs) into one file per speaker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio or video files in any format ffmpeg decodes, folders (searched "
        "recursively by audio and video extension) or glob patterns",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        default="separated",
        help="output folder; inputs keep their sub-folders below the folder given, or below "
        "the deepest folder holding all files and pattern matches (default: separated)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="preset, bundled or hub name, or checkpoint path (.onnx file with "
        "--backend onnxruntime); default: the bundled model",
    )
    parser.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch", help="inference engine"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_cpu_arguments(parser)
    parser.add_argument(
        "--chunk-seconds", type=float, default=None, help="length of the chunks (default: 10)"
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=None,
        help="overlap of consecutive chunks, at most half a chunk (default: 1)",
    )
    parser.add_argument(
        "--format",
        dest="audio_format",
        choices=("wav", "flac", "mp3", "opus"),
        default="wav",
        help="format of the output files (default: wav)",
    )
    parser.add_argument(
        "--bit-depth",
        type=int,
        choices=(16, 24, 32),
        default=None,
        help="bits per sample of wav (16, 24, 32 = float) or flac (16, 24) outputs (default: 16)",
    )
    parser.add_argument(
        "--stream",
        type=int,
        default=0,
        metavar="N",
        help="audio stream to separate in files with several, counted from 0 (default: 0)",
    )
    parser.add_argument(
        "--segments",
        action="store_true",
        help="also write who speaks when: <stem>.rttm and <stem>_segments.csv (start, end, "
        "speaker) from the separated outputs",
    )
    parser.add_argument(
        "--lone-voices",
        action="store_true",
        help="move a voice talking alone wholly into its speaker's output, and a recording "
        "of one voice into spk1 (can also swallow a much quieter second speaker)",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing output files")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose outputs all exist (finish an interrupted batch)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import audio
    from ..errors import TDANetError
    from ..pretrained import DEFAULT_MODEL
    from ..segments import single_speaker
    from ..separate import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, Separator, output_paths
    from . import warn_if_untrained

    workers = apply_cpu_arguments(args)
    if args.stream < 0:
        raise TDANetError(f"--stream must be 0 or more, got {args.stream}")
    subtype = audio.output_subtype(args.audio_format, args.bit_depth)
    out_root = Path(args.output_dir)
    files, failures, notes = audio.expand_inputs(args.inputs, exclude=out_root)
    for line in failures:
        _error(line)
    for line in notes:
        print(f"tdanet separate: note: {line}", file=sys.stderr)
    chunk = DEFAULT_CHUNK_SECONDS if args.chunk_seconds is None else args.chunk_seconds
    overlap = DEFAULT_OVERLAP_SECONDS if args.overlap_seconds is None else args.overlap_seconds
    if not files:
        return 1
    model = DEFAULT_MODEL if args.model is None else args.model
    try:
        separator = Separator(
            model,
            device=args.device,
            chunk_seconds=chunk,
            overlap_seconds=overlap,
            backend=args.backend,
            route_lone_voices=args.lone_voices,
            workers=workers,
        )
    except ValueError as exc:  # chunk/overlap out of range; model errors are TDANetError
        if isinstance(exc, TDANetError):
            raise
        raise TDANetError(str(exc)) from None
    warn_if_untrained("separate", model)

    claimed: dict[Path, Path] = {}
    done = 0
    skipped = 0
    seconds = 0.0
    failed = len(failures)
    start = time.perf_counter()
    overall = tqdm(files, desc="files", unit="file", disable=args.quiet or None, leave=False)
    for item in overall:
        out_dir = out_root / item.relative_dir
        outputs = output_paths(item.path, out_dir, separator.num_sources, args.audio_format)
        first_output = outputs[0]
        if first_output in claimed:
            _error(
                f"{item.path}: its outputs would overwrite those of {claimed[first_output]}; "
                "separate it on its own or rename it"
            )
            failed += 1
            continue
        claimed[first_output] = item.path
        if args.skip_existing and all(path.is_file() for path in outputs):
            skipped += 1
            tqdm.write(f"{item.path}: skipped, its outputs exist")
            continue
        try:
            if args.segments:
                _check_segment_paths(item.path, out_dir, args.overwrite)
            info = audio.audio_info(item.path, args.stream)
            if len(info.streams) > 1:
                tqdm.write(
                    f"note: {item.path}: {len(info.streams)} audio streams "
                    f"({'; '.join(info.streams)}); separating stream {info.stream} "
                    "(choose another with --stream N)",
                    file=sys.stderr,
                )
            if info.channels > 1:
                tqdm.write(
                    f"note: {item.path}: {info.channels} channels downmixed to mono",
                    file=sys.stderr,
                )
            bar = tqdm(
                total=round(info.duration, 1) if info.frames else None,
                desc=item.path.name,
                unit="s",
                disable=args.quiet or None,
                leave=False,
            )
            with bar, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", audio.TruncatedAudioWarning)
                outputs = separator.separate_file(
                    item.path,
                    out_dir,
                    overwrite=args.overwrite,
                    subtype=subtype,
                    audio_format=args.audio_format,
                    stream=args.stream,
                    progress=_updater(bar),
                )
            for warning in caught:
                tqdm.write(f"tdanet separate: warning: {warning.message}", file=sys.stderr)
            segments = separator.speech_segments()
            if separator.single_voice or single_speaker(segments, separator.num_sources):
                tqdm.write(
                    f"note: {item.path}: seems to hold a single speaker (the outputs sound "
                    "alike or one holds nearly all the speech)",
                    file=sys.stderr,
                )
            if args.segments:
                outputs += _write_segments(item.path, out_dir, segments)
        except TDANetError as exc:
            _error(str(exc))
            failed += 1
            continue
        done += 1
        seconds += info.duration
        print(f"{item.path} -> {', '.join(str(p) for p in outputs)}")
    elapsed = time.perf_counter() - start
    rate = f", {elapsed / seconds:.2f} s per second of audio" if seconds else ""
    kept = f"; {skipped} skipped (outputs exist)" if args.skip_existing else ""
    print(
        f"separated {done} file(s), {seconds:.1f} s of audio, in {elapsed:.1f} s{rate}{kept}; "
        f"{failed} failed"
    )
    return 1 if failed else 0


def _check_segment_paths(path: Path, out_dir: Path, overwrite: bool) -> None:
    """Refuse, before separating, segment files that exist (unless ``overwrite``)."""
    from ..errors import AudioWriteError
    from ..segments import segment_paths

    for target in segment_paths(path, out_dir):
        if Path(target).exists() and not overwrite:
            raise AudioWriteError(f"{target}: already exists; pass --overwrite to replace it")


def _write_segments(path: Path, out_dir: Path, segments: list[Any]) -> list[Path]:
    """Write ``out_dir/<stem>.rttm`` and ``<stem>_segments.csv``, each renamed into place
    when complete; returns their paths."""
    from ..atomic import replaced_on_success
    from ..errors import AudioWriteError
    from ..segments import csv_text, rttm_text, segment_paths

    rttm, table = (Path(p) for p in segment_paths(path, out_dir))
    for target, text in ((rttm, rttm_text(segments, path.stem)), (table, csv_text(segments))):
        try:
            with replaced_on_success(target) as temp:
                temp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AudioWriteError(f"{target}: cannot write ({exc.strerror})") from None
    return [rttm, table]


def _error(line: str) -> None:
    print(f"tdanet separate: error: {line}", file=sys.stderr)


def _updater(bar: Any) -> Any:
    """A progress callback that moves ``bar`` to the seconds read so far."""

    def update(seconds: float) -> None:
        # A header that states no duration (bar.total None) leaves the bar open-ended.
        done = seconds if bar.total is None else min(seconds, bar.total)
        bar.update(round(done - bar.n, 1))

    return update

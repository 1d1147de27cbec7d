"""``tdanet separate INPUT... [-o OUTDIR]``: one file per speaker for each input recording."""

from __future__ import annotations

import argparse
import sys
import time
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
        "--backend onnxruntime); default: the bundled demo model, which separates new voices "
        "only a little (docs/model-card.md); for real recordings JusperLee/TDANetBest-4ms-LRS2",
    )
    parser.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch", help="inference engine"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="compute precision (default fp32; bf16/fp16 run under autocast, for GPUs: see "
        "docs/separate.md for their SI-SNR cost)",
    )
    add_cpu_arguments(parser)
    parser.add_argument(
        "--chunk-seconds", type=float, default=None, help="length of the chunks (default: 30)"
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=None,
        help="overlap of consecutive chunks, at most half a chunk (default: 3)",
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
    parser.add_argument(
        "--no-pause-gate",
        dest="pause_gate",
        action="store_false",
        help="keep each output as the model gives it through its pauses (by default an output "
        "is lowered 20 dB where it is silent for a second or more: the model's leakage of the "
        "other voice)",
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

    # No monitor thread: chunk workers are forked only while no other thread runs.
    tqdm.monitor_interval = 0
    from .. import audio
    from ..batch import BatchOptions, separate_many
    from ..errors import TDANetError
    from ..pretrained import DEFAULT_MODEL
    from ..separate import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, Separator
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
            pause_gate=args.pause_gate,
            workers=workers,
            precision=args.precision,
        )
    except ValueError as exc:  # chunk/overlap out of range; model errors are TDANetError
        if isinstance(exc, TDANetError):
            raise
        raise TDANetError(str(exc)) from None
    warn_if_untrained("separate", model)

    options = BatchOptions(
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        audio_format=args.audio_format,
        subtype=subtype,
        stream=args.stream,
        segments=args.segments,
    )
    counts = {"done": 0, "skipped": 0, "failed": len(failures)}
    seconds = 0.0
    start = time.perf_counter()
    overall = tqdm(files, desc="files", unit="file", disable=args.quiet or None, leave=False)
    bars: list[Any] = []

    def progress(info: audio.AudioInfo) -> Any:
        bar = tqdm(
            total=round(info.duration, 1) if info.frames else None,
            desc=info.path.name,
            unit="s",
            disable=args.quiet or None,
            leave=False,
        )
        bars.append(bar)
        return _updater(bar)

    for outcome in separate_many(separator, overall, out_root, options, progress):
        while bars:
            bars.pop().close()
        counts[outcome.status] += 1
        for note in outcome.notes:
            if outcome.status == "skipped":
                tqdm.write(note)
            else:
                tqdm.write(f"note: {note}", file=sys.stderr)
        for warning in outcome.warnings:
            tqdm.write(f"tdanet separate: warning: {warning}", file=sys.stderr)
        if outcome.error is not None:
            _error(outcome.error)
        if outcome.status == "done":
            seconds += outcome.seconds
            print(f"{outcome.path} -> {', '.join(str(p) for p in outcome.outputs)}")
    elapsed = time.perf_counter() - start
    rate = f", {elapsed / seconds:.2f} s per second of audio" if seconds else ""
    kept = f"; {counts['skipped']} skipped (outputs exist)" if args.skip_existing else ""
    print(
        f"separated {counts['done']} file(s), {seconds:.1f} s of audio, in {elapsed:.1f} s"
        f"{rate}{kept}; {counts['failed']} failed"
    )
    return 1 if counts["failed"] else 0


def _error(line: str) -> None:
    print(f"tdanet separate: error: {line}", file=sys.stderr)


def _updater(bar: Any) -> Any:
    """A progress callback that moves ``bar`` to the seconds read so far."""

    def update(seconds: float) -> None:
        # A header that states no duration (bar.total None) leaves the bar open-ended.
        done = seconds if bar.total is None else min(seconds, bar.total)
        bar.update(round(done - bar.n, 1))

    return update

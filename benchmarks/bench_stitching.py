"""Long recordings: speaker changes, whole-file vs per-window SI-SNRi, inactive-output level
and who-speaks-when agreement on a seeded 10-minute two-speaker conversation (issue 12).

    python benchmarks/bench_stitching.py [--model tdanet-demo] [--seeds 0 1]
    python benchmarks/bench_stitching.py --corpus /work/data/corpus-real \\
        --speakers asterisk-carlo asterisk-june      # other held-out voices

The conversation is ``tests/conversation.py``'s (Tux Paint voices of the test fixture by
default; ``--corpus`` with ``--speakers`` takes every ``*.flac`` of two other held-out
speakers, trimmed and levelled the same way). For each chunk alignment (voice profiles,
overlap only) and with ``--lone-voices`` routing, one row: windows (10 s) whose best
permutation differs from the whole file's, permutation changes between windows, whole-file
and mean per-window SI-SNRi (dB), the share of single-speaker stretches (> 1 s) whose silent
speaker's output is at least 20 dB below, the worst of them (dB), and the frame agreement
(10 ms frames) of the speech segments with the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conversation import build_conversation, score

from tdanet.separate import Separator

VARIANTS = {
    "voices (default)": {},
    "overlap only": {"align": "overlap"},
    "voices + --lone-voices": {"route_lone_voices": True},
}


def corpus_clips(corpus: Path, speaker: str) -> list[np.ndarray]:
    """Every clip of ``speaker`` trimmed to its speech and levelled like the fixture."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/fixtures/tuxpaint-voices"))
    from make_fixture import TARGET_RMS, trimmed

    clips = []
    for path in sorted((corpus / speaker).glob("*/*.flac")):
        samples, rate = sf.read(path, dtype="float32")
        if rate != 16_000 or samples.ndim != 1 or not np.abs(samples).max() > 0:
            continue
        clip = trimmed(samples)
        clips.append(clip * (TARGET_RMS / np.sqrt(np.mean(clip**2))))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tdanet-demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--speakers", nargs=2, default=None)
    parser.add_argument("--chunk-seconds", type=float, default=None, help="Separator's default")
    parser.add_argument("--overlap-seconds", type=float, default=None, help="Separator's default")
    args = parser.parse_args()
    sizes = {
        name: value
        for name, value in (
            ("chunk_seconds", args.chunk_seconds),
            ("overlap_seconds", args.overlap_seconds),
        )
        if value is not None
    }
    torch.set_num_threads(1)
    clips = None
    if args.corpus is not None:
        clips = (
            corpus_clips(args.corpus, args.speakers[0]),
            corpus_clips(args.corpus, args.speakers[1]),
        )
    print(f"model {args.model}", ", ".join(f"{k} {v:g}" for k, v in sizes.items()))
    print(
        "| seed | variant | windows off / changes | SI-SNRi whole / per window | "
        "silent >= 20 dB down / worst | segment frame agreement |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        conv = build_conversation(clips, seed=seed)
        for name, kwargs in VARIANTS.items():
            separator = Separator(args.model, **kwargs, **sizes)  # type: ignore[arg-type]
            estimates = separator.separate(conv.mixture, conv.sample_rate)
            got = score(estimates, conv, separator.speech_segments())
            levels = got.inactive_db
            print(
                f"| {seed} (overlap {conv.overlap_share:.0%}) | {name} | "
                f"{got.windows_off} / {got.changes} | "
                f"{got.whole_si_snri:.2f} / {got.window_si_snri:.2f} | "
                f"{(levels <= -20).mean():.0%} / {levels.max():+.1f} dB | {got.agreement:.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

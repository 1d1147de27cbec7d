"""Each chunk border of one benchmark conversation: the evidence for keeping the order (issue 12).

    python benchmarks/conversation_borders.py --corpus data/corpus-real --index 2 MODEL [MODEL ...]

For the conversation ``--index`` of ``bench_conversations.py``'s ``--set`` (default the nine;
2 is asterisk carlo / june) and each model, one line per chunk border, pause gate off:
the overlap's margin for keeping the previous chunk's order over swapping it (``keep`` minus
``swap`` of :func:`tdanet.separate.overlap_scores`; two speakers only), the voice profiles'
margin (the prior that :func:`tdanet.separate.best_permutation` receives, already weighted by
``PROFILE_WEIGHT``), their sum, the order chosen, whether the chunk then matches the
references in the right order (``right``, ``WRONG``, or ``-`` where a speaker is silent in
that chunk) and each speaker's share of active samples in the overlap. A diagnostic, not a
score: it shows on which border a conversation's speaker changes are decided, and by how much.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_conversations import SETS, conversations
from tests.conversation import best_order

from tdanet import separate
from tdanet.separate import Separator, overlap_scores

Decision = tuple[float, float, tuple[int, ...]]


def keep_margin(scores: np.ndarray) -> float:
    """A 2x2 score matrix's advantage of the identity order over the swap."""
    return float(scores[0, 0] + scores[1, 1] - scores[0, 1] - scores[1, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--corpus", type=Path, required=True, help="tdanet corpus output")
    parser.add_argument("--set", choices=sorted(SETS), default="nine", help="which conversations")
    parser.add_argument("--index", type=int, default=2, help="which conversation of the set")
    args = parser.parse_args()
    torch.set_num_threads(1)
    label, conv = conversations(args.corpus, SETS[args.set])[args.index]
    if conv.sources.shape[0] != 2:
        sys.exit("error: the margins are defined for two speakers")
    decisions: list[Decision] = []
    chosen_by = separate.best_permutation

    def logged(
        reference: np.ndarray, candidate: np.ndarray, prior: np.ndarray | None = None
    ) -> tuple[int, ...]:
        order = chosen_by(reference, candidate, prior)
        profiles = 0.0 if prior is None else keep_margin(prior)
        decisions.append((keep_margin(overlap_scores(reference, candidate)), profiles, order))
        return order

    separate.best_permutation = logged  # OverlapAdd looks it up in the module on each border
    for model in args.models:
        separator = Separator(model, pause_gate=False)
        decisions.clear()
        estimates = separator.separate(conv.mixture, conv.sample_rate)
        step = separator.chunk - separator.overlap
        print(f"{label}: {model}")
        for k, (overlap, profiles, order) in enumerate(decisions):
            start = (k + 1) * step
            part = slice(start, min(start + separator.chunk, estimates.shape[1]))
            active = conv.activity[:, part].sum(axis=1) >= 0.5 * conv.sample_rate
            verdict = "-"
            if active.all():
                right = best_order(estimates[:, part], conv.sources[:, part], active)
                verdict = "right" if tuple(right) == (0, 1) else "WRONG"
            shares = conv.activity[:, start : start + separator.overlap].mean(axis=1)
            print(
                f"  border {k:2d} at {start / conv.sample_rate:6.1f} s: overlap {overlap:+.3f}, "
                f"profiles {profiles:+.3f}, sum {overlap + profiles:+.3f}, chosen {order}, "
                f"{verdict}; active in the overlap {shares[0]:.2f} / {shares[1]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

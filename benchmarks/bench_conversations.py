"""Ten-minute conversations of held-out voices, per model, with and without the pause gate
(issues 11 and 12): nine (the fixture's two and seven pairs from the corpus), ten others, or
all 19.

    python benchmarks/bench_conversations.py --corpus data/corpus-real MODEL [MODEL ...]
    python benchmarks/bench_conversations.py --corpus data/corpus-real --set all MODEL
    python benchmarks/bench_conversations.py --corpus data/corpus-real --gate on MODEL

The conversations are ``tests/conversation.py``'s (turn-taking, pauses, about 19 %
overlapped speech, the second speaker 6 dB quieter). ``--set nine`` (default, ``PAIRS``):
the Tux Paint fixture voices with seeds 0 and 1 and seven pairs of the demo recipes' other
held-out voices (clips trimmed and levelled as in ``bench_stitching.py``); the alignment and
pause-gate settings were tuned on these. ``--set check`` (``CHECK_PAIRS``): the fixture
voices with seeds 2 and 3 and eight new pairings of the same held-out voices, fixed on
2026-12-01 before any model was scored on them, to confirm what the nine suggest. ``--set
all``: both (19), on which model candidates are compared. One row per model, gate setting and
conversation (speaker changes between 10 s windows, whole-file SI-SNRi, the share of
single-talker stretches whose silent speaker's output is 20 dB down, frame agreement of the
speech segments), and a row of totals and means per model and gate setting. The default
alignment and chunking throughout; one thread. ``--order oracle`` instead orders every chunk
by the reference sources (``OracleOrder``): a perfect alignment, so the speaker changes it
leaves are the model's own, inside chunks, and the gap to the default is what stitching
costs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stitching import corpus_clips
from tests.conversation import Conversation, build_conversation, score

from tdanet.separate import OverlapAdd, Separator, best_permutation

# Conversations: (label, two corpus speakers or None for the fixture voices, seed).
Pairs = tuple[tuple[str, tuple[str, str] | None, int], ...]
# Fixed before any model was scored on them; alignment and pause gate were tuned on these.
PAIRS: Pairs = (
    ("tuxpaint el/da seed 0", None, 0),
    ("tuxpaint el/da seed 1", None, 1),
    ("asterisk carlo/june", ("asterisk-carlo", "asterisk-june"), 0),
    ("fillets linux-1 / klettres ar", ("fillets-linux-1", "klettres-ar"), 0),
    ("fillets linux-2 / klettres da", ("fillets-linux-2", "klettres-da"), 0),
    ("fillets viking2-5 / ktuberling fr", ("fillets-viking2-5", "ktuberling-fr"), 0),
    ("fillets captain-leb / asterisk carlo", ("fillets-captain-leb", "asterisk-carlo"), 0),
    ("fillets keys-3 / keys-4", ("fillets-keys-3", "fillets-keys-4"), 0),
    ("asterisk june / klettres ar", ("asterisk-june", "klettres-ar"), 1),
)
# Fixed before any model was scored on them, like PAIRS; used only to confirm choices
# made on the nine (PROFILE_WEIGHT, 2026-12-01) and to compare model candidates.
CHECK_PAIRS: Pairs = (
    ("tuxpaint el/da seed 2", None, 2),
    ("tuxpaint el/da seed 3", None, 3),
    ("asterisk carlo / fillets linux-2", ("asterisk-carlo", "fillets-linux-2"), 5),
    ("asterisk june / fillets keys-3", ("asterisk-june", "fillets-keys-3"), 5),
    ("fillets viking2-5 / klettres da", ("fillets-viking2-5", "klettres-da"), 5),
    ("fillets captain-leb / klettres ar", ("fillets-captain-leb", "klettres-ar"), 5),
    ("ktuberling fr / fillets linux-1", ("ktuberling-fr", "fillets-linux-1"), 5),
    ("fillets keys-4 / asterisk june", ("fillets-keys-4", "asterisk-june"), 5),
    ("tuxpaint el / asterisk carlo", ("tuxpaint-el", "asterisk-carlo"), 5),
    ("tuxpaint da / fillets linux-1", ("tuxpaint-da", "fillets-linux-1"), 5),
)
# Model candidates are compared on all 19 (docs/separate.md, "Overlap against profiles").
SETS = {"nine": PAIRS, "check": CHECK_PAIRS, "all": PAIRS + CHECK_PAIRS}
GATES = {"off": (False,), "on": (True,), "both": (False, True)}
ORDERS = {"voices": ("voices",), "oracle": ("oracle",), "both": ("voices", "oracle")}


class OracleOrder(OverlapAdd):
    """Joins chunks in the order that best matches the ``references`` (C, T) at the model's
    rate: the order a perfect alignment would choose for each chunk
    (:func:`tdanet.separate.best_permutation` against the references over the whole chunk)."""

    def __init__(self, overlap: int, references: np.ndarray) -> None:
        super().__init__(overlap, align="overlap")
        self.references = references
        self.start = 0

    def _order(self, sources: np.ndarray, analysed: object) -> tuple[int, ...]:
        part = self.references[:, self.start : self.start + sources.shape[1]]
        self.start += sources.shape[1] - self.overlap
        return best_permutation(part, sources)


class OracleSeparator(Separator):
    """A :class:`Separator` that joins chunks by :class:`OracleOrder` against ``references``
    (C, T), set before each recording."""

    references: np.ndarray

    def _joiner(self) -> OverlapAdd:
        return OracleOrder(self.overlap, self.references)


def conversations(corpus: Path, pairs: Pairs = PAIRS) -> list[tuple[str, Conversation]]:
    built = []
    for label, speakers, seed in pairs:
        clips = None
        if speakers is not None:
            clips = (corpus_clips(corpus, speakers[0]), corpus_clips(corpus, speakers[1]))
        built.append((label, build_conversation(clips, seed=seed)))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--corpus", type=Path, required=True, help="tdanet corpus output")
    parser.add_argument("--set", choices=sorted(SETS), default="nine", help="which conversations")
    parser.add_argument(
        "--gate",
        choices=sorted(GATES),
        default="both",
        help="pause gate settings to run (default both)",
    )
    parser.add_argument(
        "--order",
        choices=sorted(ORDERS),
        default="voices",
        help="chunk order: the default alignment, the references' (oracle), or both",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    built = conversations(args.corpus, SETS[args.set])
    print(
        "| model | chunk order | pause gate | conversation | changes | whole-file SI-SNRi | "
        "silent >= 20 dB down | frame agreement |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, order, gate in itertools.product(args.models, ORDERS[args.order], GATES[args.gate]):
        kind = OracleSeparator if order == "oracle" else Separator
        separator = kind(model, pause_gate=gate)
        rows = []
        for label, conv in built:
            if isinstance(separator, OracleSeparator):
                assert conv.sample_rate == separator.sample_rate
                separator.references = conv.sources
            estimates = separator.separate(conv.mixture, conv.sample_rate)
            got = score(estimates, conv, separator.speech_segments())
            silent = float((got.inactive_db <= -20).mean())
            changes, whole, agreement = got.changes, got.whole_si_snri, got.agreement
            rows.append((changes, whole, silent, agreement))
            print(
                f"| {model} | {order} | {'on' if gate else 'off'} | {label} | {changes} | "
                f"{whole:.2f} | {silent:.0%} | {agreement:.1%} |",
                flush=True,
            )
        total = np.array(rows)
        print(
            f"| **{model}** | **{order}** | **{'on' if gate else 'off'}** | **all {len(rows)} (sum / mean)**"
            f" | **{total[:, 0].sum():.0f}** | **{total[:, 1].mean():.2f}** | "
            f"**{total[:, 2].mean():.0%}** | **{total[:, 3].mean():.1%}** |",
            flush=True,
        )


if __name__ == "__main__":
    main()

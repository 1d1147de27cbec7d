"""A seeded two-speaker conversation of held-out real voices, and how to score its separation.

:func:`build_conversation` strings clips of two speakers (by default the Tux Paint voices in
``tests/fixtures/tuxpaint-voices``, GPL-2) into a conversation: turns of one to four clips,
pauses between turns, the next speaker often starting before the current one finishes
(overlapped speech), monologues long enough that one speaker is silent across whole chunk
overlaps, and the second speaker quieter than the first. The scoring functions measure what
issue 12 asks of long recordings: the output each speaker lands in per window
(:func:`window_permutations`), whole-file vs per-window SI-SNRi (:func:`si_snri_report`), the
level of the inactive output where one person talks (:func:`inactive_levels`) and the
frame agreement of speaker activity (:func:`frame_agreement`). ``benchmarks/bench_stitching.py``
prints them all for a model.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

VOICES = Path(__file__).parent / "fixtures" / "tuxpaint-voices"
SPEAKERS = ("tuxpaint-el", "tuxpaint-da")
RATE = 16_000


@dataclass(frozen=True)
class Conversation:
    """``mixture`` (T,), clean ``sources`` (2, T) as mixed, per-sample ``activity`` (2, T)."""

    mixture: np.ndarray
    sources: np.ndarray
    activity: np.ndarray
    sample_rate: int

    @property
    def overlap_share(self) -> float:
        """Share of the speech time (anyone talking) in which both talk."""
        both = np.logical_and(*self.activity).sum()
        return float(both / np.logical_or(*self.activity).sum())


def fixture_clips(speaker: str, voices: Path = VOICES) -> list[np.ndarray]:
    """The trimmed clips of one fixture speaker, float32 at 16 kHz."""
    signal, rate = sf.read(voices / f"{speaker}.ogg", dtype="float32")
    assert rate == RATE
    with open(voices / f"{speaker}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [signal[int(row["start"]) : int(row["end"])] for row in rows]


def build_conversation(
    clips: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    *,
    seconds: float = 600.0,
    seed: int = 0,
    quieter_db: float = 6.0,
    overlap_chance: float = 0.8,
) -> Conversation:
    """A ``seconds`` long two-speaker conversation from ``clips`` (default: the fixture).

    Speakers alternate turns of 1-4 clips (0.1-0.3 s apart); one turn in five is a
    monologue of 8-14 s. The next turn starts, with chance ``overlap_chance``, 0.4-2 s before
    the current one ends (never before its start), otherwise 0.3-2 s after it. The second
    speaker is ``quieter_db`` quieter than the first; each turn varies by +-2 dB.
    """
    if clips is None:
        clips = (fixture_clips(SPEAKERS[0]), fixture_clips(SPEAKERS[1]))
    rng = np.random.default_rng(seed)
    total = round(seconds * RATE)
    sources = np.zeros((2, total), np.float32)
    activity = np.zeros((2, total), bool)
    at = round(0.5 * RATE)
    speaker = 0
    while at < total:
        turn_start = at
        goal = rng.uniform(8, 14) if rng.random() < 0.2 else 0.0
        count = 0
        gain = 10 ** ((-quieter_db * speaker + rng.uniform(-2, 2)) / 20)
        clips_in_turn = rng.integers(1, 5)
        while at < total and (
            count == 0 or ((at - turn_start) / RATE < goal if goal else count < clips_in_turn)
        ):
            clip = clips[speaker][rng.integers(len(clips[speaker]))]
            end = min(at + len(clip), total)
            sources[speaker, at:end] += gain * clip[: end - at]
            activity[speaker, at:end] = True
            at = end + round(rng.uniform(0.1, 0.3) * RATE)
            count += 1
        turn_end = end
        if rng.random() < overlap_chance:
            back = round(rng.uniform(0.4, 2.0) * RATE)
            at = max(turn_start + round(0.2 * RATE), turn_end - back)
        else:
            at = turn_end + round(rng.uniform(0.3, 2.0) * RATE)
        speaker = 1 - speaker
    return Conversation(sources.sum(axis=0), sources, activity, RATE)


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SNR in dB of ``estimate`` against ``reference`` (both (T,), zero-meaned)."""
    est = estimate.astype(np.float64) - estimate.mean()
    ref = reference.astype(np.float64) - reference.mean()
    target = (est @ ref) / max(ref @ ref, 1e-12) * ref
    noise = est - target
    return float(10 * np.log10(max(target @ target, 1e-12) / max(noise @ noise, 1e-12)))


def best_order(
    estimates: np.ndarray, references: np.ndarray, active: np.ndarray
) -> tuple[int, ...]:
    """Order p of ``estimates`` maximising the summed SI-SNR against the ``active`` references."""
    scores = np.array([[si_snr(e, r) for e in estimates] for r in references])
    orders = list(itertools.permutations(range(len(references))))
    return max(orders, key=lambda p: sum(scores[i, p[i]] for i in range(len(p)) if active[i]))


def window_permutations(
    estimates: np.ndarray, conv: Conversation, window_s: float = 10.0
) -> list[tuple[int, ...] | None]:
    """Best order of ``estimates`` per ``window_s`` window (None where nobody talks)."""
    size = round(window_s * conv.sample_rate)
    orders: list[tuple[int, ...] | None] = []
    for start in range(0, conv.mixture.shape[0] - size + 1, size):
        part = slice(start, start + size)
        # A speaker counts in a window if talking for at least 0.5 s of it.
        active = conv.activity[:, part].sum(axis=1) >= 0.5 * conv.sample_rate
        orders.append(
            best_order(estimates[:, part], conv.sources[:, part], active) if active.any() else None
        )
    return orders


def whole_order(estimates: np.ndarray, conv: Conversation) -> tuple[int, ...]:
    """Best order of ``estimates`` over the whole conversation."""
    return best_order(estimates, conv.sources, np.ones(len(conv.sources), bool))


def speaker_changes(estimates: np.ndarray, conv: Conversation) -> tuple[int, int]:
    """(windows whose best order differs from the whole file's, order changes between windows)."""
    whole = whole_order(estimates, conv)
    orders = [o for o in window_permutations(estimates, conv) if o is not None]
    differ = sum(o != whole for o in orders)
    changes = sum(a != b for a, b in itertools.pairwise(orders))
    return differ, changes


def si_snri_report(
    estimates: np.ndarray, conv: Conversation, window_s: float = 10.0
) -> tuple[float, float]:
    """(whole-file SI-SNRi, mean per-window best-order SI-SNRi over windows where both talk)."""
    whole = whole_order(estimates, conv)
    whole_i = np.mean(
        [
            si_snr(estimates[p], conv.sources[i]) - si_snr(conv.mixture, conv.sources[i])
            for i, p in enumerate(whole)
        ]
    )
    size = round(window_s * conv.sample_rate)
    per_window = []
    for start in range(0, conv.mixture.shape[0] - size + 1, size):
        part = slice(start, start + size)
        if (conv.activity[:, part].sum(axis=1) < 0.5 * conv.sample_rate).any():
            continue
        refs, mix, est = conv.sources[:, part], conv.mixture[part], estimates[:, part]
        order = best_order(est, refs, np.ones(2, bool))
        per_window.append(
            np.mean([si_snr(est[p], refs[i]) - si_snr(mix, refs[i]) for i, p in enumerate(order)])
        )
    return float(whole_i), float(np.mean(per_window))


def single_speaker_stretches(conv: Conversation, min_s: float = 1.0) -> list[tuple[int, int, int]]:
    """(speaker, start, end) of every stretch longer than ``min_s`` where exactly one talks."""
    stretches = []
    for speaker in range(2):
        alone = conv.activity[speaker] & ~conv.activity[1 - speaker]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], alone.astype(np.int8), [0]])))
        for start, end in zip(edges[::2], edges[1::2], strict=True):
            if end - start > min_s * conv.sample_rate:
                stretches.append((speaker, int(start), int(end)))
    return stretches


def inactive_levels(estimates: np.ndarray, conv: Conversation) -> np.ndarray:
    """Per single-speaker stretch (> 1 s): energy of the silent speaker's output relative to
    the talking speaker's, in dB (outputs matched to speakers by the whole-file order)."""
    order = whole_order(estimates, conv)
    levels = []
    for speaker, start, end in single_speaker_stretches(conv):
        talking = estimates[order[speaker], start:end].astype(np.float64)
        silent = estimates[order[1 - speaker], start:end].astype(np.float64)
        levels.append(10 * np.log10(max(silent @ silent, 1e-20) / max(talking @ talking, 1e-20)))
    return np.array(levels)


def frame_agreement(
    segments: list[tuple[float, float, int]],
    conv: Conversation,
    order: tuple[int, ...],
    frame_s: float = 0.01,
) -> float:
    """Share of ``frame_s`` frames where the set of talking speakers from ``segments``
    ((start s, end s, output index)) equals the reference's; output ``order[i]`` is speaker i."""
    hop = round(frame_s * conv.sample_rate)
    frames = conv.mixture.shape[0] // hop
    reference = conv.activity[:, : frames * hop].reshape(2, frames, hop).mean(axis=2) >= 0.5
    predicted = np.zeros((2, frames), bool)
    speaker_of = {output: speaker for speaker, output in enumerate(order)}
    for start, end, output in segments:
        predicted[speaker_of[output], round(start / frame_s) : round(end / frame_s)] = True
    return float((predicted == reference).all(axis=0).mean())


@dataclass(frozen=True)
class Score:
    """What the benchmarks report of one separated conversation (see the functions above)."""

    windows_off: int
    changes: int
    whole_si_snri: float
    window_si_snri: float
    inactive_db: np.ndarray
    agreement: float


def score(
    estimates: np.ndarray, conv: Conversation, segments: list[tuple[float, float, int]]
) -> Score:
    """All of the measures above for ``estimates`` (C, T) and their speech ``segments``."""
    differ, changes = speaker_changes(estimates, conv)
    whole, per_window = si_snri_report(estimates, conv)
    agreement = frame_agreement(segments, conv, whole_order(estimates, conv))
    return Score(differ, changes, whole, per_window, inactive_levels(estimates, conv), agreement)

"""Who speaks when: speaker activity from separated outputs, written as RTTM and CSV.

:class:`FrameEnergy` measures each output's energy in 10 ms frames as the outputs stream
by; :func:`speech_segments` turns the energies into (start, end, speaker) segments: an
output speaks in a frame when its smoothed energy is within :data:`ACTIVE_FLOOR_DB` of the
recording's loud speech and within :func:`dominance_db` of the loudest output there (a
margin set above the outputs' leakage), and short pauses and blips are bridged or dropped.
:func:`rttm_text` and :func:`csv_text` format them; :func:`single_speaker` says when one
output holds nearly all the speech. :func:`pause_gains` lowers each output through its long
pauses, where what remains is the model's leakage of the other voices.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Iterable

import numpy as np

FRAME_SECONDS = 0.01
# Energy smoothing window, and the gaps bridged / segments dropped, in seconds.
SMOOTH_SECONDS = 0.1
MIN_GAP_SECONDS = 0.1
MIN_SEGMENT_SECONDS = 0.2
# Active: within this many dB of the recording's loud speech (95th percentile frame) ...
ACTIVE_FLOOR_DB = 35.0
# ... and within dominance_db() of the loudest output in the frame: that many dB inside the
# level of the outputs' leaks, within these bounds (calibrated in docs/separate.md).
LEAK_MARGIN_DB = 6.0
MIN_DOMINANCE_DB, MAX_DOMINANCE_DB = 3.0, 30.0
# One output with more than this share of the speech time means a single speaker.
SINGLE_SPEAKER_SHARE = 0.97
# Pauses of an output (more than PAUSE_DOMINANCE_DB below the loudest) at least this long
# are lowered by PAUSE_GATE_DB, with ramps of PAUSE_RAMP_SECONDS inside them: a fixed margin,
# as the adaptive one drops quieter talkers in overlapped speech (docs/separate.md).
PAUSE_DOMINANCE_DB = 8.0
PAUSE_MIN_SECONDS = 1.0
PAUSE_GATE_DB = 20.0
PAUSE_RAMP_SECONDS = 0.05

Segment = tuple[float, float, int]


class FrameEnergy:
    """Energy of each of C outputs in consecutive frames of ``frame`` samples, block by block."""

    def __init__(self, num_sources: int, sample_rate: int) -> None:
        self.frame = max(1, round(FRAME_SECONDS * sample_rate))
        self.rest = np.zeros((num_sources, 0), np.float32)
        self.blocks: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        """Add (C, n) samples; complete frames are measured, the rest waits for the next block."""
        block = np.asarray(block, np.float32)
        data = np.concatenate([self.rest, block], axis=1) if self.rest.shape[1] else block
        whole = data.shape[1] // self.frame * self.frame
        frames = data[:, :whole].reshape(len(data), -1, self.frame)
        # float32 sums of one frame's squares are exact to 1e-6; no full-size copies.
        squares = np.einsum("cfn,cfn->cf", frames, frames)
        self.blocks.append(squares.astype(np.float64) / self.frame)
        self.rest = data[:, whole:].copy()

    def energies(self) -> np.ndarray:
        """(C, F) mean-square energy per frame, the last partial frame included."""
        parts = list(self.blocks)
        if self.rest.shape[1]:
            parts.append((self.rest.astype(np.float64) ** 2).mean(axis=1, keepdims=True))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(self.rest), 0))


def frame_energies(sources: np.ndarray, sample_rate: int) -> np.ndarray:
    """(C, F) energy per :data:`FRAME_SECONDS` frame of whole sources (C, T)."""
    meter = FrameEnergy(len(sources), sample_rate)
    meter.push(sources)
    return meter.energies()


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame indexes of the runs of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def activity(energies: np.ndarray, dominance: float | None = None) -> np.ndarray:
    """(C, F) bool: where each output speaks (see the module docstring), within ``dominance``
    dB of the loudest output (default :func:`dominance_db`); bridges pauses shorter than
    :data:`MIN_GAP_SECONDS` and drops runs shorter than :data:`MIN_SEGMENT_SECONDS`."""
    width = max(1, round(SMOOTH_SECONDS / FRAME_SECONDS))
    kernel = np.ones(width) / width
    smooth = np.array([np.convolve(row, kernel, mode="same") for row in energies])
    if not smooth.size or smooth.max() <= 0.0:
        return np.zeros(energies.shape, bool)
    loudest = smooth.max(axis=0)
    floor = np.percentile(loudest, 95) * 10 ** (-ACTIVE_FLOOR_DB / 10)
    if dominance is None:
        dominance = dominance_db(smooth, loudest >= floor)
    active = (smooth >= floor) & (smooth >= loudest * 10 ** (-dominance / 10))
    for row in active:
        runs = _runs(row)
        for (_, end), (start, _) in itertools.pairwise(runs):
            if (start - end) * FRAME_SECONDS < MIN_GAP_SECONDS:
                row[end:start] = True
        for start, end in _runs(row):
            if (end - start) * FRAME_SECONDS < MIN_SEGMENT_SECONDS:
                row[start:end] = False
    return active


def dominance_db(smooth: np.ndarray, speech: np.ndarray) -> float:
    """How many dB below the loudest output another output still counts as talking.

    A separated output carries leaks of the other voices: over the frames with ``speech``
    (F,), the second-loudest output of ``smooth`` (C, F) sits at some level below the
    loudest, mostly leakage where one person talks. The threshold is :data:`LEAK_MARGIN_DB`
    inside that level's 75th percentile, within [:data:`MIN_DOMINANCE_DB`,
    :data:`MAX_DOMINANCE_DB`]: a model that leaks little keeps a quiet second talker, a leaky
    one does not report its leaks as speech.
    """
    if len(smooth) < 2 or not speech.any():
        return MAX_DOMINANCE_DB
    ordered = np.sort(smooth[:, speech], axis=0)
    below = 10 * np.log10(np.maximum(ordered[-2], 1e-30) / ordered[-1])
    threshold = -float(np.percentile(below, 75)) - LEAK_MARGIN_DB
    return float(np.clip(threshold, MIN_DOMINANCE_DB, MAX_DOMINANCE_DB))


def speech_segments(energies: np.ndarray) -> list[Segment]:
    """(start s, end s, output index from 0) of each output's speech, sorted by start."""
    found = [
        (start * FRAME_SECONDS, end * FRAME_SECONDS, index)
        for index, row in enumerate(activity(energies))
        for start, end in _runs(row)
    ]
    return sorted(found)


def single_speaker(segments: Iterable[Segment], num_sources: int) -> bool:
    """True when one output holds more than :data:`SINGLE_SPEAKER_SHARE` of the speech time."""
    time = np.zeros(num_sources)
    for start, end, index in segments:
        time[index] += end - start
    return bool(time.sum() > 0 and time.max() > SINGLE_SPEAKER_SHARE * time.sum())


def speaker_label(index: int) -> str:
    """Label of output ``index`` (from 0) in RTTM and CSV: ``spk1``, ``spk2``, ... like the files."""
    return f"spk{index + 1}"


def rttm_text(segments: Iterable[Segment], recording: str) -> str:
    """NIST RTTM lines ``SPEAKER <recording> 1 <start> <duration> <NA> <NA> <label> <NA> <NA>``."""
    name = recording.replace(" ", "_") or "recording"
    return "".join(
        f"SPEAKER {name} 1 {start:.2f} {end - start:.2f} <NA> <NA> {speaker_label(i)} <NA> <NA>\n"
        for start, end, i in segments
    )


def csv_text(segments: Iterable[Segment]) -> str:
    """CSV with a header row ``start,end,speaker`` (seconds, two decimals; ``spk1``...)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start", "end", "speaker"])
    for start, end, index in segments:
        writer.writerow([f"{start:.2f}", f"{end:.2f}", speaker_label(index)])
    return buffer.getvalue()


def segment_paths(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """``out_dir/<stem>.rttm`` and ``out_dir/<stem>_segments.csv`` for input ``path``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(out_dir, f"{stem}.rttm"), os.path.join(out_dir, f"{stem}_segments.csv")


def pause_gains(
    energies: np.ndarray,
    *,
    depth_db: float = PAUSE_GATE_DB,
    min_seconds: float = PAUSE_MIN_SECONDS,
) -> np.ndarray:
    """(C, F) gain per frame of each output: 1 where it speaks or pauses briefly, and
    ``depth_db`` lower inside each pause of at least ``min_seconds`` (:func:`activity` with
    :data:`PAUSE_DOMINANCE_DB`), reached over :data:`PAUSE_RAMP_SECONDS` ramps inside the
    pause so that speech keeps its edges. A separated output's long pauses hold the model's
    leakage of the other voices."""
    gains = np.ones(energies.shape, np.float64)
    if not gains.size:
        return gains
    floor = 10 ** (-depth_db / 20)
    ramp = max(1, round(PAUSE_RAMP_SECONDS / FRAME_SECONDS))
    for row, active in zip(gains, activity(energies, PAUSE_DOMINANCE_DB), strict=True):
        for start, end in _runs(~active):
            if (end - start) * FRAME_SECONDS < min_seconds:
                continue
            inside = np.arange(end - start, dtype=np.float64)
            # Frames from the neighbouring speech on each side (none: a file edge).
            left = inside + 1 if start > 0 else np.full(end - start, np.inf)
            right = end - start - inside if end < len(row) else np.full(end - start, np.inf)
            edge = np.minimum(left, right)
            row[start:end] = np.where(edge >= ramp, floor, 1 + (floor - 1) * edge / ramp)
    return gains


def gains_at(gains: np.ndarray, start: int, count: int, sample_rate: int) -> np.ndarray:
    """(C, count) float32 gains of samples ``start`` ... ``start + count - 1`` at
    ``sample_rate`` from per-frame ``gains`` (C, F): linear between frame centres."""
    if not gains.shape[1]:
        return np.ones((len(gains), count), np.float32)
    centres = (np.arange(gains.shape[1]) + 0.5) * FRAME_SECONDS
    times = (np.arange(start, start + count) + 0.5) / sample_rate
    return np.array([np.interp(times, centres, row) for row in gains], np.float32).reshape(
        len(gains), count
    )

"""Seeded augmentation of single-speaker sources: random equalisation, room reverberation
and conversation turns.

Both are functions of a numpy ``Generator`` (or of a seed), so a mixture drawn with
``default_rng([seed, stream, epoch, index])`` is the same on any machine, process or resume.

Rooms come from a bank: room ``index`` of bank ``seed`` is a shoebox room (pyroomacoustics'
image-source model) whose size, RT60, microphone and source positions are drawn from
``default_rng([seed, index])``. A room's impulse responses cost up to a second of CPU time
(RT60 0.6 s), so each is computed once per process and cached; a training run draws its
rooms from a bank of a few hundred, and evaluation sets use another bank seed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Random EQ: a low shelf, a peak and a high shelf, each within +-max_db.
LOW_SHELF_HZ = (80.0, 400.0)
PEAK_HZ = (300.0, 4000.0)
PEAK_Q = (0.5, 2.0)
HIGH_SHELF_HZ = (2000.0, 7000.0)
# Room sizes (m) and placement: sources 0.5-3 m from the microphone, 0.4 m from walls.
ROOM_LENGTH = (3.0, 9.0)
ROOM_WIDTH = (3.0, 7.0)
ROOM_HEIGHT = (2.5, 3.5)
SOURCE_DISTANCE = (0.5, 3.0)
WALL_MARGIN = 0.4
# Samples kept before the direct path (pyroomacoustics' fractional-delay filter is 81 taps).
PRE_DELAY = 40
# Conversation turns: each 0.5-3 s long; the next voice starts up to 1 s before the last one
# stops (overlapped speech) or up to 1 s after (a pause), but at least 0.25 s after it started.
TURN_SECONDS = (0.5, 3.0)
TURN_OFFSET_SECONDS = (-1.0, 1.0)
MIN_TURN_STEP_SECONDS = 0.25
TURN_RAMP_SECONDS = 0.01


def biquad(kind: str, freq: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """One second-order section ``[b0, b1, b2, 1, a1, a2]`` (RBJ audio-EQ cookbook)."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * min(freq, 0.45 * rate) / rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * amp, -2 * cos, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos, 1 - alpha / amp]
    else:
        sign = 1 if kind == "low" else -1
        root = 2 * math.sqrt(amp) * alpha
        b = [
            amp * ((amp + 1) - sign * (amp - 1) * cos + root),
            sign * 2 * amp * ((amp - 1) - sign * (amp + 1) * cos),
            amp * ((amp + 1) - sign * (amp - 1) * cos - root),
        ]
        a = [
            (amp + 1) + sign * (amp - 1) * cos + root,
            -sign * 2 * ((amp - 1) + sign * (amp + 1) * cos),
            (amp + 1) + sign * (amp - 1) * cos - root,
        ]
    return np.array([*b, *a]) / a[0]


def random_eq(signal: np.ndarray, rate: int, max_db: float, rng: np.random.Generator) -> np.ndarray:
    """``signal`` (T,) through a random low shelf, peak and high shelf (gains within +-max_db)."""
    from scipy.signal import sosfilt

    gains = rng.uniform(-max_db, max_db, 3)
    sections = np.stack(
        [
            biquad("low", rng.uniform(*LOW_SHELF_HZ), gains[0], math.sqrt(0.5), rate),
            biquad("peak", rng.uniform(*PEAK_HZ), gains[1], rng.uniform(*PEAK_Q), rate),
            biquad("high", rng.uniform(*HIGH_SHELF_HZ), gains[2], math.sqrt(0.5), rate),
        ]
    )
    return np.asarray(sosfilt(sections, signal), dtype=np.float32)


@lru_cache(maxsize=1024)
def room_impulse_responses(
    seed: int, index: int, num_sources: int, rate: int, rt60: tuple[float, float]
) -> np.ndarray:
    """Impulse responses (C, L) from ``num_sources`` places in room ``index`` of bank ``seed``
    to one microphone, direct paths aligned at sample ``PRE_DELAY``; read-only (cached)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, index])
    dims = np.array(
        [rng.uniform(*ROOM_LENGTH), rng.uniform(*ROOM_WIDTH), rng.uniform(*ROOM_HEIGHT)]
    )
    target = float(rng.uniform(*rt60))
    absorption, max_order = pra.inverse_sabine(target, dims)
    room = pra.ShoeBox(
        dims, fs=rate, materials=pra.Material(absorption), max_order=max_order, air_absorption=True
    )
    mic = rng.uniform(WALL_MARGIN, dims - WALL_MARGIN)
    for _ in range(num_sources):
        room.add_source(source_position(mic, dims, rng))
    room.add_microphone(mic)
    room.compute_rir()
    responses = [np.asarray(room.rir[0][c], dtype=np.float64) for c in range(num_sources)]
    start = max(0, min(int(np.argmax(np.abs(r))) for r in responses) - PRE_DELAY)
    length = max(r.shape[0] for r in responses) - start
    out = np.zeros((num_sources, length), dtype=np.float32)
    for c, response in enumerate(responses):
        out[c, : response.shape[0] - start] = response[start:]
    out.setflags(write=False)
    return out


def source_position(mic: np.ndarray, dims: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A point 0.5-3 m from ``mic`` (horizontally) inside the room's margins."""
    low, high = np.full(3, WALL_MARGIN), dims - WALL_MARGIN
    for _ in range(100):
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(*SOURCE_DISTANCE)
        point = mic + np.array(
            [distance * math.cos(angle), distance * math.sin(angle), rng.uniform(-0.3, 0.3)]
        )
        if np.all(point >= low) and np.all(point <= high):
            return point
    return np.clip(mic + rng.uniform(-0.5, 0.5, 3), low, high)


def reverberate(signal: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``signal`` (T,) convolved with ``response`` (L,), cut to T samples (the reverberant
    source, aligned with the dry one at the direct path)."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(signal, response)[PRE_DELAY : PRE_DELAY + signal.shape[0]]
    return np.asarray(wet, dtype=np.float32)


def turn_masks(num_sources: int, length: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gains (num_sources, length) in [0, 1] that make full-length sources take turns.

    A random voice starts at sample 0; each turn's length is drawn from :data:`TURN_SECONDS`,
    and the next voice (another one) starts an offset drawn from :data:`TURN_OFFSET_SECONDS`
    after it ends (overlapped where negative, after a pause where positive), but at least
    :data:`MIN_TURN_STEP_SECONDS` after it began. Turns fade in and out over
    :data:`TURN_RAMP_SECONDS`. A model trained on such windows has to keep each voice in one
    output across the pauses of a conversation.
    """
    masks = np.zeros((num_sources, length), np.float32)
    min_step = max(1, round(MIN_TURN_STEP_SECONDS * rate))
    speaker, start = int(rng.integers(num_sources)), 0
    while start < length:
        stop = start + round(rng.uniform(*TURN_SECONDS) * rate)
        masks[speaker, start:stop] = 1.0
        start = max(stop + round(rng.uniform(*TURN_OFFSET_SECONDS) * rate), start + min_step)
        speaker = (speaker + 1 + int(rng.integers(num_sources - 1))) % num_sources
    ramp = max(1, round(TURN_RAMP_SECONDS * rate))
    kernel = np.ones(ramp, np.float32) / ramp
    return np.stack([np.convolve(mask, kernel, mode="same") for mask in masks])

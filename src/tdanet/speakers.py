"""Voice profiles: which separated output holds which speaker, from the sound of the voices.

A chunk's separated sources come in an arbitrary order. Their overlap with the previous
chunk says little when someone is silent there or when the model splits one voice over
several outputs, so :class:`VoiceProfiles` also remembers what each output of the recording
so far sounds like: the long-term shape of its log-mel spectrum (:func:`voice_features`),
a crude but robust speaker signature that needs no trained weights. The alignment in
:mod:`tdanet.separate` combines both (``docs/separate.md`` has the measurements).
"""

from __future__ import annotations

import numpy as np

# Analysis frames: 32 ms windows every 10 ms, 40 mel bands from 60 Hz.
FRAME_SECONDS = 0.032
HOP_SECONDS = 0.010
MEL_BANDS = 40
MEL_LOW_HZ = 60.0
# Frames more than this many dB below a source's loudest frame of the chunk do not count.
ACTIVE_FLOOR_DB = 30.0
# Frames more than this many dB below the loudest output's same frame are leakage of another
# voice, not the source's own: they would make a quiet output sound like the loud one.
LEAK_FLOOR_DB = 15.0
# A source needs this many active frames in a chunk to give a feature.
MIN_ACTIVE_FRAMES = 10

# A chunk's voice signatures (C, MEL_BANDS) and their weights (C,): see voice_features.
Features = tuple[np.ndarray, np.ndarray]


def mel_filterbank(sample_rate: int, n_fft: int, bands: int = MEL_BANDS) -> np.ndarray:
    """Triangular mel filters (bands, n_fft // 2 + 1) from :data:`MEL_LOW_HZ` to 0.95 Nyquist."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(
        np.linspace(mel(np.array(MEL_LOW_HZ)), mel(np.array(0.475 * sample_rate)), bands + 2)
    )
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def log_mel(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel spectrogram (frames, :data:`MEL_BANDS`) of (T,) samples, and each frame's energy.

    Returns empty arrays for a signal shorter than one frame.
    """
    n_fft = max(16, round(FRAME_SECONDS * sample_rate))
    hop = max(1, round(HOP_SECONDS * sample_rate))
    if samples.shape[0] < n_fft:
        return np.zeros((0, MEL_BANDS)), np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    bank = mel_filterbank(sample_rate, n_fft)
    return np.log(power @ bank.T + 1e-10), power.sum(axis=1)


def voice_features(sources: np.ndarray, sample_rate: int) -> Features:
    """Each source's voice signature and its weight: ((C, :data:`MEL_BANDS`), (C,)).

    The signature is the mean log-mel spectrum over the source's active frames (within
    :data:`ACTIVE_FLOOR_DB` of its loudest, and within :data:`LEAK_FLOOR_DB` of the loudest
    output in the same frame), minus its mean over bands so that it describes the spectral
    shape, not the level. The weight is the number of active frames; a source with fewer
    than :data:`MIN_ACTIVE_FRAMES` gets weight 0 (no signature).
    """
    features = np.zeros((len(sources), MEL_BANDS))
    weights = np.zeros(len(sources))
    analysed = [log_mel(source, sample_rate) for source in sources]
    energies = np.stack([energy for _, energy in analysed])
    if not energies.size:
        return features, weights
    loudest = energies.max(axis=0) * 10.0 ** (-LEAK_FLOOR_DB / 10.0)
    for index, (spectrum, energy) in enumerate(analysed):
        if energy.max() <= 0.0:
            continue
        active = (energy > energy.max() * 10.0 ** (-ACTIVE_FLOOR_DB / 10.0)) & (energy >= loudest)
        if active.sum() < MIN_ACTIVE_FRAMES:
            continue
        shape = spectrum[active].mean(axis=0)
        features[index] = shape - shape.mean()
        weights[index] = active.sum()
    return features, weights


class VoiceProfiles:
    """The running voice signature of each output of a recording, weighted by active frames."""

    def __init__(self, num_sources: int) -> None:
        self.sums = np.zeros((num_sources, MEL_BANDS))
        self.weights = np.zeros(num_sources)

    def scores(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Similarity (C, C) of profile i and candidate feature j, scaled so that a whole
        assignment's sum is comparable across chunks: minus the squared distance divided by
        C times the mean distance over the C^2 pairs (so all pairs sum to -C). Pairs without a profile or a feature
        get the mean (neutral); all zeros when no pair has both."""
        known = (self.weights > 0)[:, None] & (weights > 0)[None, :]
        if not known.any():
            return np.zeros((len(self.weights), len(weights)))
        profiles = self.sums / np.maximum(self.weights, 1e-12)[:, None]
        distances = ((profiles[:, None, :] - features[None, :, :]) ** 2).sum(axis=2)
        mean = distances[known].mean()
        distances = np.where(known, distances, mean)
        return -distances / max(mean * len(weights), 1e-12)

    def same_voice(self) -> bool:
        """True when every pair of outputs with a profile sounds alike (closer than
        :data:`SAME_VOICE_DISTANCE`): the recording seems to hold one speaker."""
        known = self.weights > 0
        if known.sum() < 2:
            return True
        profiles = self.sums[known] / self.weights[known][:, None]
        distances = ((profiles[:, None, :] - profiles[None, :, :]) ** 2).sum(axis=2)
        return bool(distances.max() < SAME_VOICE_DISTANCE)

    def add(self, features: np.ndarray, weights: np.ndarray) -> None:
        """Fold in one chunk's features, already in the outputs' order."""
        self.sums += features * weights[:, None]
        self.weights += weights


# Outputs whose profiles are closer than this (squared distance) hold one voice: measured
# 1.7-11 for one voice and 39 for two on the test conversation (docs/separate.md).
SAME_VOICE_DISTANCE = 20.0
# One output holding at least this share of the outputs' (smoothed) energy means one voice.
SINGLE_SHARE = 0.7
# Smoothing of the energy shares (s) and of the voice classification (s).
SHARE_SMOOTH_SECONDS = 0.2
OWNER_SMOOTH_SECONDS = 1.0
RAMP_FRAMES = 5


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over the last axis, ``width`` frames wide, same length."""
    if width <= 1 or values.shape[-1] == 0:
        return values
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, values)


def lone_voice_owner(
    sources: np.ndarray, sample_rate: int, profiles: VoiceProfiles | None
) -> tuple[np.ndarray, np.ndarray]:
    """Where one voice talks alone, and whose it is: per analysis frame (``HOP_SECONDS``),
    the weight in [0, 1] of "one voice" and the output it belongs to.

    A frame is one voice where one output holds at least :data:`SINGLE_SHARE` of the
    outputs' energy (smoothed over :data:`SHARE_SMOOTH_SECONDS`): the model did not hear
    two voices there. Its owner is the output whose voice profile the summed outputs sound
    most like (smoothed over :data:`OWNER_SMOOTH_SECONDS`), or the loudest output without
    profiles: a weak model may put a lone voice in the wrong output for a few seconds, the
    profiles keep it with its speaker.
    """
    spectrum, _ = log_mel(sources.sum(axis=0), sample_rate)
    frames = spectrum.shape[0]
    energy = np.stack([log_mel(source, sample_rate)[1] for source in sources])
    shares = _smooth(energy, round(SHARE_SMOOTH_SECONDS / HOP_SECONDS))
    shares = shares / np.maximum(shares.sum(axis=0), 1e-20)
    # Ramps of a few frames instead of hard switches: no clicks where a voice joins.
    single = _smooth((shares.max(axis=0) >= SINGLE_SHARE).astype(np.float64), RAMP_FRAMES)
    owner = shares.argmax(axis=0)
    if profiles is not None and (profiles.weights > 0).all() and frames:
        centred = spectrum - spectrum.mean(axis=1, keepdims=True)
        means = profiles.sums / profiles.weights[:, None]
        distances = ((centred[None, :, :] - means[:, None, :]) ** 2).sum(axis=2)
        owner = _smooth(distances, round(OWNER_SMOOTH_SECONDS / HOP_SECONDS)).argmin(axis=0)
    return single, owner


def route_lone_voice(
    sources: np.ndarray, sample_rate: int, profiles: VoiceProfiles | None
) -> np.ndarray:
    """``sources`` (C, T) with every lone voice moved whole into its owner's output.

    Where :func:`lone_voice_owner` finds one voice, the outputs' sum goes to the owning
    output and the others fall silent; elsewhere (two voices, or nobody) the sources are
    kept. The frame weights are interpolated to samples, so the outputs still sum to what
    they summed to before.
    """
    single, owner = lone_voice_owner(sources, sample_rate, profiles)
    if not single.size or not single.any():
        return sources
    hop = max(1, round(HOP_SECONDS * sample_rate))
    centres = np.arange(single.shape[0]) * hop + max(16, round(FRAME_SECONDS * sample_rate)) / 2
    samples = np.arange(sources.shape[1])
    weight = np.interp(samples, centres, single).astype(np.float32)
    frame_of = np.clip(np.searchsorted(centres, samples), 0, single.shape[0] - 1)
    routed = np.zeros_like(sources)
    routed[owner[frame_of], samples] = sources.sum(axis=0)
    return (1.0 - weight) * sources + weight * routed

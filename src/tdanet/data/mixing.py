"""Mixtures drawn from single-speaker recordings: on the fly for training, or seeded to disk.

Two gain schemes:
  * ``"loudness"`` as LibriMix: each speech source is normalised to a loudness drawn
    uniformly from ``speech_lufs`` (LUFS, pyloudnorm's ITU-R BS.1770 meter), the noise
    from ``noise_lufs``; a mixture that would clip is scaled down as a whole.
  * ``"snr"`` as LRS2-2Mix: source k > 1 is set ``snr_db`` (uniform) relative to source 1;
    noise, if any, sits ``noise_snr_db`` below the speech sum.

Augmentation (all off by default, see :mod:`tdanet.data.augment`): windows with one voice
only, the other targets silent (``lone``), windows filled with more speech of the same
speaker instead of silence (``fill``, a share of the windows), windows where the voices take
turns as in a conversation (``turns``), random EQ per source, one random room per mixture
whose reverberant sources are the targets, noise in a fraction of mixtures.

Every draw is a function of a numpy ``Generator``, so ``default_rng([seed, stream, epoch,
index])`` makes item ``index`` of an epoch the same on any machine, process or resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import read_mono, resample
from ..errors import DataError
from .augment import random_eq, reverberate, room_impulse_responses, turn_masks
from .sources import Utterance, group_by_speaker

GainMode = Literal["loudness", "snr"]
LengthMode = Literal["min", "max"]
Weighting = Literal["uniform", "sqrt_duration", "duration"]
# Excerpts quieter than this RMS (about -80 dBFS) are drawn again, up to SILENCE_RETRIES times.
SILENCE_RMS = 1e-4
SILENCE_RETRIES = 8


@dataclass(frozen=True)
class MixingConfig:
    """How mixtures are drawn.

    Attributes:
        num_sources: speakers per mixture (2 or more), all different.
        sample_rate: output rate in Hz; recordings at other rates are resampled.
        segment: seconds per mixture, or None for whole utterances (``mode`` decides
            the length: "min" crops to the shortest source, "max" pads to the longest).
        gain: "loudness" (LibriMix) or "snr" (LRS2-2Mix); see the module docstring.
        speech_lufs, noise_lufs: loudness ranges for the "loudness" scheme.
        snr_db: range of source k's level relative to source 1 for the "snr" scheme.
        noise_snr_db: range of the speech-to-noise ratio for the "snr" scheme.
        speed_perturb: (low, high) speed factors drawn per source, or None.
        speaker_weighting: how speakers are drawn: uniformly, or in proportion to (the
            square root of) their recorded duration, so that voices with few short
            recordings do not dominate.
        max_amplitude: peak above which a mixture (and its sources) is scaled down.
        lone: the chance that a mixture holds the first voice only, every other source
            silent (all zeros), so that a model learns to leave outputs silent when fewer
            voices speak (train with :func:`tdanet.losses.pit_separation_loss`).
        fill: with a fixed ``segment``, the chance that a source shorter than the window is
            followed by more utterances of the same speaker instead of silence (1: both voices
            always fill the window; below 1 some windows keep one voice alone for a while,
            which a model needs to see to leave an output silent).
        turns: with a fixed ``segment``, the chance that the voices of a window take turns
            as in a conversation (:func:`tdanet.data.augment.turn_masks`: turns of 0.5-3 s,
            some overlapped, some after a pause; the sources fill the window first), so that
            a model learns to keep each voice in one output across pauses.
        eq_prob, eq_db: chance that a source gets a random EQ, and its gain range (+-dB).
        reverb_prob: chance that a mixture is placed in a room; its sources are then
            reverberant, targets included.
        rt60: range of the rooms' reverberation time in seconds.
        room_seed, room_count: the bank rooms are drawn from (see ``augment``).
        noise_prob: chance that a mixture gets noise, when noise files are given.
    """

    num_sources: int = 2
    sample_rate: int = 16000
    segment: float | None = 3.0
    mode: LengthMode = "min"
    gain: GainMode = "loudness"
    speech_lufs: tuple[float, float] = (-33.0, -25.0)
    noise_lufs: tuple[float, float] = (-38.0, -30.0)
    snr_db: tuple[float, float] = (-5.0, 5.0)
    noise_snr_db: tuple[float, float] = (0.0, 10.0)
    speed_perturb: tuple[float, float] | None = None
    speaker_weighting: Weighting = "sqrt_duration"
    max_amplitude: float = 0.9
    lone: float = 0.0
    fill: float = 0.0
    turns: float = 0.0
    eq_prob: float = 0.0
    eq_db: float = 6.0
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.6)
    room_seed: int = 0
    room_count: int = 256
    noise_prob: float = 1.0

    def __post_init__(self) -> None:
        if self.num_sources < 2:
            raise DataError(f"mixing: num_sources must be at least 2, got {self.num_sources}")
        if self.segment is not None and self.segment <= 0:
            raise DataError(f"mixing: segment must be positive seconds, got {self.segment}")
        for name in ("lone", "fill", "turns", "eq_prob", "reverb_prob", "noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"mixing: {name} must be within [0, 1], got {getattr(self, name)}")
        if self.turns > 0 and self.segment is None:
            raise DataError("mixing: turns needs a fixed segment; set segment or turns: 0")
        if self.rt60[0] <= 0 or self.room_count < 1:
            raise DataError("mixing: rt60 must be positive seconds and room_count at least 1")
        for name in (
            "speech_lufs",
            "noise_lufs",
            "snr_db",
            "noise_snr_db",
            "speed_perturb",
            "rt60",
        ):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or value[0] > value[1]):
                raise DataError(f"mixing: {name} must be a [low, high] range, got {value!r}")
        if self.speed_perturb is not None and self.speed_perturb[0] <= 0:
            raise DataError(f"mixing: speed factors must be positive, got {self.speed_perturb}")

    @property
    def segment_samples(self) -> int | None:
        return None if self.segment is None else round(self.segment * self.sample_rate)


@lru_cache(maxsize=8)
def loudness_meter(sample_rate: int) -> Any:
    """A pyloudnorm meter (its filters are designed once per rate)."""
    import pyloudnorm

    return pyloudnorm.Meter(sample_rate)


def measure_loudness(signal: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (T,); -inf for silence.

    Signals shorter than the meter's 400 ms block, or fully gated, fall back to the
    mean-square level (-0.691 + 10 log10 mean(x^2)), BS.1770's formula without K-weighting.
    """
    power = float(np.mean(np.square(signal, dtype=np.float64))) if signal.size else 0.0
    if power <= 0.0:
        return -math.inf
    if signal.size >= int(0.4 * sample_rate) + 1:
        value = float(loudness_meter(sample_rate).integrated_loudness(signal.astype(np.float64)))
        if math.isfinite(value):
            return value
    return -0.691 + 10 * math.log10(power)


def gain_to_loudness(signal: np.ndarray, sample_rate: int, target_lufs: float) -> float:
    """Linear gain that brings ``signal`` to ``target_lufs`` (1 for silence)."""
    current = measure_loudness(signal, sample_rate)
    return 1.0 if not math.isfinite(current) else float(10 ** ((target_lufs - current) / 20))


def energy(signal: np.ndarray) -> float:
    return float(np.sum(np.square(signal, dtype=np.float64)))


def gain_for_snr(signal: np.ndarray, reference: np.ndarray, snr_db: float) -> float:
    """Linear gain that puts ``signal`` ``snr_db`` dB below ``reference`` (1 for silence)."""
    sig, ref = energy(signal), energy(reference)
    if sig <= 0 or ref <= 0:
        return 1.0
    return float(math.sqrt(ref / sig * 10 ** (-snr_db / 10)))


def random_window(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``length`` samples, or the whole signal zero-padded at a random offset."""
    if signal.shape[0] >= length:
        start = int(rng.integers(0, signal.shape[0] - length + 1))
        return signal[start : start + length]
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - signal.shape[0] + 1))
    out[start : start + signal.shape[0]] = signal
    return out


def loop_to_length(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise of exactly ``length`` samples: a random window, repeating short recordings."""
    if signal.size == 0:
        return np.zeros(length, dtype=np.float32)
    repeats = -(-length // signal.shape[0]) + 1
    tiled = np.tile(signal, repeats)
    start = int(rng.integers(0, signal.shape[0]))
    return tiled[start : start + length]


def load_excerpt(
    utt: Utterance, config: MixingConfig, rng: np.random.Generator, speed: float = 1.0
) -> tuple[np.ndarray, int]:
    """Read an utterance (a random excerpt a bit longer than the segment, or all of it),
    resampled to the output rate and sped up by ``speed``: ((T,), first frame read)."""
    length = config.segment_samples
    start, stop = 0, None
    if length is not None:
        needed = math.ceil(length * utt.sample_rate / config.sample_rate * speed) + 64
        if utt.frames > needed:
            start = int(rng.integers(0, utt.frames - needed + 1))
            stop = start + needed
    signal, rate = read_mono(utt.path, start, stop)
    return resample(signal, rate, config.sample_rate / speed), start


def speaker_weights(groups: dict[str, list[Utterance]], weighting: Weighting) -> np.ndarray:
    """Probability of drawing each speaker (in ``groups`` order)."""
    durations = np.array([sum(u.duration for u in utts) for utts in groups.values()])
    if weighting == "uniform":
        weights = np.ones_like(durations)
    elif weighting == "sqrt_duration":
        weights = np.sqrt(durations)
    else:
        weights = durations
    return np.asarray(weights / weights.sum())


@dataclass
class Mixture:
    """One drawn mixture: mixture (T,), sources (C, T), noise (T,) or None, and how it was made."""

    mixture: np.ndarray
    sources: np.ndarray
    noise: np.ndarray | None
    info: dict[str, Any]


class MixtureDrawer:
    """Draws mixtures of different speakers from a pool of utterances (and optional noise)."""

    def __init__(
        self,
        utterances: list[Utterance],
        config: MixingConfig,
        noises: list[Utterance] | None = None,
    ) -> None:
        self.config = config
        self.groups = group_by_speaker(utterances)
        if len(self.groups) < config.num_sources:
            raise DataError(
                f"{len(self.groups)} speaker(s) cannot make {config.num_sources}-speaker "
                "mixtures of different speakers; add speakers"
            )
        self.speakers = list(self.groups)
        self.weights = speaker_weights(self.groups, config.speaker_weighting)
        self.noises = list(noises or [])

    def draw(self, rng: np.random.Generator) -> Mixture:
        """One mixture; all randomness comes from ``rng``."""
        config = self.config
        chosen = rng.choice(len(self.speakers), config.num_sources, replace=False, p=self.weights)
        room = None
        if chance(config.reverb_prob, rng):
            room = int(rng.integers(config.room_count))
        voices = 1 if chance(config.lone, rng) else config.num_sources
        talks = voices > 1 and chance(config.turns, rng)
        signals, info_sources = [], []
        for index in chosen[:voices]:
            speaker = self.speakers[int(index)]
            utts = self.groups[speaker]
            utt = utts[int(rng.integers(len(utts)))]
            speed = 1.0
            if config.speed_perturb is not None:
                speed = float(rng.uniform(*config.speed_perturb))
            # A window of silence would make the source's SI-SNR meaningless: look again.
            for _ in range(SILENCE_RETRIES):
                signal, start = load_excerpt(utt, config, rng, speed)
                if config.segment_samples is not None:
                    if talks or chance(config.fill, rng):
                        signal = self.filled(signal, utts, config.segment_samples, rng, speed)
                    signal = random_window(signal, config.segment_samples, rng)
                if float(np.sqrt(np.mean(np.square(signal)))) > SILENCE_RMS:
                    break
            if chance(config.eq_prob, rng):
                signal = random_eq(signal, config.sample_rate, config.eq_db, rng)
            signals.append(signal)
            info_sources.append(
                {"speaker": speaker, "path": str(utt.path), "start": start, "speed": speed}
            )
        if talks:
            masks = turn_masks(voices, signals[0].shape[0], config.sample_rate, rng)
            signals = [signal * mask for signal, mask in zip(signals, masks, strict=True)]
        for _ in range(voices, config.num_sources):
            signals.append(np.zeros_like(signals[0]))
            info_sources.append({"speaker": "", "path": "", "start": 0, "speed": 1.0})
        if room is not None:
            responses = room_impulse_responses(
                config.room_seed, room, config.num_sources, config.sample_rate, config.rt60
            )
            signals = [reverberate(s, r) for s, r in zip(signals, responses, strict=True)]
        length = config.segment_samples
        if length is None and config.mode == "min":
            length = min(s.shape[0] for s in signals)
            signals = [s[:length] for s in signals]
        elif length is None:
            length = max(s.shape[0] for s in signals)
            signals = [np.pad(s, (0, length - s.shape[0])) for s in signals]
        sources = np.stack(signals).astype(np.float32)
        noise = None
        if self.noises and chance(config.noise_prob, rng):
            noise_utt = self.noises[int(rng.integers(len(self.noises)))]
            noise_signal, _ = read_mono(noise_utt.path)
            noise = loop_to_length(
                resample(noise_signal, noise_utt.sample_rate, config.sample_rate), length, rng
            )
        gains = self.source_gains(sources, noise, rng)
        sources = sources * gains[: config.num_sources, None]
        if noise is not None:
            noise = (noise * gains[-1]).astype(np.float32)
        mixture = sources.sum(0) + (noise if noise is not None else 0.0)
        peak = float(np.abs(mixture).max()) if mixture.size else 0.0
        if peak > config.max_amplitude:
            scale = config.max_amplitude / peak
            mixture, sources = mixture * scale, sources * scale
            noise = None if noise is None else noise * scale
            gains = gains * scale
        for item, gain in zip(info_sources, gains, strict=False):
            item["gain"] = float(gain)
        info: dict[str, Any] = {"sources": info_sources, "length": int(length), "turns": talks}
        if room is not None:
            info["room"] = {"seed": config.room_seed, "index": room}
        if noise is not None:
            info["noise"] = {"path": str(noise_utt.path), "gain": float(gains[-1])}
        return Mixture(mixture.astype(np.float32), sources.astype(np.float32), noise, info)

    def filled(
        self,
        signal: np.ndarray,
        utts: list[Utterance],
        length: int,
        rng: np.random.Generator,
        speed: float,
    ) -> np.ndarray:
        """``signal`` followed by further utterances of the same speaker until ``length``."""
        parts, total = [signal], signal.shape[0]
        for _ in range(SILENCE_RETRIES * 4):
            if total >= length:
                break
            extra, _ = load_excerpt(utts[int(rng.integers(len(utts)))], self.config, rng, speed)
            parts.append(extra)
            total += extra.shape[0]
        return np.concatenate(parts)

    def source_gains(
        self, sources: np.ndarray, noise: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Gains for each source (C,) then the noise, if any: (C,) or (C + 1,)."""
        config, rate = self.config, self.config.sample_rate
        if config.gain == "loudness":
            gains = [gain_to_loudness(s, rate, rng.uniform(*config.speech_lufs)) for s in sources]
            if noise is not None:
                gains.append(gain_to_loudness(noise, rate, rng.uniform(*config.noise_lufs)))
            return np.array(gains)
        gains = [1.0] + [
            gain_for_snr(s, sources[0], rng.uniform(*config.snr_db)) for s in sources[1:]
        ]
        if noise is not None:
            speech = (sources * np.array(gains)[:, None]).sum(0)
            gains.append(gain_for_snr(noise, speech, rng.uniform(*config.noise_snr_db)))
        return np.array(gains)


def chance(probability: float, rng: np.random.Generator) -> bool:
    """True with ``probability``; 0 and 1 draw nothing, so that recipes which leave an
    augmentation off (or always on) draw the same mixtures as before it existed."""
    if probability <= 0.0 or probability >= 1.0:
        return probability >= 1.0
    return bool(rng.random() < probability)


def item_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """(epoch, index) from a sampler key; a bare index means epoch 0."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return 0, int(key)


class DynamicMixDataset(Dataset[tuple[torch.Tensor, torch.Tensor, str]]):
    """``length`` mixtures per epoch, drawn on the fly; item (epoch, i) is always the same draw.

    With ``fixed=True`` the epoch is ignored (a constant validation or test set). Items are
    (mixture (T,), sources (C, T), name).
    """

    def __init__(
        self, drawer: MixtureDrawer, length: int, seed: int, stream: int, fixed: bool = False
    ) -> None:
        if length < 1:
            raise DataError(f"dynamic mixing: items per epoch must be positive, got {length}")
        self.drawer, self.length, self.seed, self.stream, self.fixed = (
            drawer,
            length,
            seed,
            stream,
            fixed,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str]:
        epoch, index = item_key(key)
        epoch = 0 if self.fixed else epoch
        rng = np.random.default_rng([self.seed, self.stream, epoch, index])
        drawn = self.drawer.draw(rng)
        return torch.from_numpy(drawn.mixture), torch.from_numpy(drawn.sources), f"{epoch}-{index}"

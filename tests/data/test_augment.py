from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import sosfreqz

from tdanet.data.augment import (
    PRE_DELAY,
    biquad,
    random_eq,
    reverberate,
    room_impulse_responses,
    turn_masks,
)
from tdanet.data.mixing import MixingConfig, MixtureDrawer
from tdanet.data.sources import index_noise, index_sources
from tdanet.errors import DataError

from ..synthetic_speech import write_speaker_corpus

RATE = 8000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speaker_corpus(tmp_path_factory.mktemp("aug") / "speakers", speakers=4)


def gain_at(section: np.ndarray, freq: float, rate: int) -> float:
    _, response = sosfreqz(section[None], worN=[freq], fs=rate)
    return float(20 * np.log10(abs(response[0])))


def test_biquads_have_the_requested_gains() -> None:
    rate = 16000
    assert gain_at(biquad("peak", 1000.0, 6.0, 1.0, rate), 1000.0, rate) == pytest.approx(
        6.0, abs=0.01
    )
    assert gain_at(biquad("low", 200.0, -6.0, 0.7071, rate), 20.0, rate) == pytest.approx(
        -6.0, abs=0.2
    )
    assert gain_at(biquad("high", 4000.0, 5.0, 0.7071, rate), 7900.0, rate) == pytest.approx(
        5.0, abs=0.3
    )
    assert gain_at(biquad("high", 4000.0, 5.0, 0.7071, rate), 50.0, rate) == pytest.approx(
        0.0, abs=0.1
    )


def test_random_eq_is_seeded_and_bounded() -> None:
    noise = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    a = random_eq(noise, RATE, 6.0, np.random.default_rng(5))
    b = random_eq(noise, RATE, 6.0, np.random.default_rng(5))
    c = random_eq(noise, RATE, 6.0, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    # Three sections of at most +-6 dB each: the level moves by less than 18 dB.
    change = 10 * np.log10(
        np.mean(a.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)
    )
    assert abs(change) < 18


def test_rooms_are_seeded_and_have_their_rt60() -> None:
    a = room_impulse_responses(3, 0, 2, RATE, (0.3, 0.3))
    b = room_impulse_responses(3, 0, 2, RATE, (0.3, 0.3))
    other = room_impulse_responses(4, 0, 2, RATE, (0.3, 0.3))
    assert a is b and a.shape[0] == 2 and not a.flags.writeable
    assert a.shape != other.shape or not np.allclose(a, other)
    # The earliest direct path sits at PRE_DELAY.
    assert min(int(np.argmax(np.abs(r))) for r in a) == PRE_DELAY
    # Energy decay (Schroeder integral): -5 to -25 dB spans about a third of the RT60.
    decay = np.cumsum((a[0].astype(np.float64) ** 2)[::-1])[::-1]
    db = 10 * np.log10(decay / decay[0])
    t5, t25 = np.argmax(db < -5), np.argmax(db < -25)
    rt60 = 3 * (t25 - t5) / RATE
    assert 0.15 < rt60 < 0.6


def test_reverberate_keeps_length_and_direct_path_alignment() -> None:
    impulse = np.zeros(RATE, dtype=np.float32)
    impulse[100] = 1.0
    response = np.zeros(400, dtype=np.float32)
    response[PRE_DELAY] = 0.5
    response[PRE_DELAY + 50] = 0.25
    wet = reverberate(impulse, response)
    assert wet.shape == impulse.shape
    assert wet[100] == pytest.approx(0.5) and wet[150] == pytest.approx(0.25)


def test_augmented_draws_are_deterministic_and_reverberant(corpus: Path, tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "hum.wav", 0.1 * np.sin(np.arange(RATE) / 7).astype(np.float32), RATE)
    config = MixingConfig(
        sample_rate=RATE,
        segment=1.0,
        fill=1.0,
        eq_prob=1.0,
        reverb_prob=1.0,
        rt60=(0.3, 0.5),
        room_count=2,
        noise_prob=0.5,
        max_amplitude=10.0,
    )
    drawer = MixtureDrawer(index_sources(corpus), config, index_noise(tmp_path))
    draws = [drawer.draw(np.random.default_rng(seed)) for seed in range(6)]
    again = drawer.draw(np.random.default_rng(0))
    assert np.array_equal(draws[0].mixture, again.mixture)
    assert all("room" in d.info for d in draws)
    with_noise = sum(d.noise is not None for d in draws)
    assert 0 < with_noise < 6
    for drawn in draws:
        residual = drawn.noise if drawn.noise is not None else 0.0
        np.testing.assert_allclose(drawn.sources.sum(0) + residual, drawn.mixture, atol=1e-5)


def test_fill_leaves_no_silent_padding(corpus: Path) -> None:
    # The synthetic utterances are shorter than 3 s: without fill the window is zero-padded.
    plain = MixtureDrawer(index_sources(corpus), MixingConfig(sample_rate=RATE, segment=3.0))
    filled = MixtureDrawer(
        index_sources(corpus), MixingConfig(sample_rate=RATE, segment=3.0, fill=1.0)
    )

    def silent_fraction(sources: np.ndarray) -> float:
        frames = sources[:, : sources.shape[1] // 80 * 80].reshape(sources.shape[0], -1, 80)
        return float(np.mean(np.abs(frames).max(-1) == 0))

    rng = np.random.default_rng
    assert max(silent_fraction(plain.draw(rng(s)).sources) for s in range(4)) > 0.1
    assert max(silent_fraction(filled.draw(rng(s)).sources) for s in range(4)) == 0.0
    # A share of the windows: some keep a voice alone for a while, some are filled.
    half = MixtureDrawer(
        index_sources(corpus), MixingConfig(sample_rate=RATE, segment=3.0, fill=0.5)
    )
    padded = [silent_fraction(half.draw(rng(s)).sources[:1]) > 0.1 for s in range(16)]
    assert 0 < sum(padded) < 16


def test_lone_windows_hold_one_voice_and_silent_targets(corpus: Path) -> None:
    config = MixingConfig(sample_rate=RATE, segment=1.0, lone=0.5, reverb_prob=1.0, room_count=2)
    drawer = MixtureDrawer(index_sources(corpus), config)
    draws = [drawer.draw(np.random.default_rng(seed)) for seed in range(12)]
    lone = [d for d in draws if not np.any(d.sources[1])]
    assert 0 < len(lone) < 12
    for drawn in lone:
        assert np.any(drawn.sources[0]) and drawn.info["sources"][1]["speaker"] == ""
        np.testing.assert_allclose(drawn.mixture, drawn.sources[0], atol=1e-6)
    # Off, nothing is drawn for it: the same seed gives the mixture it gave before.
    plain = MixtureDrawer(index_sources(corpus), MixingConfig(sample_rate=RATE, segment=1.0))
    assert all(np.any(plain.draw(np.random.default_rng(s)).sources[1]) for s in range(12))


def test_augmentation_settings_are_checked() -> None:
    with pytest.raises(DataError, match="reverb_prob"):
        MixingConfig(reverb_prob=1.5)
    with pytest.raises(DataError, match="fill"):
        MixingConfig(fill=2.0)
    with pytest.raises(DataError, match="lone"):
        MixingConfig(lone=-0.1)
    with pytest.raises(DataError, match="rt60"):
        MixingConfig(rt60=(0.6, 0.2))


def test_turn_masks_alternate_voices_with_overlaps_and_pauses() -> None:
    masks = [turn_masks(2, 8 * RATE, RATE, np.random.default_rng(seed)) for seed in range(6)]
    again = turn_masks(2, 8 * RATE, RATE, np.random.default_rng(0))
    assert np.array_equal(masks[0], again)
    for mask in masks:
        assert mask.shape == (2, 8 * RATE) and mask.min() >= 0.0 and mask.max() <= 1.0
        assert (mask.max(axis=1) == 1.0).all()  # both voices get a turn in 8 s
        # Each voice talks in several turns: it starts again after silences.
        starts = np.diff((mask > 0.5).astype(int), axis=1).clip(0).sum(axis=1)
        assert (starts >= 1).all() and starts.sum() >= 3
    full = np.stack(masks) > 0.5
    assert (full.all(axis=1)).any()  # some samples hold both voices
    assert (~full.any(axis=1)).any()  # and some hold a pause


def test_turn_windows_silence_each_voice_outside_its_turns(corpus: Path) -> None:
    config = MixingConfig(sample_rate=RATE, segment=6.0, turns=0.5, max_amplitude=10.0)
    drawer = MixtureDrawer(index_sources(corpus), config)
    draws = [drawer.draw(np.random.default_rng(seed)) for seed in range(10)]
    talking = [d for d in draws if d.info["turns"]]
    assert 0 < len(talking) < 10
    for drawn in talking:
        np.testing.assert_allclose(drawn.sources.sum(0), drawn.mixture, atol=1e-5)
        quiet = np.abs(drawn.sources[:, : 6 * RATE].reshape(2, -1, RATE // 10)).max(-1) == 0.0
        # Each voice is silent for a while (not its turn) and talks somewhere.
        assert quiet.any(axis=1).all() and (~quiet).any(axis=1).all()
    with pytest.raises(DataError, match="turns needs a fixed segment"):
        MixingConfig(segment=None, turns=0.5)
    with pytest.raises(DataError, match="turns"):
        MixingConfig(turns=1.5)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import torch

from tdanet.data.mixing import DynamicMixDataset, MixingConfig, MixtureDrawer, measure_loudness
from tdanet.data.sampling import EpochSampler
from tdanet.data.sources import index_noise, index_sources
from tdanet.errors import DataError

from ..synthetic_speech import write_speaker_corpus

RATE = 8000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speaker_corpus(tmp_path_factory.mktemp("mix") / "speakers", speakers=4)


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("noise")
    hiss = 0.05 * np.random.default_rng(0).standard_normal(int(0.7 * RATE))
    sf.write(folder / "hiss.wav", hiss.astype(np.float32), RATE)
    return folder


def lufs(signal: np.ndarray) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(signal.astype(np.float64)))


def test_loudness_mixing_follows_librimix_ranges(corpus: Path, noise_dir: Path) -> None:
    config = MixingConfig(sample_rate=RATE, segment=1.0, max_amplitude=10.0)
    drawer = MixtureDrawer(index_sources(corpus), config, index_noise(noise_dir))
    for seed in range(4):
        drawn = drawer.draw(np.random.default_rng(seed))
        assert drawn.sources.shape == (2, RATE) and drawn.noise is not None
        speakers = [s["speaker"] for s in drawn.info["sources"]]
        assert len(set(speakers)) == 2
        for source in drawn.sources:
            assert -33.05 <= lufs(source) <= -24.95
        assert -38.05 <= lufs(drawn.noise) <= -29.95
        np.testing.assert_allclose(drawn.sources.sum(0) + drawn.noise, drawn.mixture, atol=1e-6)


def test_snr_mixing_and_clipping_guard(corpus: Path) -> None:
    config = MixingConfig(sample_rate=RATE, segment=1.0, gain="snr", num_sources=3)
    drawer = MixtureDrawer(index_sources(corpus), config)
    for seed in range(4):
        drawn = drawer.draw(np.random.default_rng(seed))
        energy = (drawn.sources.astype(np.float64) ** 2).sum(-1)
        ratios = 10 * np.log10(energy[0] / energy[1:])
        assert np.all((ratios >= -5.01) & (ratios <= 5.01))
        assert len({s["speaker"] for s in drawn.info["sources"]}) == 3
        assert np.abs(drawn.mixture).max() <= 0.9 + 1e-6


def test_items_are_reproducible_per_epoch_and_index(corpus: Path) -> None:
    config = MixingConfig(sample_rate=RATE, segment=0.5, speed_perturb=(0.9, 1.1))
    drawer = MixtureDrawer(index_sources(corpus), config)
    train = DynamicMixDataset(drawer, 8, seed=5, stream=0)
    first = train[(0, 3)]
    assert first[0].shape == (4000,) and first[1].shape == (2, 4000)
    assert torch.equal(first[0], train[(0, 3)][0])
    assert not torch.equal(first[0], train[(1, 3)][0])
    fixed = DynamicMixDataset(drawer, 8, seed=5, stream=1, fixed=True)
    assert torch.equal(fixed[(0, 2)][0], fixed[(7, 2)][0])


def test_whole_utterance_length_modes(corpus: Path) -> None:
    utterances = index_sources(corpus)
    rng_seed = 11
    short = MixtureDrawer(utterances, MixingConfig(sample_rate=RATE, segment=None, mode="min"))
    long = MixtureDrawer(utterances, MixingConfig(sample_rate=RATE, segment=None, mode="max"))
    a = short.draw(np.random.default_rng(rng_seed))
    b = long.draw(np.random.default_rng(rng_seed))
    lengths = [
        round(u.frames) for u in utterances if str(u.path) in {s["path"] for s in a.info["sources"]}
    ]
    assert a.sources.shape[1] == min(lengths) and b.sources.shape[1] == max(lengths)


def test_speed_perturbation_changes_the_signal(corpus: Path) -> None:
    utterances = index_sources(corpus)
    plain = MixtureDrawer(utterances, MixingConfig(sample_rate=RATE, segment=None, gain="snr"))
    fast = MixtureDrawer(
        utterances,
        MixingConfig(sample_rate=RATE, segment=None, gain="snr", speed_perturb=(1.2, 1.2)),
    )
    a, b = plain.draw(np.random.default_rng(0)), fast.draw(np.random.default_rng(0))
    assert b.info["sources"][0]["speed"] == pytest.approx(1.2)
    assert abs(b.sources.shape[1] * 1.2 - a.sources.shape[1]) <= 2


def test_too_few_speakers_and_bad_config(corpus: Path) -> None:
    with pytest.raises(DataError, match="4 speaker\\(s\\) cannot make 5-speaker mixtures"):
        MixtureDrawer(index_sources(corpus), MixingConfig(num_sources=5))
    with pytest.raises(DataError, match="speech_lufs must be a \\[low, high\\] range"):
        MixingConfig(speech_lufs=(-20.0, -30.0))


def test_loudness_of_short_and_silent_signals() -> None:
    assert measure_loudness(np.zeros(100, dtype=np.float32), RATE) == float("-inf")
    tone = 0.1 * np.sin(np.arange(800) / 5).astype(np.float32)
    assert np.isfinite(measure_loudness(tone, RATE))


def test_epoch_sampler_shards_and_shuffles() -> None:
    ranks = [list(EpochSampler(10, seed=0, shuffle=True, rank=r, world_size=3)) for r in range(3)]
    assert all(len(r) == 3 for r in ranks)
    indices = [i for r in ranks for _, i in r]
    assert len(set(indices)) == 9
    sampler = EpochSampler(10, seed=0, shuffle=True)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert {e for e, _ in epoch1} == {1} and [i for _, i in epoch0] != [i for _, i in epoch1]
    with pytest.raises(DataError, match="cannot be shared among 4 processes"):
        EpochSampler(3, seed=0, shuffle=False, world_size=4)


def test_silent_windows_are_drawn_again(tmp_path: Path) -> None:
    import soundfile as sf

    from ..synthetic_speech import voice

    for speaker in range(2):
        # Mostly silence: a 0.25 s window lands in it more often than not.
        signal = np.concatenate([np.zeros(int(1.5 * RATE)), voice(speaker, 0.5, RATE, 0)])
        path = tmp_path / f"s{speaker}" / "a.wav"
        path.parent.mkdir()
        sf.write(path, signal.astype(np.float32), RATE)
    config = MixingConfig(sample_rate=RATE, segment=0.25, gain="snr")
    drawer = MixtureDrawer(index_sources(tmp_path), config)
    silent = 0
    for seed in range(20):
        rms = np.sqrt(np.mean(drawer.draw(np.random.default_rng(seed)).sources ** 2, axis=-1))
        silent += int((rms < 1e-4).sum())
    assert silent <= 8  # of 40 sources; about 29 would be silent without the retries

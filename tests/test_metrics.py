from __future__ import annotations

import math

import mir_eval
import mir_eval.separation
import numpy as np
import pytest

from tdanet.metrics import best_order, sdr, si_snr, utterance_metrics

from .synthetic_speech import voice


def direct_si_snr(est: np.ndarray, ref: np.ndarray) -> float:
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two voices at 8 kHz, their mixture, and imperfect estimates in swapped order."""
    rng = np.random.default_rng(0)
    refs = np.stack([voice(0, 0.6, 8000, 0), voice(3, 0.6, 8000, 1)]).astype(np.float64)
    mix = refs.sum(0)
    ests = refs + 0.2 * refs[::-1] + 0.01 * rng.standard_normal(refs.shape)
    return mix, ests[::-1].copy(), refs


def test_si_snr_matches_the_formula(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, ests, refs = pair
    assert si_snr(ests[1], refs[0]) == pytest.approx(direct_si_snr(ests[1], refs[0]), abs=1e-6)


def test_best_order_undoes_the_swap(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, ests, refs = pair
    assert best_order(ests, refs) == (1, 0)


@pytest.fixture(scope="module")
def mir_eval_sdr(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """mir_eval's SDR of the estimates (in its own best order) and of the mixture."""
    mix, ests, refs = pair
    est_sdr, _, _, perm = mir_eval.separation.bss_eval_sources(refs, ests)
    assert list(perm) == [1, 0]
    mix_sdr, _, _, _ = mir_eval.separation.bss_eval_sources(
        refs, np.stack([mix, mix]), compute_permutation=False
    )
    return est_sdr, mix_sdr


def test_sdr_agrees_with_mir_eval(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray], mir_eval_sdr: tuple[np.ndarray, np.ndarray]
) -> None:
    mix, ests, refs = pair
    np.testing.assert_allclose(sdr(ests[::-1], refs), mir_eval_sdr[0], atol=0.05)
    np.testing.assert_allclose(sdr(np.stack([mix, mix]), refs), mir_eval_sdr[1], atol=0.05)


def test_utterance_metrics_improvements(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray], mir_eval_sdr: tuple[np.ndarray, np.ndarray]
) -> None:
    mix, ests, refs = pair
    scores = utterance_metrics(mix, ests, refs, 8000, with_stoi=True)
    aligned = ests[::-1]
    expected_si = np.mean([direct_si_snr(aligned[j], refs[j]) for j in range(2)])
    mixture_si = np.mean([direct_si_snr(mix, refs[j]) for j in range(2)])
    assert scores["si_snr"] == pytest.approx(expected_si, abs=1e-6)
    assert scores["si_snr_i"] == pytest.approx(expected_si - mixture_si, abs=1e-6)
    expected_sdr_i = float(np.mean(mir_eval_sdr[0] - mir_eval_sdr[1]))
    assert scores["sdr_i"] == pytest.approx(expected_sdr_i, abs=0.05)
    assert scores["si_snr_i"] > 5
    clean = utterance_metrics(mix, refs, refs, 8000, with_stoi=True)
    assert clean["stoi"] > scores["stoi"] and clean["stoi"] > 0.99


def test_pesq_is_higher_for_a_cleaner_estimate() -> None:
    rate = 16000
    refs = np.stack([voice(0, 1.0, rate, 0), voice(2, 1.0, rate, 1)]).astype(np.float64)
    mix = refs.sum(0)
    noisy = utterance_metrics(mix, refs + 0.5 * refs[::-1], refs, rate, with_pesq=True)
    clean = utterance_metrics(mix, refs + 0.05 * refs[::-1], refs, rate, with_pesq=True)
    assert math.isfinite(noisy["pesq"]) and clean["pesq"] > noisy["pesq"]

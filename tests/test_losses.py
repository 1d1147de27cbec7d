from __future__ import annotations

import itertools
import math

import pytest
import torch

from tdanet.losses import (
    PAUSE_FRAME,
    SILENT_FLOOR_DB,
    pairwise_si_snr,
    pause_quietness,
    pit_best_permutation,
    pit_separation_loss,
    pit_si_snr,
    quietness,
    reorder_sources,
    si_snr,
)


def direct_si_snr(est: torch.Tensor, ref: torch.Tensor) -> float:
    """The textbook formula on one pair of 1-D signals, in float64."""
    est = est.double() - est.double().mean()
    ref = ref.double() - ref.double().mean()
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * torch.log10((target @ target) / ((est - target) @ (est - target))))


def test_si_snr_matches_formula_and_ignores_scale() -> None:
    ref, noise = torch.randn(4000), torch.randn(4000)
    est = ref + 0.3 * noise
    assert si_snr(est, ref).item() == pytest.approx(direct_si_snr(est, ref), abs=1e-3)
    assert si_snr(5 * est + 0.2, ref).item() == pytest.approx(si_snr(est, ref).item(), abs=1e-3)


@pytest.mark.parametrize("sources", [2, 3])
def test_pit_finds_the_permutation_brute_force_finds(sources: int) -> None:
    targets = torch.randn(3, sources, 2000)
    estimates = targets + 0.5 * torch.randn(3, sources, 2000)
    shuffle = torch.stack([torch.randperm(sources) for _ in range(3)])
    shuffled = torch.gather(estimates, 1, shuffle.unsqueeze(-1).expand(-1, -1, 2000))
    score, perm = pit_si_snr(shuffled, targets)
    for b in range(3):
        brute = max(
            sum(direct_si_snr(shuffled[b, p[j]], targets[b, j]) for j in range(sources)) / sources
            for p in itertools.permutations(range(sources))
        )
        assert score[b].item() == pytest.approx(brute, abs=1e-3)
    assert torch.allclose(reorder_sources(shuffled, perm), estimates)


def test_pairwise_layout_is_estimate_by_target() -> None:
    a, b = torch.randn(1000), torch.randn(1000)
    pw = pairwise_si_snr(torch.stack([a, b])[None], torch.stack([b, a])[None])
    assert pw[0, 0, 1] > 50 and pw[0, 1, 0] > 50 and pw[0, 0, 0] < 10
    _, perm = pit_best_permutation(pw)
    assert perm.tolist() == [[1, 0]]


def test_loss_is_minus_mean_score_and_has_gradients() -> None:
    targets = torch.randn(2, 2, 800)
    estimates = (targets.flip(1) + 0.1 * torch.randn(2, 2, 800)).requires_grad_()
    loss = pit_separation_loss(estimates, targets, targets.sum(1))
    assert loss.item() == pytest.approx(-pit_si_snr(estimates, targets)[0].mean().item())
    assert loss.item() < -10
    loss.backward()
    assert estimates.grad is not None and torch.isfinite(estimates.grad).all()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ"):
        pit_si_snr(torch.randn(1, 2, 10), torch.randn(1, 3, 10))


def test_pit_works_in_training_after_inference_mode() -> None:
    targets = torch.randn(1, 2, 100)
    with torch.inference_mode():
        pit_si_snr(targets.clone(), targets.clone())
    estimates = torch.randn(1, 2, 100, requires_grad=True)
    pit_separation_loss(estimates, targets, targets.sum(1)).backward()
    assert estimates.grad is not None


def test_a_silent_target_scores_the_quiet_output_and_picks_the_assignment() -> None:
    voice = torch.randn(1, 1600)
    targets = torch.stack([voice, torch.zeros_like(voice)], dim=1)
    # Output 1 holds the voice, output 0 a hiss 20 dB down: PIT must pair them crosswise.
    hiss = torch.randn_like(voice)
    hiss *= 0.1 * voice.norm() / hiss.norm()
    estimates = torch.stack([hiss, voice + 0.01 * torch.randn_like(voice)], dim=1)
    estimates.requires_grad_()
    loss = pit_separation_loss(estimates, targets, voice)
    # Mean of the voice's SI-SNR (about 40 dB) and the hiss's quietness (20 dB below all
    # outputs together, floored).
    share = float(hiss.square().sum() / estimates.detach().square().sum())
    quiet = -10 * math.log10(share + 10 ** (-SILENT_FLOOR_DB / 10))
    expected = (si_snr(estimates[0, 1], voice[0]) + quiet) / 2
    assert loss.item() == pytest.approx(-expected.item(), abs=0.05)
    loss.backward()
    assert estimates.grad is not None and torch.isfinite(estimates.grad).all()
    # The leak is what a silent target penalises: more leakage, higher loss.
    louder = torch.stack([5 * hiss, estimates[0, 1].detach()[None]], dim=1)
    assert pit_separation_loss(louder, targets, voice) > loss


def test_quietness_is_the_level_below_all_outputs_and_saturates() -> None:
    voice = torch.randn(1, 1, 800)
    quiet = quietness(torch.cat([voice, torch.zeros_like(voice)], dim=1))[0]
    assert quiet.tolist() == pytest.approx([0.0, SILENT_FLOOR_DB], abs=0.02)
    # Scale-invariant: shrinking every output is not silence.
    pair = torch.cat([voice, 0.1 * voice], dim=1)
    torch.testing.assert_close(quietness(pair), quietness(0.01 * pair), atol=1e-3, rtol=0)


def test_pause_quietness_scores_the_output_of_a_voice_that_pauses() -> None:
    torch.manual_seed(0)
    frames = 8
    first, second = torch.randn(1, frames * PAUSE_FRAME), torch.randn(1, frames * PAUSE_FRAME)
    first[:, 4 * PAUSE_FRAME :] = 0.0  # the first voice pauses for the second half
    targets = torch.stack([first, second], dim=1)
    mixture = targets.sum(1)
    leak = 0.1 * second  # output 0 carries the second voice 20 dB down while the first pauses
    estimates = torch.stack([first + leak, second], dim=1)
    pauses = pause_quietness(estimates, targets, mixture)[0]
    # Estimate 0 over target 0's pauses (half the audible frames): its share of the outputs
    # there is 0.01 / 1.01, so about 20 dB, times the half.
    expected = -10 * math.log10(0.01 / 1.01 + 10 ** (-SILENT_FLOOR_DB / 10)) / 2
    assert pauses[0, 0].item() == pytest.approx(expected, abs=0.05)
    assert pauses[1, 0].item() == pytest.approx(0.0, abs=0.05)  # the loud output there
    assert pauses[:, 1].abs().max().item() == 0.0  # the second voice never pauses
    # The leak is penalised: the loss with the pause term rises with it, and PIT still pairs
    # the outputs with their voices.
    louder = torch.stack([first + 10 * leak, second], dim=1)
    weighted = pit_separation_loss(estimates, targets, mixture, pause_weight=0.5)
    assert pit_separation_loss(louder, targets, mixture, pause_weight=0.5) > weighted
    plain = pit_separation_loss(estimates, targets, mixture)
    assert weighted.item() == pytest.approx(plain.item() - 0.5 * expected / 2, abs=0.05)
    assert pause_quietness(estimates[..., :10], targets[..., :10], mixture[..., :10]).eq(0).all()

from __future__ import annotations

import itertools

import pytest
import torch

from tdanet.losses import (
    pairwise_si_snr,
    pit_best_permutation,
    pit_neg_si_snr,
    pit_si_snr,
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
    loss = pit_neg_si_snr(estimates, targets)
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
    pit_neg_si_snr(estimates, targets).backward()
    assert estimates.grad is not None

"""Training objective: negative SI-SNR under permutation-invariant training (PIT); an
output whose target is silent is scored by how quiet it is, and optionally an output whose
target pauses is also scored by how quiet it stays there.

Shapes: ``(batch, sources, time)`` for estimates and targets. Every pairing of estimate
and target is scored once (a ``(batch, C, C)`` matrix), then the best of the C!
assignments is found by summing matrix entries, so PIT costs one pass over the audio
whatever the number of permutations (2 for two sources, 6 for three).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

EPS = 1e-8


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SNR in dB over the last axis: (..., T), (..., T) -> (...).

    Both signals are made zero-mean; the target is scaled to its projection on the estimate's
    direction, and the residual is the noise.
    """
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = estimate - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio + eps)


def pairwise_si_snr(estimates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SI-SNR of every estimate against every target: (B, C, T) x (B, C, T) -> (B, C, C).

    Entry ``[b, i, j]`` scores estimate ``i`` against target ``j``.
    """
    return si_snr(estimates.unsqueeze(2), targets.unsqueeze(1))


@lru_cache(maxsize=8)
def permutations_list(num_sources: int) -> tuple[tuple[int, ...], ...]:
    """All C! orderings of C sources (cached as plain tuples, never as tensors: a tensor made
    under ``torch.inference_mode`` could not be reused in training)."""
    return tuple(itertools.permutations(range(num_sources)))


def permutations_tensor(num_sources: int) -> torch.Tensor:
    """All C! orderings of C sources as a (C!, C) long tensor; row p maps target j -> estimate."""
    return torch.tensor(permutations_list(num_sources), dtype=torch.long)


def pit_best_permutation(pairwise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best assignment from a (B, C, C) score matrix (higher is better).

    Returns the mean score of the best assignment per item (B,) and the assignment (B, C):
    ``perm[b, j]`` is the estimate that goes with target ``j``.
    """
    num_sources = pairwise.shape[-1]
    perms = permutations_tensor(num_sources).to(pairwise.device)
    targets = torch.arange(num_sources, device=pairwise.device)
    # scores[b, p] = mean_j pairwise[b, perms[p, j], j]
    scores = pairwise[:, perms, targets].mean(-1)
    best_score, best_index = scores.max(dim=-1)
    return best_score, perms[best_index]


def reorder_sources(estimates: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Estimates in target order: (B, C, T) with perm (B, C) -> (B, C, T)."""
    index = perm.unsqueeze(-1).expand(-1, -1, estimates.shape[-1])
    return torch.gather(estimates, 1, index)


def pit_si_snr(estimates: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item SI-SNR (dB, mean over sources) of the best assignment, and that assignment.

    (B, C, T) x (B, C, T) -> ((B,), (B, C)).
    """
    if estimates.shape != targets.shape:
        raise ValueError(
            f"estimates {tuple(estimates.shape)} and targets {tuple(targets.shape)} differ"
        )
    return pit_best_permutation(pairwise_si_snr(estimates, targets))


# A target this far (energy ratio) below the mixture is silent: no SI-SNR can score it.
SILENT_RATIO = 1e-6
# Leakage into a silent target's output stops paying off 25 dB below all outputs together.
SILENT_FLOOR_DB = 25.0


def level_below_db(share: torch.Tensor) -> torch.Tensor:
    """An energy ``share`` (0..1) as dB below the whole, saturating at ``SILENT_FLOOR_DB``."""
    return -10 * torch.log10(share + 10 ** (-SILENT_FLOOR_DB / 10))


def quietness(estimates: torch.Tensor) -> torch.Tensor:
    """How far each estimate lies below all estimates together, in dB, saturating at
    ``SILENT_FLOOR_DB``: (B, C, T) -> (B, C); the score of an output whose target is silent.

    Relative to the outputs, not the mixture, so that it is scale-invariant like SI-SNR
    (shrinking every output would otherwise look like silence) and reads like the level
    gap between an inactive and an active output.
    """
    energies = estimates.pow(2).sum(-1)
    return level_below_db(energies / (energies.sum(-1, keepdim=True) + EPS))


# Frames of 16 ms at 16 kHz; a target's frame this far (energy ratio) below the mixture's
# same frame is a pause of that target, if the mixture frame is within AUDIBLE_RATIO of its
# loudest (else nobody talks and no output should be blamed).
PAUSE_FRAME = 256
PAUSE_RATIO = 1e-3
AUDIBLE_RATIO = 1e-4


def pause_quietness(
    estimates: torch.Tensor, targets: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """How quiet each estimate stays where each target pauses while the mixture sounds:
    (B, C, T) estimates and targets, (B, T) mixture -> (B, C, C), entry ``[b, i, j]`` for
    estimate ``i`` over target ``j``'s pauses.

    Like :func:`quietness` (dB below all estimates together, up to ``SILENT_FLOOR_DB``) but
    over the :data:`PAUSE_FRAME` frames where target ``j`` is :data:`PAUSE_RATIO` below the
    mixture, and weighted by the share of audible frames that are such pauses, so a target
    that never pauses adds nothing.
    """
    frames = estimates.shape[-1] // PAUSE_FRAME
    if frames == 0:
        return estimates.new_zeros(estimates.shape[0], estimates.shape[1], targets.shape[1])

    def energy(x: torch.Tensor) -> torch.Tensor:
        return x[..., : frames * PAUSE_FRAME].unflatten(-1, (frames, PAUSE_FRAME)).pow(2).sum(-1)

    outputs, voices, mixed = energy(estimates), energy(targets), energy(mixture)
    audible = mixed > AUDIBLE_RATIO * mixed.amax(-1, keepdim=True)  # (B, F)
    pauses = ((voices <= PAUSE_RATIO * mixed.unsqueeze(1)) & audible.unsqueeze(1)).float()
    inside = torch.einsum("bif,bjf->bij", outputs, pauses)
    everything = torch.einsum("bf,bjf->bj", outputs.sum(1), pauses).unsqueeze(1)
    quiet = level_below_db(inside / (everything + EPS))
    share = pauses.sum(-1) / audible.float().sum(-1, keepdim=True).clamp(min=1.0)  # (B, C)
    return quiet * share.unsqueeze(1)


def pit_separation_loss(
    estimates: torch.Tensor,
    targets: torch.Tensor,
    mixture: torch.Tensor,
    pause_weight: float = 0.0,
) -> torch.Tensor:
    """The training loss -> scalar: minus the PIT score averaged over the batch, where an
    estimate scores its SI-SNR against an active target and its :func:`quietness` against
    a silent one (a window with fewer voices than outputs); with ``pause_weight``, plus that
    times its :func:`pause_quietness` over the target's pauses.

    (B, C, T) estimates and targets, (B, T) mixture. Without silent targets and with no
    ``pause_weight`` this is minus the PIT SI-SNR.
    """
    pairwise = pairwise_si_snr(estimates, targets)
    if pause_weight:
        pairwise = pairwise + pause_weight * pause_quietness(estimates, targets, mixture)
    silent = targets.pow(2).sum(-1) <= SILENT_RATIO * mixture.pow(2).sum(-1, keepdim=True)
    if bool(silent.any()):
        quiet = quietness(estimates).unsqueeze(2).expand_as(pairwise)
        pairwise = torch.where(silent.unsqueeze(1), quiet, pairwise)
    score, _ = pit_best_permutation(pairwise)
    return -score.mean()

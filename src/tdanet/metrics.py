"""Evaluation metrics for one separated utterance: SI-SNR(i), SDR(i), optional PESQ and STOI.

Arrays are numpy, ``(sources, time)`` for estimates and references and ``(time,)`` for the
mixture; everything is computed in float64. SDR is BSS-eval's (1.0 form, 512-tap distortion
filter) from ``fast_bss_eval``. Improvements ("i") subtract the score of the unprocessed
mixture against the same reference.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from .losses import EPS
from .losses import si_snr as si_snr_tensor

PESQ_RATES = {8000: "nb", 16000: "wb"}


def si_snr(estimate: np.ndarray, reference: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Scale-invariant SNR in dB over the last axis: (..., T), (..., T) -> (...), in float64.

    The training loss's formula (:func:`tdanet.losses.si_snr`), so scores and losses agree.
    """
    return si_snr_tensor(
        torch.from_numpy(np.asarray(estimate, dtype=np.float64)),
        torch.from_numpy(np.asarray(reference, dtype=np.float64)),
        eps,
    ).numpy()


def best_order(estimates: np.ndarray, references: np.ndarray) -> tuple[int, ...]:
    """The ordering of estimates (C, T) that maximises mean SI-SNR against references (C, T).

    ``order[j]`` is the estimate matched with reference ``j``.
    """
    pairwise = si_snr(estimates[:, None, :], references[None, :, :])
    count = references.shape[0]
    return max(
        itertools.permutations(range(count)),
        key=lambda order: sum(pairwise[order[j], j] for j in range(count)),
    )


def sdr(estimates: np.ndarray, references: np.ndarray, filter_length: int = 512) -> np.ndarray:
    """BSS-eval SDR in dB of each estimate against the reference in the same row: (C, T) -> (C,)."""
    import fast_bss_eval
    import torch

    # fast_bss_eval's numpy backend breaks on numpy 2 (np.linalg.solve); its torch one works.
    sdr_values, _, _ = fast_bss_eval.bss_eval_sources(
        torch.from_numpy(np.array(references, dtype=np.float64)),
        torch.from_numpy(np.array(estimates, dtype=np.float64)),
        filter_length=filter_length,
        compute_permutation=False,
    )
    return np.asarray(sdr_values.numpy(), dtype=np.float64)


def pesq_score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean PESQ (narrow band at 8 kHz, wide band otherwise, resampled to 16 kHz) over rows."""
    from pesq import pesq

    if sample_rate not in PESQ_RATES:
        import soxr

        estimate = soxr.resample(estimate.T, sample_rate, 16000).T
        reference = soxr.resample(reference.T, sample_rate, 16000).T
        sample_rate = 16000
    scores = []
    for est, ref in zip(np.atleast_2d(estimate), np.atleast_2d(reference), strict=True):
        try:
            scores.append(pesq(sample_rate, ref, est, PESQ_RATES[sample_rate]))
        except Exception:  # PESQ rejects silent or too-short signals; report them as missing
            scores.append(float("nan"))
    return float(np.mean(scores))


def stoi_score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean STOI over rows of (C, T) arrays."""
    from pystoi import stoi

    return float(
        np.mean(
            [
                stoi(ref, est, sample_rate, extended=False)
                for est, ref in zip(np.atleast_2d(estimate), np.atleast_2d(reference), strict=True)
            ]
        )
    )


def utterance_metrics(
    mixture: np.ndarray,
    estimates: np.ndarray,
    references: np.ndarray,
    sample_rate: int,
    with_pesq: bool = False,
    with_stoi: bool = False,
) -> dict[str, Any]:
    """Scores of one utterance, averaged over sources, after the best SI-SNR assignment.

    mixture (T,), estimates (C, T), references (C, T). Keys: ``si_snr``, ``si_snr_i``,
    ``sdr``, ``sdr_i`` (dB) and, if asked, ``pesq`` and ``stoi``.
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    mixture = np.asarray(mixture, dtype=np.float64)
    if estimates.shape != references.shape or mixture.shape[-1] != references.shape[-1]:
        raise ValueError(
            f"shapes differ: mixture {mixture.shape}, estimates {estimates.shape}, "
            f"references {references.shape}"
        )
    estimates = estimates[list(best_order(estimates, references))]
    mixtures = np.broadcast_to(mixture, references.shape)
    est_si_snr = si_snr(estimates, references)
    mix_si_snr = si_snr(mixtures, references)
    est_sdr = sdr(estimates, references)
    mix_sdr = sdr(mixtures, references)
    result: dict[str, Any] = {
        "si_snr": float(est_si_snr.mean()),
        "si_snr_i": float((est_si_snr - mix_si_snr).mean()),
        "sdr": float(est_sdr.mean()),
        "sdr_i": float((est_sdr - mix_sdr).mean()),
    }
    if with_pesq:
        result["pesq"] = pesq_score(estimates, references, sample_rate)
    if with_stoi:
        result["stoi"] = stoi_score(estimates, references, sample_rate)
    return result

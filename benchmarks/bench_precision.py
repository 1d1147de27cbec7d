"""What bf16 and fp16 cost against fp32: SI-SNRi on a real mixture, and agreement with fp32.

    python benchmarks/bench_precision.py [--model M] [--device cuda] [--runs 3]

Separates ``examples/mixture.wav`` (two held-out voices, references beside it) with
:class:`tdanet.Separator` at each precision on one device, in one process, alternating
precisions run by run. Reported per precision: SI-SNRi against the references (best
pairing), the SI-SNR of its outputs against the fp32 outputs (how far the lower precision
moves the result), and the median time of a call (process CPU time on a CPU, synchronised
wall time on a GPU).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tdanet.metrics import best_order, si_snr
from tdanet.pretrained import DEFAULT_MODEL
from tdanet.separate import PRECISIONS, Separator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples"


def improvement(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray) -> float:
    """Mean SI-SNRi in dB of estimates (C, T) in their best pairing with references (C, T)."""
    ordered = estimates[list(best_order(estimates, references))]
    return float(np.mean(si_snr(ordered, references) - si_snr(mixture[None], references)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per precision")
    args = parser.parse_args()

    torch.set_num_threads(1)
    device = torch.device(args.device)
    mixture, rate = sf.read(EXAMPLE / "mixture.wav", dtype="float32")
    references = np.stack(
        [sf.read(EXAMPLE / f"mixture_s{k}.wav", dtype="float32")[0] for k in (1, 2)]
    )
    separators = {p: Separator(args.model, device=device, precision=p) for p in PRECISIONS}
    outputs = {p: s.separate(mixture, rate) for p, s in separators.items()}
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(args.runs):
        for precision, separator in separators.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            separator.separate(mixture, rate)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            end = time.perf_counter() - start_wall if device.type == "cuda" else None
            times[precision].append(end if end is not None else time.process_time() - start_cpu)

    clock = "wall (synchronised)" if device.type == "cuda" else "process CPU, one thread"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{datetime.date.today()}, {device}, model {args.model}, {mixture.shape[0] / rate:.1f} s "
        f"mixture, {args.runs} runs, load {load:.2f}; time: {clock}"
    )
    print("| precision | SI-SNRi dB | SI-SNR vs fp32 outputs dB | median s per call |")
    print("|---|---|---|---|")
    for precision, out in outputs.items():
        gain = improvement(out, references, mixture)
        agreement = float(np.mean(si_snr(out, outputs["fp32"])))
        shown = "(itself)" if precision == "fp32" else f"{agreement:.1f}"
        median = statistics.median(times[precision])
        print(f"| {precision} | {gain:.2f} | {shown} | {median:.4f} |")


if __name__ == "__main__":
    main()

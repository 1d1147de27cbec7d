"""One-thread CPU inference: the fast path against the plain eager model, in one process.

    python benchmarks/bench_inference.py [--model tdanet] [--seconds 1 10 60] [--runs 3]

Both run the same randomised weights (norm gains and PReLU slopes included) on the same
input; the runs alternate eager, fast, eager, fast... so that load from other processes hits
both alike. Reported per length: the first (cold) call of each, the best and the median of
the timed runs (process CPU time and wall time), their ratios, the largest output
difference, and the peak RSS growth of one call of each in a fresh process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tdanet.fast import optimize_for_inference
from tdanet.model import TDANet, get_preset
from tdanet.profile import peak_memory_mb


def randomized(model: TDANet, seed: int) -> TDANet:
    """Perturb every weight so that no gain is 1 and no bias 0 (a meaningful comparison)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def timed(fn: object, waveform: torch.Tensor) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call."""
    assert callable(fn)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    fn(waveform)
    return time.process_time() - start_cpu, time.perf_counter() - start_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tdanet", help="preset name (default tdanet)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per implementation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the fresh-process memory measurements"
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    eager = randomized(TDANet(get_preset(args.model)), args.seed).eval()
    start = time.perf_counter()
    fast = optimize_for_inference(eager)
    build = time.perf_counter() - start
    rate = eager.config.sample_rate
    print(
        f"model {args.model}, one thread, torch {torch.__version__}; fast path built in {build:.2f} s"
    )
    header = (
        f"{'audio':>6} | {'eager cold':>10} {'fast cold':>9} | {'eager best':>10} {'fast best':>9} "
        f"{'ratio':>6} | {'eager med':>9} {'fast med':>8} {'ratio':>6} | {'wall ratio':>10} | "
        f"{'max diff':>8} | {'RSS eager':>9} {'RSS fast':>8}"
    )
    print(
        "CPU seconds per call (process time); ratio = eager / fast; RSS = peak growth, MiB, fresh process"
    )
    print(header)
    for seconds in args.seconds:
        waveform = torch.randn(1, round(seconds * rate), generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            eager_cold, _ = timed(eager, waveform)
            fast_cold, _ = timed(fast, waveform)
            eager_cpu, fast_cpu, eager_wall, fast_wall = [], [], [], []
            for _ in range(args.runs):
                cpu, wall = timed(eager, waveform)
                eager_cpu.append(cpu)
                eager_wall.append(wall)
                cpu, wall = timed(fast, waveform)
                fast_cpu.append(cpu)
                fast_wall.append(wall)
            diff = (eager(waveform) - fast(waveform)).abs().max().item()
        eager_rss = fast_rss = float("nan")
        if not args.no_memory:
            samples = waveform.shape[-1]
            eager_rss = peak_memory_mb(eager.config, samples, fast=False) or float("nan")
            fast_rss = peak_memory_mb(eager.config, samples, fast=True) or float("nan")
        best_ratio = min(eager_cpu) / min(fast_cpu)
        median_ratio = statistics.median(eager_cpu) / statistics.median(fast_cpu)
        wall_ratio = min(eager_wall) / min(fast_wall)
        print(
            f"{seconds:>5g}s | {eager_cold:>10.3f} {fast_cold:>9.3f} | {min(eager_cpu):>10.3f} "
            f"{min(fast_cpu):>9.3f} {best_ratio:>5.2f}x | {statistics.median(eager_cpu):>9.3f} "
            f"{statistics.median(fast_cpu):>8.3f} {median_ratio:>5.2f}x | {wall_ratio:>9.2f}x | "
            f"{diff:>8.1e} | {eager_rss:>9.1f} {fast_rss:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""This machine's one-thread float32 limit, and the fraction of it TDANet's fast path reaches.

    python benchmarks/bench_roofline.py [--seconds 1 10] [--runs 3]

1. The limit: float32 matrix products on one thread (process CPU time, best of several
   repetitions) for square sizes 256-2048, through ``torch.matmul`` (MKL here) and through
   every oneDNN entry point this torch build answers (``torch.ops.mkldnn._linear_pointwise``
   on plain and prepacked weights, ``torch._C._nn.mkldnn_linear`` on mkldnn tensors, probed:
   one that is missing or fails says so). Also one-thread memory bandwidth (a large copy),
   the roof for the element-wise and depthwise work.
2. The fast path's own matrix products: one profiled call (``torch.profiler``,
   ``record_shapes``) on each length gives every matrix-product shape it runs; each shape is
   then timed alone through torch and oneDNN, and its in-place rate (from the profile) shown.
3. The fraction: the model's multiply-accumulates per second of audio
   (:func:`tdanet.profile.count_macs`, ptflops on the eager model) times 2, divided by the fast
   path's median CPU seconds per second of audio, against the best measured limit.

The fast path is built through ``tdanet.separate.load_separation_model`` (what
:class:`tdanet.Separator` runs), full ``tdanet`` preset, random weights.
"""

from __future__ import annotations

import os

# Before torch (and its OpenMP runtime) loads: idle OpenMP threads must not spin.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse
import datetime
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from bench_peers import cpu_model, load  # benchmarks/ is on the path when run as a script

from tdanet.model import TDANet, get_preset
from tdanet.separate import load_separation_model

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def best_seconds(fn: Callable[[], Any], min_seconds: float = 0.05, repeats: int = 5) -> float:
    """Best process CPU seconds per call of ``fn`` over ``repeats`` batches of at least
    ``min_seconds`` each (after one warm-up call)."""
    fn()
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    calls = max(1, int(min_seconds / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best


def linear_variants(m: int, k: int, n: int) -> dict[str, Callable[[], Any] | str]:
    """(m, k) x (k, n) products through each reachable kernel; a string says why not."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=generator)
    weight = torch.randn(n, k, generator=generator)  # (out, in), as nn.Linear stores it
    right = weight.t().contiguous()
    bias = torch.randn(n, generator=generator)
    out = torch.empty(m, n)
    variants: dict[str, Callable[[], Any] | str] = {
        "torch.matmul": lambda: torch.matmul(x, right, out=out),
        "F.linear": lambda: torch.nn.functional.linear(x, weight, bias),
    }
    candidates: dict[str, Callable[[], Callable[[], Any]]] = {}

    def pointwise() -> Callable[[], Any]:
        op = torch.ops.mkldnn._linear_pointwise
        return lambda: op(x, weight, bias, "none", [], "")

    def prepacked() -> Callable[[], Any]:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, m)
        op = torch.ops.mkldnn._linear_pointwise
        return lambda: op(x, packed, bias, "none", [], "")

    def mkldnn_tensors() -> Callable[[], Any]:
        xm, wm, bm = x.to_mkldnn(), weight.to_mkldnn(), bias.to_mkldnn()
        return lambda: torch._C._nn.mkldnn_linear(xm, wm, bm)

    candidates["oneDNN _linear_pointwise"] = pointwise
    candidates["oneDNN prepacked"] = prepacked
    candidates["oneDNN mkldnn_linear"] = mkldnn_tensors
    for name, make in candidates.items():
        try:
            fn = make()
            result = fn()
            if result.is_mkldnn:
                result = result.to_dense()
            expected = torch.nn.functional.linear(x, weight, bias)
            if not torch.allclose(result, expected, rtol=1e-3, atol=1e-3 * k**0.5):
                variants[name] = "wrong result"
            else:
                variants[name] = fn
        except Exception as error:
            variants[name] = f"unavailable ({type(error).__name__})"
    return variants


def bandwidth() -> float:
    """GB/s of one thread copying 128 MiB (far beyond the caches), read + write counted."""
    source = torch.randn(2**25)
    target = torch.empty_like(source)
    seconds = best_seconds(lambda: target.copy_(source), min_seconds=0.2, repeats=3)
    return 2 * source.numel() * 4 / seconds / 1e9


def gflops(m: int, k: int, n: int, seconds: float, batch: int = 1) -> float:
    return 2.0 * batch * m * k * n / seconds / 1e9


def matmul_dims(name: str, shapes: list[list[int]]) -> tuple[int, int, int, int] | None:
    """(batch, m, k, n) of a profiled matrix-product call from its input shapes."""
    try:
        if name == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return 1, m, k, n
        if name == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return 1, m, k, n
        if name == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return b, m, k, n
        if name == "aten::baddbmm":
            (b, m, k), (_, _, n) = shapes[1], shapes[2]
            return b, m, k, n
    except (ValueError, IndexError, TypeError):
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--runs", type=int, default=3, help="timed fast-path calls per length")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048], help="square sizes"
    )
    parser.add_argument("--no-macs", action="store_true", help="skip counting (ptflops)")
    parser.add_argument(
        "--count-seconds",
        type=float,
        default=10.0,
        help="longest input MACs are counted on (ptflops' memory grows with it: ~17 GB on 60 s)",
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(
        f"# Roofline, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n"
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}, MKL {torch.backends.mkl.is_available()}, "
        f"oneDNN {torch.backends.mkldnn.is_available()}), threads {torch.get_num_threads()}; "
        f"{load()}; process CPU time, best of 5"
    )

    print("\n## Square float32 products, one thread: GFLOP/s (2 n^3 / time)\n")
    names: list[str] = []
    rows: list[tuple[int, dict[str, float | str]]] = []
    for size in args.sizes:
        results: dict[str, float | str] = {}
        for name, fn in linear_variants(size, size, size).items():
            if name not in names:
                names.append(name)
            if isinstance(fn, str):
                results[name] = fn
            else:
                results[name] = gflops(size, size, size, best_seconds(fn))
        rows.append((size, results))
    print("| n | " + " | ".join(names) + " |")
    print("| ---: | " + " | ".join("---:" for _ in names) + " |")
    peak = 0.0
    for size, results in rows:
        cells = []
        for name in names:
            value = results.get(name, "-")
            if isinstance(value, float):
                peak = max(peak, value)
                cells.append(f"{value:.1f}")
            else:
                cells.append(str(value))
        print(f"| {size} | " + " | ".join(cells) + " |")
    print(f"\nmeasured float32 limit (best of the above): {peak:.1f} GFLOP/s")

    print(f"memory bandwidth, one thread (128 MiB copy, read + write): {bandwidth():.1f} GB/s")

    eager = TDANet(get_preset("tdanet")).eval()
    fast, _ = load_separation_model(eager, backend="torch", device=torch.device("cpu"))
    for seconds in args.seconds:
        samples = round(seconds * eager.config.sample_rate)
        waveform = torch.randn(1, samples, generator=torch.Generator().manual_seed(1))
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode():
            fast(waveform)
            cpu = []
            for _ in range(args.runs):
                start = time.process_time()
                fast(waveform)
                cpu.append(time.process_time() - start)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                start = time.process_time()
                fast(waveform)
                profiled_cpu = time.process_time() - start
        per_second = statistics.median(cpu) / seconds
        events = prof.key_averages(group_by_input_shape=True)
        total_us = sum(e.self_cpu_time_total for e in events) or 1.0
        # The profiler's clock is this thread's wall time, which counts the time other
        # processes had the core: scale it to process CPU time (assumes even preemption).
        on_cpu = min(1.0, profiled_cpu / (total_us * 1e-6))
        by_shape: dict[tuple[str, tuple[int, int, int, int]], list[float]] = defaultdict(
            lambda: [0, 0.0]
        )
        matmul_us = 0.0
        other: dict[str, float] = defaultdict(float)
        for event in events:
            dims = matmul_dims(event.key, event.input_shapes) if event.key in MATMUL_OPS else None
            if dims is None:
                other[event.key] += event.self_cpu_time_total
                continue
            entry = by_shape[(event.key, dims)]
            entry[0] += event.count
            entry[1] += event.self_cpu_time_total
            matmul_us += event.self_cpu_time_total

        print(
            f"\n## Fast path on {seconds:g} s: {per_second:.3f} CPU s per s of audio "
            f"(median of {args.runs}); {load()}\n"
        )
        print(
            "Matrix products by shape (batch x m x k x n); in place: from the profiled call, "
            f"its clock scaled to CPU time (the call had the core {on_cpu:.0%} of its wall "
            "time); alone: best of that shape timed on its own\n"
        )
        print(
            "| op | shape | calls | share of call | GFLOP per call | in place GFLOP/s "
            "| alone torch | alone F.linear | alone oneDNN best |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        shapes = sorted(by_shape.items(), key=lambda item: -item[1][1])
        minor = [entry for _, entry in shapes if entry[1] < 0.005 * total_us]
        for (name, (batch, m, k, n)), (count, us) in shapes:
            if us < 0.005 * total_us:
                continue
            flop = 2.0 * batch * m * k * n
            in_place = flop * count / (us * on_cpu * 1e-6) / 1e9 if us else float("nan")
            variants = linear_variants(batch * m, k, n)
            alone = {
                name_: gflops(batch * m, k, n, best_seconds(fn))
                for name_, fn in variants.items()
                if not isinstance(fn, str)
            }
            dnn = [v for key, v in alone.items() if key.startswith("oneDNN")]
            print(
                f"| {name} | {batch}x{m}x{k}x{n} | {count} | {us / total_us:.1%} | "
                f"{flop / 1e9:.3f} | {in_place:.1f} | {alone['torch.matmul']:.1f} | "
                f"{alone['F.linear']:.1f} | {max(dnn) if dnn else float('nan'):.1f} |"
            )
        if minor:
            print(
                f"| (other) | {len(minor)} shapes under 0.5 % each | {sum(c for c, _ in minor)} | "
                f"{sum(us for _, us in minor) / total_us:.1%} | | | | | |"
            )
        print(f"\nmatrix products: {matmul_us / total_us:.1%} of the profiled call; the rest:")
        for name, us in sorted(other.items(), key=lambda item: -item[1])[:8]:
            print(f"  {name:<36} {us / total_us:>6.1%}")

        if not args.no_macs:
            from tdanet.profile import count_macs

            # ptflops keeps what it traces: about 17 GB on 60 s. MACs per second of audio
            # barely depend on the length (4.06 G on 1 s, 4.00 G on 10 s for the release).
            counted = min(seconds, args.count_seconds)
            macs = count_macs(eager, counted) / counted
            reached = 2 * macs / per_second / 1e9
            print(
                f"\nmodel MACs per second of audio (ptflops, eager model, counted on "
                f"{counted:g} s): {macs / 1e9:.2f} G; "
                f"reached: 2 x MACs / CPU time = {reached:.1f} GFLOP/s = "
                f"**{reached / peak:.1%}** of the measured {peak:.1f} GFLOP/s limit"
            )
    print(f"\n{load()} at the end")


if __name__ == "__main__":
    main()

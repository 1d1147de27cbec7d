"""``tdanet profile``: parameters, MACs, one-thread CPU time, memory (and GPU time) of a model."""

from __future__ import annotations

import argparse
import json

HELP = "measure a model's cost: parameters, MACs, CPU real-time factor, memory, GPU time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="preset, bundled or hub name, or checkpoint path (default: the bundled model)",
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="input length in seconds (default 1)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs; the best is reported (default 3)"
    )
    parser.add_argument(
        "--no-eager",
        action="store_true",
        help="do not time the plain eager model (it is slow on long inputs)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurements (each runs in a fresh process)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..errors import TDANetError
    from ..pretrained import DEFAULT_MODEL, load_model, require_tdanet
    from ..profile import profile_model

    if not args.seconds > 0:
        raise TDANetError(f"--seconds must be positive, got {args.seconds}")
    if args.runs < 1:
        raise TDANetError(f"--runs must be at least 1, got {args.runs}")
    name = args.model or DEFAULT_MODEL
    model = require_tdanet(load_model(name), "tdanet profile")
    report = profile_model(
        model,
        name=name,
        seconds=args.seconds,
        runs=args.runs,
        eager=not args.no_eager,
        memory=not args.no_memory,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"model: {report.model} ({report.parameters:,} parameters)")
    paper = (
        f" (paper: {report.paper_macs_per_second / 1e9:.1f} G)"
        if report.paper_macs_per_second
        else ""
    )
    print(
        f"MACs per second of audio: {report.macs_per_second / 1e9:.2f} G{paper} [{report.macs_counter}]"
    )
    print(f"input: {report.seconds:g} s, one CPU thread, best of {report.fast.runs}")
    print(
        f"CPU time per second of audio, fast path: {report.fast.cpu:.3f} s "
        f"(wall {report.fast.wall:.3f} s)"
    )
    if report.eager is not None:
        print(
            f"CPU time per second of audio, eager model: {report.eager.cpu:.3f} s "
            f"(wall {report.eager.wall:.3f} s); fast path speed-up {report.speedup:.2f}x"
        )
    for label, value in (
        ("fast path", report.fast_peak_memory_mb),
        ("eager model", report.eager_peak_memory_mb),
    ):
        if value is not None:
            print(f"peak memory, {label}: {value:.1f} MiB ({report.memory_method})")
    if report.gpu is None:
        print("GPU: CUDA not available")
    else:
        gpu = report.gpu
        print(
            f"GPU forward: fast {gpu['forward_fast_s'] * 1e3:.1f} ms, eager "
            f"{gpu['forward_eager_s'] * 1e3:.1f} ms; forward+backward "
            f"{gpu['forward_backward_s'] * 1e3:.1f} ms; training peak "
            f"{gpu['train_peak_memory_mb']:.0f} MiB"
        )
    return 0

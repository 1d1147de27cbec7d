"""Streaming cost vs block size: per-block CPU time and real-time factor, one thread.

    python benchmarks/bench_streaming.py [--model tfacm-small] [--seconds 10]
        [--block-ms 1 8 16 32 64] [--json]

For each block size a fresh :class:`tdanet.streaming.StreamingSeparator` (randomised
weights: the cost does not depend on training) is fed ``--seconds`` of noise block by
block. Reported: the median and 95th-percentile process CPU time of one ``process`` call,
the real-time factor (median per-block CPU time / block duration; <= 1 keeps up, the issue
asks <= 0.5 at the bundled model's block size), the whole run's CPU time per second of
audio, and the algorithmic latency (one STFT window; a block adds up to its own length of
buffering on top).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tdanet import load_model
from tdanet.model import TFACM
from tdanet.streaming import StreamingSeparator


def randomized(model: TFACM, seed: int = 0) -> TFACM:
    """Perturb every weight so that no gain is 1 and no bias 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def measure(engine: StreamingSeparator, audio: torch.Tensor, block: int) -> dict[str, float]:
    engine.reset()
    times = []
    start_total = time.process_time()
    for start in range(0, audio.shape[-1], block):
        piece = audio[:, start : start + block]
        begin = time.process_time()
        engine.process(piece)
        times.append(time.process_time() - begin)
    engine.flush()
    total = time.process_time() - start_total
    seconds = audio.shape[-1] / engine.sample_rate
    block_seconds = block / engine.sample_rate
    median = statistics.median(times)
    p95 = sorted(times)[int(0.95 * (len(times) - 1))]
    return {
        "block_ms": 1000 * block_seconds,
        "blocks": len(times),
        "median_ms": 1000 * median,
        "p95_ms": 1000 * p95,
        "rtf_median": median / block_seconds,
        "rtf_total": total / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tfacm-small", help="TFACM preset or checkpoint")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed per size")
    parser.add_argument(
        "--block-ms", type=float, nargs="+", default=[1, 8, 16, 32, 64], help="block sizes"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    assert isinstance(model, TFACM), f"{args.model} is not a causal TFACM model"
    model = randomized(model)
    engine = StreamingSeparator(model)
    rate = engine.sample_rate
    audio = 0.1 * torch.randn(
        1, round(args.seconds * rate), generator=torch.Generator().manual_seed(1)
    )
    hop = model.config.hop_length
    rows = []
    for ms in args.block_ms:
        block = max(1, round(ms * rate / 1000))
        rows.append(measure(engine, audio, block))
    report = {
        "model": args.model,
        "sample_rate": rate,
        "hop_ms": 1000 * hop / rate,
        "latency_ms": 1000 * engine.latency_seconds,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"model {args.model}: {rate} Hz, hop {report['hop_ms']:g} ms, algorithmic latency "
        f"{report['latency_ms']:g} ms, {report['threads']} thread, {args.seconds:g} s per size"
    )
    print("block ms | blocks | median CPU ms | p95 CPU ms | RTF (median) | RTF (total)")
    for row in rows:
        print(
            f"{row['block_ms']:8.2f} | {row['blocks']:6d} | {row['median_ms']:13.3f} | "
            f"{row['p95_ms']:10.3f} | {row['rtf_median']:12.3f} | {row['rtf_total']:11.3f}"
        )


if __name__ == "__main__":
    main()

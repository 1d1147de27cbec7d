"""The fast path with its native kernels (``tdanet.model.native``) against the same path on
torch's operations only (oneDNN convolutions), alternating in one process, one thread.

    python benchmarks/bench_native.py [--model tdanet] [--seconds 0.05 1 10] [--rounds 7]
                                      [--interleave]

``--model``: a preset (random weights, every one perturbed) or a checkpoint path. Per length:
the median process CPU time per second of audio of each, their ratio, the largest output
difference between them, and, when 1 s and 10 s are both measured, how much more a second
of audio costs at 1 s than at 10 s (issue 14 asks at most 1.2x). Each length's rounds run
back to back, or with ``--interleave`` every round runs every length in turn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: threads never spin

import torch
from bench_inference import randomized

from tdanet.fast import optimize_for_inference
from tdanet.model import PRESETS, TDANet, get_preset, native
from tdanet.pretrained import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tdanet", help="preset or checkpoint (default tdanet)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.05, 1.0, 10.0])
    parser.add_argument("--rounds", type=int, default=7, help="timed calls of each per length")
    parser.add_argument(
        "--interleave", action="store_true", help="alternate the lengths within each round"
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    compiled = native.kernels
    if compiled() is None:
        raise SystemExit(
            "the native kernels do not build here (no C compiler?): nothing to compare"
        )
    if args.model in PRESETS:
        model = randomized(TDANet(get_preset(args.model)), 0).eval()
    else:
        model = load_model(args.model).eval()
    fast = optimize_for_inference(model)
    rate = model.config.sample_rate
    print(f"# native kernels vs torch's operations, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"model {args.model}; one thread, process CPU time; load average {os.getloadavg()}")

    def run(kind: str, waveform: torch.Tensor) -> tuple[float, torch.Tensor]:
        native.kernels = compiled if kind == "native" else (lambda: None)
        start = time.process_time()
        out = fast(waveform)
        return time.process_time() - start, out

    waveforms, differences = {}, {}
    for seconds in args.seconds:
        waveform = torch.randn(1, round(seconds * rate), generator=torch.Generator().manual_seed(0))
        _, reference = run("torch", waveform)  # untimed first calls
        _, out = run("native", waveform)
        waveforms[seconds], differences[seconds] = waveform, (out - reference).abs().max().item()
    times: dict[tuple[float, str], list[float]] = {}
    # Interleaved: every round runs every length, so a short call follows a long one that
    # has evicted the caches; else each length's rounds run back to back.
    rounds = range(args.rounds)
    if args.interleave:
        visits = [seconds for _ in rounds for seconds in args.seconds]
    else:
        visits = [seconds for seconds in args.seconds for _ in rounds]
    order = [(seconds, kind) for seconds in visits for kind in ("torch", "native")]
    for seconds, kind in order:
        times.setdefault((seconds, kind), []).append(run(kind, waveforms[seconds])[0])
    medians = {key: statistics.median(values) / key[0] for key, values in times.items()}
    print("| audio | torch only, s per s | native, s per s | speed-up | max difference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for seconds in args.seconds:
        base, new = medians[seconds, "torch"], medians[seconds, "native"]
        difference = differences[seconds]
        print(f"| {seconds:g} s | {base:.4f} | {new:.4f} | {base / new:.2f}x | {difference:.1e} |")
    native.kernels = compiled
    if 1.0 in args.seconds and 10.0 in args.seconds:
        for kind in ("torch", "native"):
            ratio = medians[1.0, kind] / medians[10.0, kind]
            print(f"{kind}: a second of audio costs {ratio:.2f}x as much at 1 s as at 10 s")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()

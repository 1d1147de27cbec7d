"""Time and memory of ``Separator.separate_file`` on 1 s, 60 s and 600 s recordings.

For each duration a fresh child process writes a synthetic two-talker-like mixture to a
temporary WAV file, then measures, each with its own peak resident memory (VmHWM, reset
between phases through /proc/self/clear_refs):

* ``separate_file``: the whole product path (streamed read, resampling, chunked model calls,
  alignment, overlap-add, scaling, atomic writes);
* the baseline: one unchunked model call on the whole signal (through
  ``optimize_for_inference``), skipped above ``--baseline-max-seconds`` because its memory
  grows with the input.

Inputs up to 60 s are timed twice per path and the faster run kept.

It prints the real-time factor (processing seconds per second of audio, lower is faster),
the peak memory and the ratios chunked / baseline. Run from the repository root:

    python benchmarks/bench_separate.py [--model tdanet-small] [--durations 1 60 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def write_mixture(path: Path, seconds: float, rate: int) -> None:
    """A synthetic mixture (a voiced tone that comes and goes plus modulated noise), streamed."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for start in range(0, int(seconds * rate), rate * 10):
            frames = min(rate * 10, int(seconds * rate) - start)
            t = (start + np.arange(frames)) / rate
            voiced = np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
            noise = rng.standard_normal(frames) * (np.sin(2 * np.pi * 0.17 * t + 1) > -0.2)
            out.write((0.3 * voiced + 0.1 * noise).astype(np.float32))


def measure(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Run in the child: time and memory of the chunked path and of the baseline."""
    import torch

    torch.set_num_threads(args.threads)
    from tdanet import Separator
    from tdanet.audio import load_audio, resample
    from tdanet.profile import peak_rss_bytes, reset_peak_rss

    separator = Separator(
        args.model, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds
    )
    report: dict[str, Any] = {"seconds": seconds, "peak_reset": reset_peak_rss()}
    with tempfile.TemporaryDirectory() as folder:
        mixture = Path(folder) / "mixture.wav"
        write_mixture(mixture, seconds, args.input_rate)
        # Warm-up on a short input so one-time costs (allocations, lazy init) are not timed.
        separator.separate(0.1 * torch.randn(separator.sample_rate), separator.sample_rate)
        # Short inputs: best of two runs each, so neither path gains from the other's warm-up.
        repeats = 2 if seconds <= 60 else 1
        times = []
        for index in range(repeats):
            reset_peak_rss()
            start = time.perf_counter()
            separator.separate_file(mixture, Path(folder) / f"out{index}")
            times.append(time.perf_counter() - start)
        report["chunked_s"] = min(times)
        report["chunked_mib"] = peak_rss_bytes() / 2**20
        if seconds <= args.baseline_max_seconds:
            samples, rate = load_audio(mixture)
            signal = torch.from_numpy(resample(samples[0], rate, separator.sample_rate))[None]
            del samples
            times = []
            for _ in range(repeats):
                reset_peak_rss()
                start = time.perf_counter()
                with torch.inference_mode():
                    separator.model(signal)
                times.append(time.perf_counter() - start)
            report["baseline_s"] = min(times)
            report["baseline_mib"] = peak_rss_bytes() / 2**20
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="tdanet-small", help="preset, bundled name or checkpoint"
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 60.0, 600.0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--input-rate", type=int, default=16000, help="rate of the test file")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--overlap-seconds", type=float, default=1.0)
    parser.add_argument("--baseline-max-seconds", type=float, default=60.0)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return

    print(
        f"model {args.model}, {args.threads} thread(s), input {args.input_rate} Hz, "
        f"chunks {args.chunk_seconds:g} s / overlap {args.overlap_seconds:g} s"
    )
    header = f"{'input':>8} {'RTF':>7} {'peak MiB':>9} {'base RTF':>9} {'base MiB':>9} {'time x':>7} {'mem x':>7}"
    print(header)
    forwarded = [
        *("--model", args.model, "--threads", str(args.threads)),
        *("--input-rate", str(args.input_rate), "--chunk-seconds", str(args.chunk_seconds)),
        *("--overlap-seconds", str(args.overlap_seconds)),
        *("--baseline-max-seconds", str(args.baseline_max_seconds)),
    ]
    for seconds in args.durations:
        child = subprocess.run(
            [sys.executable, __file__, *forwarded, "--child", str(seconds)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        if child.returncode != 0:
            print(f"{seconds:>7g}s failed: {child.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(child.stdout.strip().splitlines()[-1])
        line = f"{seconds:>7g}s {r['chunked_s'] / seconds:>7.3f} {r['chunked_mib']:>9.0f}"
        if "baseline_s" in r:
            line += (
                f" {r['baseline_s'] / seconds:>9.3f} {r['baseline_mib']:>9.0f}"
                f" {r['chunked_s'] / r['baseline_s']:>7.2f} {r['chunked_mib'] / r['baseline_mib']:>7.2f}"
            )
        else:
            line += f" {'skipped':>9} {'':>9} {'':>7} {'':>7}"
        print(line, flush=True)
    print(
        "RTF: seconds of processing per second of audio. time x / mem x: chunked file path "
        "relative to one unchunked model call on the whole signal (baseline)."
    )


if __name__ == "__main__":
    main()

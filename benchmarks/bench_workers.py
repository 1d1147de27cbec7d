"""Wall and CPU time of ``Separator.separate_file`` with 1 and N chunk workers, and of one
worker with N torch threads, on one long recording.

Each run is a fresh child process (one torch thread per worker, forked worker processes
where ``Separator`` uses them, ``OMP_WAIT_POLICY=PASSIVE`` and ``OPENBLAS_NUM_THREADS=1``
as ``tdanet`` sets them); the settings alternate round by round so that they share the
machine's load. It prints the median wall and process CPU seconds per setting, their ratios
to one worker on one thread, and whether every setting wrote the same outputs as one worker
(sample for sample). The issue's targets: on an idle 2-core machine 2 workers take <= 0.6x
the wall time of 1; 2 threads cost <= 1.3x the CPU time of 1 on a machine busy with another
process. Run from the repository root:

    python benchmarks/bench_workers.py [--model tdanet-demo] [--seconds 600] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_peers import cpu_model, load
from bench_separate import write_mixture


def cpu_seconds() -> float:
    """CPU time of this process and of its ended children (forked workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(model: str, mixture: Path, workers: int, threads: int) -> dict[str, Any]:
    """Run in the child: one ``separate_file`` call, timed after a short warm-up."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)  # the same random weights in every child where the model is a preset
    from tdanet import Separator

    separator = Separator(model, workers=workers)
    separator.separate(0.1 * torch.randn(separator.sample_rate), separator.sample_rate)
    with tempfile.TemporaryDirectory() as folder:
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        written = separator.separate_file(mixture, Path(folder))
        cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
        digest = hashlib.sha256()
        for path in sorted(written):
            digest.update(Path(path).read_bytes())
    return {"cpu": cpu, "wall": wall, "outputs": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tdanet-demo", help="preset, bundled name or file")
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the recording")
    parser.add_argument("--workers", type=int, default=2, help="N, the parallel setting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        model, mixture, workers, threads = args.child
        print(json.dumps(measure(model, Path(mixture), int(workers), int(threads))))
        return

    settings = {"1 worker": (1, 1), f"{args.workers} workers": (args.workers, 1)}
    settings[f"1 worker, {args.workers} threads"] = (1, args.workers)
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {cpu_model()}, {os.cpu_count()} cores, {load()}")
    print(f"model {args.model}, {args.seconds:g} s recording, {args.rounds} rounds")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as folder:
        mixture = Path(folder) / "mixture.wav"
        write_mixture(mixture, args.seconds, 16000)
        for _ in range(args.rounds):
            for name, (workers, threads) in settings.items():
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        args.model,
                        str(mixture),
                        *map(str, (workers, threads)),
                    ],
                    capture_output=True,
                    text=True,
                    env={
                        **os.environ,
                        "OMP_NUM_THREADS": str(threads),
                        "OMP_WAIT_POLICY": "PASSIVE",
                        "OPENBLAS_NUM_THREADS": "1",
                    },
                    check=True,
                )
                results[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    base = results["1 worker"]
    base_wall = statistics.median(r["wall"] for r in base)
    base_cpu = statistics.median(r["cpu"] for r in base)
    print(f"{'setting':<22} {'wall s':>8} {'CPU s':>8} {'wall x':>7} {'CPU x':>7}  outputs")
    for name, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        same = all(r["outputs"] == base[0]["outputs"] for r in runs)
        print(
            f"{name:<22} {wall:>8.2f} {cpu:>8.2f} {wall / base_wall:>7.2f} {cpu / base_cpu:>7.2f}"
            f"  {'identical' if same else 'differ'}"
        )
    print(
        "x: ratio to 1 worker on one thread (medians); CPU counts the forked workers too. "
        "Outputs must be identical for any worker count; threads change float rounding."
    )


if __name__ == "__main__":
    main()

"""Full-size TDANet (the project's inference path) against other separators, one CPU thread.

    python benchmarks/bench_peers.py --install            # once: the peers, without dependencies
    python benchmarks/bench_peers.py [--seconds 1 10] [--rounds 3] [--profile]

The peers are Asteroid's implementations (``asteroid`` 0.7.0 and ``asteroid-filterbanks``
0.4.0), installed with ``pip install --no-deps`` into a separate folder (``--peers-dir``,
default ``~/.cache/tdanet-bench-peers``; an ``asteroid`` already importable is used as it is):
the project does not depend on them and nothing of theirs is vendored. Asteroid imports
``requests`` (model downloads) at import time; when that or another download/file-I/O-only
module is missing, an inert stand-in module is registered so that the model classes import
(the output lists them). Each peer is built with the configuration of its published recipe
(``PEERS`` below), random weights, eval mode, under ``torch.inference_mode``.

The contender is the full ``tdanet`` preset (every weight perturbed, as in
``bench_inference.py``) through the callable :class:`tdanet.Separator` runs
(``tdanet.separate.load_separation_model``, i.e. the fast path). Its output is checked against
the eager model's on every length (one eager call, not timed; tolerance 1e-4).

Timing: one intra-op thread, ``OMP_WAIT_POLICY=PASSIVE`` set before torch loads, process CPU
time (``time.process_time``: robust to other processes on the machine). Per length every
contender makes one untimed warm-up (cold) call, then ``--rounds`` rounds in which each
contender runs once, the order rotating from round to round, so that load changes hit all
alike. Reported: the median CPU seconds per second of audio, and the ratio of the fastest
peer's median to TDANet's (above 1: TDANet is faster). A peer whose shorter lengths project
more than ``--budget`` CPU seconds per call (a power law through the last two) is not run at
the longer lengths (it cannot be the fastest; the table says so).

Memory: some peers grow faster than the input (DPTNet's inter-chunk attention is quadratic:
about 9 GB per attention matrix on 60 s), so the address space is capped
(``--memory-limit``, RLIMIT_AS) and a peer whose allocation fails there is reported "out of
memory" instead of pushing the machine into the OOM killer.
"""

from __future__ import annotations

import os

# Before torch (and its OpenMP runtime) loads: idle OpenMP threads must not spin.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import math
import platform
import statistics
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_inference import randomized, timed  # benchmarks/ is on the path when run as a script
from torch import nn

from tdanet.model import TDANet, get_preset
from tdanet.separate import load_separation_model

SAMPLE_RATE = 16000
PEER_PACKAGES = ("asteroid==0.7.0", "asteroid-filterbanks==0.4.0")
DEFAULT_PEERS_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "tdanet-bench-peers"
)
# Modules Asteroid imports at import time but the model classes never use (downloads,
# audio files, resampling in its own `separate` helper): stood in for when missing.
INERT_MODULES = ("requests", "huggingface_hub", "soundfile", "julius")
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Peer:
    """One separator: Asteroid class name, recipe, constructor arguments (n_src=2, 16 kHz)."""

    label: str
    cls: str
    recipe: str
    kwargs: dict[str, Any]


# The published recipes' filterbank and masknet sections (Asteroid's egs/*/local/conf.yml;
# kernel sizes and strides are in samples, and the 16 kHz LibriMix recipes use them as given).
PEERS: dict[str, Peer] = {
    "convtasnet": Peer(
        "Conv-TasNet",
        "ConvTasNet",
        "egs/librimix/ConvTasNet (16 kHz Libri2Mix)",
        dict(
            n_filters=512,
            kernel_size=16,
            stride=8,
            n_blocks=8,
            n_repeats=3,
            bn_chan=128,
            hid_chan=512,
            skip_chan=128,
            mask_act="relu",
        ),
    ),
    "dptnet": Peer(
        "DPTNet",
        "DPTNet",
        "egs/wham/DPTNet",
        dict(
            n_filters=64,
            kernel_size=16,
            stride=8,
            in_chan=64,
            ff_hid=256,
            ff_activation="relu",
            norm_type="gLN",
            chunk_size=100,
            hop_size=50,
            n_repeats=2,
            mask_act="sigmoid",
            bidirectional=True,
            dropout=0.0,
        ),
    ),
    "dprnn": Peer(
        "DPRNN",
        "DPRNNTasNet",
        "egs/wham/DPRNN",
        dict(
            n_filters=64,
            kernel_size=2,
            stride=1,
            in_chan=64,
            out_chan=64,
            bn_chan=128,
            hid_size=128,
            chunk_size=250,
            hop_size=125,
            n_repeats=6,
            mask_act="sigmoid",
            bidirectional=True,
            dropout=0.0,
        ),
    ),
    "sudormrf": Peer(
        "SuDoRM-RF",
        "SuDORMRFNet",
        "egs/librimix/SuDORMRFNet (the paper's 1.0x)",
        dict(
            fb_name="free",
            n_filters=512,
            kernel_size=21,
            stride=10,
            bn_chan=128,
            num_blocks=16,
            upsampling_depth=4,
            mask_act="softmax",
            in_chan=512,
        ),
    ),
    "sudormrf-improved": Peer(
        "SuDoRM-RF improved",
        "SuDORMRFImprovedNet",
        "egs/librimix/SuDORMRFImprovedNet",
        dict(
            fb_name="free",
            n_filters=512,
            kernel_size=41,
            stride=20,
            bn_chan=128,
            num_blocks=16,
            upsampling_depth=4,
            mask_act="relu",
            in_chan=512,
        ),
    ),
}


@dataclass
class Contender:
    key: str
    label: str
    run: Callable[[torch.Tensor], Any] | None
    params: int = 0
    note: str = ""
    cold: dict[float, float] = field(default_factory=dict)
    cpu: dict[float, list[float]] = field(default_factory=dict)
    wall: dict[float, list[float]] = field(default_factory=dict)
    skipped: dict[float, str] = field(default_factory=dict)

    def median(self, seconds: float) -> float | None:
        times = self.cpu.get(seconds)
        return statistics.median(times) / seconds if times else None


def install_peers(target: Path) -> None:
    """``pip install --no-deps --target`` the pinned peer packages."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--target"]
    command += [str(target), *PEER_PACKAGES]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _inert_module(name: str) -> types.ModuleType:
    """A module whose every attribute is a function that raises: imports succeed, use fails."""
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodule imports find it too

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(f"{name}.{attr}: not installed (benchmark stand-in)")

        return unavailable

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def import_asteroid_models(peers_dir: Path) -> tuple[types.ModuleType | None, list[str], str]:
    """(``asteroid.models`` or None, stand-in modules registered, error message)."""
    if importlib.util.find_spec("asteroid") is None and peers_dir.is_dir():
        sys.path.append(str(peers_dir))
    if importlib.util.find_spec("asteroid") is None:
        return (
            None,
            [],
            (
                "asteroid is not installed: run this script once with --install (pip install "
                f"--no-deps --target {peers_dir} {' '.join(PEER_PACKAGES)})"
            ),
        )
    stand_ins: list[str] = []
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return importlib.import_module("asteroid.models"), stand_ins, ""
        except ModuleNotFoundError as error:
            name = (error.name or "").split(".")[0]
            if name not in INERT_MODULES or name in stand_ins:
                return None, stand_ins, f"asteroid.models does not import: {error!r}"
            for loaded in [m for m in sys.modules if m.split(".")[0] == "asteroid"]:
                del sys.modules[loaded]
            sys.modules[name] = _inert_module(name)
            stand_ins.append(name)
        except Exception as error:
            return None, stand_ins, f"asteroid.models does not import: {error!r}"


def build_peer(key: str, models: types.ModuleType | None, reason: str) -> Contender:
    peer = PEERS[key]
    if models is None:
        return Contender(key, peer.label, None, note=f"not built: {reason}")
    try:
        cls = getattr(models, peer.cls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(n_src=2, sample_rate=SAMPLE_RATE, **peer.kwargs).eval()
    except Exception as error:
        return Contender(key, peer.label, None, note=f"not built: {error!r}")
    params = sum(p.numel() for p in model.parameters())
    return Contender(key, peer.label, model, params, note=peer.recipe)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unavailable"


class _WithConfig(nn.Module):
    """A peer with the ``.config.sample_rate`` :func:`tdanet.profile.count_macs` reads."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = types.SimpleNamespace(sample_rate=SAMPLE_RATE)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform)


def macs_per_second(model: nn.Module) -> float | None:
    """Multiply-accumulates per second of audio on 1 s (ptflops' aten backend, LSTMs counted
    from their shapes: :func:`tdanet.profile.count_macs`), or None without ptflops."""
    try:
        from tdanet.profile import count_macs
    except ImportError:
        return None
    if not isinstance(model, TDANet):
        model = _WithConfig(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return count_macs(model, 1.0)  # type: ignore[arg-type]


def project(contender: Contender, seconds: float) -> float | None:
    """CPU seconds one call on ``seconds`` should take, from the shorter lengths measured: a
    power law through the last two (some peers grow faster than the input), else linear."""
    done = sorted(s for s in contender.cpu if s < seconds and contender.cpu[s])
    if not done:
        return None
    last = done[-1]
    per_call = statistics.median(contender.cpu[last])
    exponent = 1.0
    if len(done) > 1:
        before = statistics.median(contender.cpu[done[-2]])
        exponent = max(1.0, math.log(per_call / before) / math.log(last / done[-2]))
    return per_call * (seconds / last) ** exponent


def memory_limit(gib: float | None) -> float:
    """Bytes this process may add to its address space: ``gib``, or by default half of the
    memory available now, at most 8 GiB (0: no limit)."""
    if gib is not None:
        return gib * 2**30
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 * 2**30
    return min(8 * 2**30, available / 2)


def limit_address_space(extra: float) -> bool:
    """Cap the address space at its current size plus ``extra`` bytes (RLIMIT_AS), so that a
    peer that needs more fails its allocation instead of pushing the machine into the OOM
    killer. False where the limit cannot be set."""
    try:
        import resource

        with open("/proc/self/status") as handle:
            size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (int(size + extra), hard))
    except (ImportError, OSError, StopIteration, ValueError):
        return False
    return True


def attempt(
    contender: Contender, waveform: torch.Tensor, seconds: float, limit: float
) -> tuple[float, float] | None:
    """``timed`` call of the contender, or None (and the reason recorded) when it runs out of
    memory under the limit."""
    assert contender.run is not None
    try:
        return timed(contender.run, waveform)
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        contender.cpu.pop(seconds, None)
        contender.wall.pop(seconds, None)
        contender.skipped[seconds] = f"out of memory under the {limit / 2**30:.1f} GiB limit"
        print(f"! {contender.label} on {seconds:g} s: {contender.skipped[seconds]}", flush=True)
        return None


def profile_ops(fn: Callable[[torch.Tensor], Any], waveform: torch.Tensor, rows: int) -> str:
    """The top ``rows`` operators of one call by self CPU time (the profiler's clock: wall
    time of this thread), with their share of the total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(waveform)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    lines = [f"  {'operator':<36} {'self ms':>8} {'share':>6} {'calls':>6}"]
    for event in events[:rows]:
        lines.append(
            f"  {event.key[:36]:<36} {event.self_cpu_time_total / 1e3:>8.1f} "
            f"{event.self_cpu_time_total / total:>6.1%} {event.count:>6}"
        )
    calls = sum(e.count for e in events)
    lines.append(f"  {'total':<36} {total / 1e3:>8.1f} {1:>6.0%} {calls:>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[1.0, 10.0],
        help="lengths of audio (default 1 10; the issue's target adds 60)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per length")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=list(PEERS))
    parser.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="CPU seconds per call above which a peer is not run at longer lengths",
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        help="GiB a call may add to the process (default half the available memory, at most "
        "8; 0: no limit): a peer needing more is reported out of memory",
    )
    parser.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR)
    parser.add_argument(
        "--install",
        action="store_true",
        help="pip install --no-deps the peers into --peers-dir first",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a torch.profiler breakdown of TDANet and the fastest peer",
    )
    parser.add_argument(
        "--no-macs", action="store_true", help="do not count MACs (ptflops, about a minute)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.install:
        install_peers(args.peers_dir)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    models, stand_ins, reason = import_asteroid_models(args.peers_dir)
    peers = [build_peer(key, models, reason) for key in args.peers]
    eager = randomized(TDANet(get_preset("tdanet")), args.seed).eval()
    fast, _ = load_separation_model(eager, backend="torch", device=torch.device("cpu"))
    tdanet = Contender(
        "tdanet",
        "TDANet (fast path)",
        fast,
        sum(p.numel() for p in eager.parameters()),
        note="preset tdanet, tdanet.separate.load_separation_model",
    )
    contenders = [tdanet, *peers]
    runnable = [c for c in contenders if c.run is not None]

    versions = []
    for package in ("asteroid", "asteroid-filterbanks"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            if models is not None and package == "asteroid":
                versions.append(f"asteroid {getattr(sys.modules['asteroid'], '__version__', '?')}")
    print(
        f"# TDANet against other separators, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {', '.join(versions) or 'no peers'}"
    )
    if stand_ins:
        print(f"inert stand-ins for import-time-only modules: {', '.join(stand_ins)}")
    print(f"{load()} at start; times: process CPU seconds, one thread, {args.rounds} rounds")
    for contender in contenders:
        if contender.run is None:
            print(f"! {contender.label}: {contender.note}")

    # Counted before the address space is capped: ptflops undercounts silently when an
    # allocation inside its tracing fails.
    macs: dict[str, float | None] = {}
    if not args.no_macs:
        for contender in runnable:
            model = eager if contender is tdanet else contender.run
            assert isinstance(model, nn.Module)
            try:
                macs[contender.key] = macs_per_second(model)
            except Exception as error:
                print(f"! {contender.label}: MACs not counted ({error!r})")
    limit = memory_limit(args.memory_limit)
    if limit and limit_address_space(limit):
        print(f"address space capped at its size now + {limit / 2**30:.1f} GiB")
    for seconds in args.seconds:
        samples = round(seconds * SAMPLE_RATE)
        waveform = torch.randn(1, samples, generator=torch.Generator().manual_seed(1))
        active = []
        for contender in runnable:
            earlier = [s for s in args.seconds if s < seconds and s in contender.skipped]
            if earlier:
                contender.skipped[seconds] = contender.skipped[max(earlier)]
                continue
            projected = project(contender, seconds)
            if contender is not tdanet and projected is not None and projected > args.budget:
                contender.skipped[seconds] = f"projected {projected:.0f} s per call"
                continue
            active.append(contender)
        with torch.inference_mode():
            for contender in list(active):
                cold = attempt(contender, waveform, seconds, limit)
                if cold is None:
                    active.remove(contender)
                    continue
                contender.cold[seconds] = cold[0]
                contender.cpu[seconds], contender.wall[seconds] = [], []
            for round_ in range(args.rounds):
                shift = round_ % max(1, len(active))
                for contender in active[shift:] + active[:shift]:
                    result = attempt(contender, waveform, seconds, limit)
                    if result is None:
                        active.remove(contender)
                        continue
                    contender.cpu[seconds].append(result[0])
                    contender.wall[seconds].append(result[1])
            try:
                difference = (eager(waveform) - fast(waveform)).abs().max().item()
                verdict = "ok" if difference <= TOLERANCE else "FAILED"
                check = f"max abs difference {difference:.1e} ({verdict}, tolerance {TOLERANCE:g})"
            except (MemoryError, RuntimeError) as error:
                if not isinstance(error, MemoryError) and "allocate" not in str(error):
                    raise
                check = "not checked (out of memory under the limit)"
        print(f"{seconds:g} s done ({load()}); TDANet fast path vs eager: {check}", flush=True)

    print()
    heads = [f"{s:g} s" for s in args.seconds]
    first = args.seconds[0]
    print(
        "Columns per length: CPU seconds per second of audio (median of the rounds; lower is "
        "faster). GMAC/s: multiply-accumulates per second of audio (ptflops aten backend, LSTMs "
        f"from their shapes; counted on 1 s); GFLOP/s: 2 x MACs / CPU time at {first:g} s\n"
    )
    print("| model | recipe | params | GMAC/s | GFLOP/s | " + " | ".join(heads) + " |")
    print("| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in heads) + " |")
    for contender in contenders:
        cells = []
        for seconds in args.seconds:
            value = contender.median(seconds)
            if value is not None:
                cells.append(f"{value:.3f}")
            elif seconds in contender.skipped:
                cells.append(f"not run ({contender.skipped[seconds]})")
            else:
                cells.append("not built" if contender.run is None else "-")
        params = f"{contender.params / 1e6:.2f} M" if contender.params else "-"
        note = contender.note if contender.run is not None else contender.note[:60]
        count = macs.get(contender.key)
        speed = contender.median(first)
        rate = f"{count / 1e9:.2f}" if count else "-"
        reached = f"{2 * count / speed / 1e9:.1f}" if count and speed else "-"
        print(
            f"| {contender.label} | {note} | {params} | {rate} | {reached} | "
            + " | ".join(cells)
            + " |"
        )
    ratios = []
    for seconds in args.seconds:
        timed_peers = [(p.median(seconds), p.label) for p in peers if p.median(seconds)]
        own = tdanet.median(seconds)
        if not timed_peers or own is None:
            ratios.append("-")
            continue
        best, label = min(timed_peers)  # type: ignore[type-var]
        ratios.append(f"**{best / own:.2f}x** ({label})")
    print("| fastest peer / TDANet | | | | | " + " | ".join(ratios) + " |")
    print("\n(The ratio is taken over the peers that ran at that length.)")
    print("\nEach peer's median over TDANet's (above 1: TDANet is faster)\n")
    print("| peer | " + " | ".join(heads) + " |")
    print("| --- | " + " | ".join("---:" for _ in heads) + " |")
    for peer in peers:
        cells = []
        for seconds in args.seconds:
            theirs, own = peer.median(seconds), tdanet.median(seconds)
            cells.append(f"{theirs / own:.2f}x" if theirs and own else "-")
        print(f"| {peer.label} | " + " | ".join(cells) + " |")

    print(
        "\nDetail, CPU seconds per call: cold (first call); min / median / max of the rounds; "
        "median wall seconds\n"
    )
    print("| model | audio | cold | min | median | max | wall median |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for contender in runnable:
        for seconds in args.seconds:
            times = contender.cpu.get(seconds)
            if not times:
                continue
            print(
                f"| {contender.label} | {seconds:g} s | {contender.cold[seconds]:.3f} | "
                f"{min(times):.3f} | {statistics.median(times):.3f} | {max(times):.3f} | "
                f"{statistics.median(contender.wall[seconds]):.3f} |"
            )
    print(f"\n{load()} at the end")

    if args.profile:
        seconds = args.seconds[0]
        waveform = torch.randn(1, round(seconds * SAMPLE_RATE))
        timed_peers = [p for p in peers if p.median(seconds)]
        chosen = [tdanet]
        if timed_peers:
            chosen.append(min(timed_peers, key=lambda p: p.median(seconds) or 0.0))
        with torch.inference_mode():
            for contender in chosen:
                assert contender.run is not None
                print(f"\ntorch.profiler, {contender.label}, one call on {seconds:g} s:")
                print(profile_ops(contender.run, waveform, rows=15))


if __name__ == "__main__":
    main()

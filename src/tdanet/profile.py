"""Model cost as in the paper's Table 3: parameters, MACs, CPU real-time factor, memory, GPU time.

* MACs: counted by ptflops (aten backend: every matrix product and convolution the eager
  model runs, functional calls included) on the plain eager model, reported per second of
  audio at the model's sample rate.
* CPU time per second of audio ("CPU RTF") with one intra-op thread, best of N runs, for the
  fast path (:func:`tdanet.fast.optimize_for_inference`, the default everywhere) and the
  plain eager model; process CPU time and wall time are both given.
* Peak memory: the largest resident-set (RSS) growth during one forward call over the RSS
  before it, in a fresh process (the kernel's high-water mark, reset before the call, or
  RSS sampled each millisecond): what one call adds to a process that has loaded the model.
* GPU forward and forward+backward time and peak allocated memory, only when CUDA is there.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .fast import optimize_for_inference
from .model import PRESETS, TFACM, TDANet, TDANetConfig
from .model.layers import ChannelAffine

# Table 3 of the paper (MACs per second of 16 kHz audio).
PAPER_MACS: dict[str, float] = {"tdanet": 4.7e9, "tdanet-large": 9.1e9}


@dataclass
class Timing:
    """Seconds per second of audio: process CPU time and wall time (best of ``runs``)."""

    cpu: float
    wall: float
    runs: int


@dataclass
class ProfileReport:
    model: str
    config: dict[str, Any]
    seconds: float
    parameters: int
    macs_per_second: float
    macs_counter: str
    paper_macs_per_second: float | None
    threads: int
    fast: Timing
    eager: Timing | None
    speedup: float | None
    fast_peak_memory_mb: float | None
    eager_peak_memory_mb: float | None
    memory_method: str
    gpu: dict[str, float] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paper_macs(config: TDANetConfig) -> float | None:
    """The paper's MACs per second for this architecture, if it is one of Table 3's."""
    for name, macs in PAPER_MACS.items():
        preset = PRESETS[name]
        if config.replace(attention=preset.attention) == preset:
            return macs
    return None


def lstm_macs_per_step(lstm: nn.LSTM) -> int:
    """Multiply-accumulates of one time step of ``lstm`` (one sequence): 4 H (I + H) per layer
    and direction, where I is the input width for the first layer and H times the number of
    directions above it (no projections: ``proj_size`` 0)."""
    if lstm.proj_size:
        raise ValueError("count_macs: LSTMs with proj_size are not supported")
    hidden, directions = lstm.hidden_size, 2 if lstm.bidirectional else 1
    total = 0
    for layer in range(lstm.num_layers):
        width = lstm.input_size if layer == 0 else hidden * directions
        total += directions * 4 * hidden * (width + hidden)
    return total


def count_macs(model: TDANet | TFACM, seconds: float) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``seconds`` of audio (batch 1).

    ptflops' aten backend does not see inside ``aten.lstm``, so LSTM layers (TFACM's) are
    counted here from the shapes they run on: :func:`lstm_macs_per_step` per step and sequence.
    Nor does it count element-wise products, so the kernel-1 depthwise convolutions that run
    as one (:class:`~tdanet.model.layers.ChannelAffine`) are counted as the convolutions
    they are: one MAC per output element, one more with a bias.
    """
    from ptflops import get_model_complexity_info

    samples = max(1, round(seconds * model.config.sample_rate))
    extra_macs = 0

    def count_lstm(module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
        nonlocal extra_macs
        assert isinstance(module, nn.LSTM)
        if not isinstance(inputs[0], torch.Tensor):
            raise TypeError("count_macs: LSTM inputs must be tensors (no PackedSequence)")
        steps = inputs[0].shape[:-1].numel()  # (B, T, I), (T, B, I) or unbatched (T, I)
        extra_macs += steps * lstm_macs_per_step(module)

    def count_affine(module: nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal extra_macs
        extra_macs += output.numel() * (1 if getattr(module, "bias", None) is None else 2)

    handles = [
        m.register_forward_hook(count_lstm) for m in model.modules() if isinstance(m, nn.LSTM)
    ]
    handles += [
        m.register_forward_hook(count_affine)
        for m in model.modules()
        if isinstance(m, ChannelAffine)
    ]
    try:
        macs, _ = get_model_complexity_info(
            model,
            (samples,),
            input_constructor=lambda shape: {"waveform": torch.zeros(1, *shape)},
            as_strings=False,
            backend="aten",
            print_per_layer_stat=False,
            verbose=False,
        )
    finally:
        for handle in handles:
            handle.remove()
    return int(macs or 0) + extra_macs


def time_per_second(
    fn: Callable[[torch.Tensor], Any], waveform: torch.Tensor, seconds: float, runs: int
) -> Timing:
    """Best-of-``runs`` CPU and wall seconds of ``fn(waveform)`` per second of audio (after
    one untimed warm-up call)."""
    with torch.inference_mode():
        fn(waveform)
        cpu, wall = [], []
        for _ in range(runs):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            fn(waveform)
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start_wall)
    return Timing(cpu=min(cpu) / seconds, wall=min(wall) / seconds, runs=runs)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark of this process (Linux 4.0+); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The kernel's peak RSS of this process since start or :func:`reset_peak_rss`: VmHWM if
    readable, else ``ru_maxrss`` (which no reset lowers)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_growth(fn: Callable[[], Any]) -> float | None:
    """Largest RSS growth in MiB over the RSS before ``fn()`` while it runs, or None where
    /proc/self/statm is not available.

    The kernel's high-water mark is reset before the call and read after it, so an earlier
    peak cannot hide this one; where it cannot be reset it counts only if the call raised it,
    and the RSS sampled each millisecond covers the rest. Memory the allocator kept from
    earlier calls is reused without growth, so measure in a fresh process
    (:func:`peak_memory_mb`).
    """
    baseline = _rss_bytes()
    if baseline is None:
        return None
    was_reset = reset_peak_rss()
    high_before = peak_rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes() or 0)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    high_after = peak_rss_bytes()
    if was_reset or high_after > high_before:
        peak = max(peak, high_after)
    return max(0, peak - baseline) / 2**20


def _fresh_process_peak(config: dict[str, Any], samples: int, fast: bool) -> float | None:
    """Runs in a spawned process: peak RSS growth of one call on ``samples`` zeros."""
    torch.set_num_threads(1)
    model = TDANet(TDANetConfig.from_dict(config)).eval()
    runner = optimize_for_inference(model) if fast else model
    waveform = torch.zeros(1, samples)
    with torch.inference_mode():
        return peak_rss_growth(lambda: runner(waveform))


def peak_memory_mb(config: TDANetConfig, samples: int, *, fast: bool) -> float | None:
    """Peak RSS growth (MiB) of one forward call on ``samples`` samples, measured in a fresh
    process so that no memory cached by earlier calls hides it (weights do not matter)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_fresh_process_peak, config.to_dict(), samples, fast).result()


def gpu_timings(model: TDANet, seconds: float, runs: int) -> dict[str, float] | None:
    """CUDA forward (fast and eager), forward+backward (eager, as in training) seconds per
    call on ``seconds`` of audio, and peak allocated MiB; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    eager = TDANet(model.config).to(device)
    eager.load_state_dict(model.state_dict())
    eager.eval()
    fast = optimize_for_inference(eager)
    waveform = torch.randn(1, max(1, round(seconds * model.config.sample_rate)), device=device)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        torch.cuda.synchronize(device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return min(times)

    def backward() -> None:
        eager.zero_grad(set_to_none=True)
        eager(waveform).square().mean().backward()

    with torch.inference_mode():
        forward_fast = best(lambda: fast(waveform))
        forward_eager = best(lambda: eager(waveform))
    torch.cuda.reset_peak_memory_stats(device)
    eager.train()
    backward_s = best(backward)
    train_peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {
        "forward_fast_s": forward_fast,
        "forward_eager_s": forward_eager,
        "forward_backward_s": backward_s,
        "train_peak_memory_mb": train_peak,
    }


def profile_model(
    model: TDANet,
    *,
    name: str,
    seconds: float = 1.0,
    runs: int = 3,
    eager: bool = True,
    macs: bool = True,
    memory: bool = True,
) -> ProfileReport:
    """Measure ``model`` on ``seconds`` of random audio with one CPU thread (restored after).

    ``eager=False`` skips the plain eager model (slow on long inputs); ``macs=False`` skips
    counting and ``memory=False`` the fresh-process memory measurements.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    model = model.eval()
    samples = max(1, round(seconds * model.config.sample_rate))
    seconds = samples / model.config.sample_rate
    generator = torch.Generator().manual_seed(0)
    waveform = torch.randn(1, samples, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fast = optimize_for_inference(model)
        fast_timing = time_per_second(fast, waveform, seconds, runs)
        eager_timing = time_per_second(model, waveform, seconds, runs) if eager else None
        fast_memory = peak_memory_mb(model.config, samples, fast=True) if memory else None
        eager_memory = (
            peak_memory_mb(model.config, samples, fast=False) if memory and eager else None
        )
        count = count_macs(model, seconds) if macs else 0
    finally:
        torch.set_num_threads(threads)
    return ProfileReport(
        model=name,
        config=model.config.to_dict(),
        seconds=seconds,
        parameters=sum(p.numel() for p in model.parameters()),
        macs_per_second=count / seconds,
        macs_counter="ptflops (aten backend)" if macs else "not counted",
        paper_macs_per_second=paper_macs(model.config),
        threads=1,
        fast=fast_timing,
        eager=eager_timing,
        speedup=eager_timing.cpu / fast_timing.cpu if eager_timing else None,
        fast_peak_memory_mb=fast_memory,
        eager_peak_memory_mb=eager_memory,
        memory_method="peak RSS growth during one forward call, in a fresh process",
        gpu=gpu_timings(model, seconds, runs),
    )

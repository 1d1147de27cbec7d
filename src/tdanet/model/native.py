"""The fast path's depthwise convolution as a small C kernel, compiled on first use.

On a CPU, oneDNN spends 100-200 us on any depthwise convolution however short (about 290 of
them per TDANet call), and the gLN after one needs another pass over its output for the
moments. ``native.c`` computes the convolution and the output's per-channel moments in one
pass. It is plain C: the system's C compiler (``$CC``, else ``cc`` or ``gcc``) builds it once
per machine with ``-march=native`` into ``$XDG_CACHE_HOME/tdanet/native`` (keyed by the
source, the flags, the compiler and the CPU), and it is loaded with ctypes.

Probed like the other version-specific operators: where there is no compiler, the build or
the load fails, or the kernel does not reproduce ``F.conv1d`` on a test case, :func:`kernel`
is None and callers use torch's convolution. ``TDANET_NATIVE=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("native.c")
# -march=native: the build is for this CPU only, hence the CPU in the cache key.
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC")
# Some x86 tunings (e.g. znver1) default to 128-bit vectors; 256 runs 1.25x faster there.
X86_FLAGS = ("-mprefer-vector-width=256",)
# A build takes about half a second; this only bounds a compiler that hangs.
COMPILE_TIMEOUT_S = 120

Kernel = Callable[..., int]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _flags() -> tuple[str, ...]:
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    return FLAGS + (X86_FLAGS if x86 else ())


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags where Linux says."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        info = []
    wanted = ("model name", "flags", "features", "cpu part")
    lines = sorted({line for line in info if line.lower().startswith(wanted)})
    return "\n".join([platform.machine(), platform.processor(), *lines])


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tdanet/native`` (``~/.cache/tdanet/native``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tdanet" / "native"


def build(compiler: str, directory: Path) -> Path:
    """The shared library for this source, flags, compiler and CPU, compiled if missing.

    Written under a temporary name and renamed, so concurrent processes never load a
    partial file. Raises OSError or subprocess errors when the build fails.
    """
    flags = _flags()
    parts = [SOURCE.read_bytes(), " ".join(flags).encode(), compiler.encode()]
    key = hashlib.sha256(b"\0".join([*parts, _cpu_signature().encode()])).hexdigest()[:16]
    library = directory / f"depthwise-{key}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(handle)
    try:
        subprocess.run(
            [compiler, *flags, str(SOURCE), "-o", partial],
            check=True,
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S,
        )
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return library


def _load(library: Path) -> Kernel:
    function = ctypes.CDLL(str(library)).tdanet_depthwise
    long, pointer = ctypes.c_long, ctypes.c_void_p
    function.argtypes = [pointer, long, long, long, pointer, long, pointer, long, long]
    function.argtypes += [pointer, long, pointer]
    function.restype = ctypes.c_int
    return function


@functools.cache
def kernel() -> Kernel | None:
    """The compiled kernel, or None where it cannot be built, loaded or trusted."""
    if os.environ.get("TDANET_NATIVE", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    try:
        function = _load(build(compiler, cache_dir()))
    # RuntimeError: no home folder for the cache; AttributeError: no such symbol.
    except (OSError, subprocess.SubprocessError, AttributeError, RuntimeError):
        return None
    return function if _reproduces_conv1d(function) else None


def depthwise(
    function: Kernel,
    x: torch.Tensor,
    taps: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    out: torch.Tensor,
    sums: torch.Tensor | None = None,
) -> None:
    """Run the kernel: x (batch, T, C) -> out (batch, F, C), both float32, contiguous, on
    the CPU; ``taps`` (K, C) the weight tap-major; ``sums`` (batch, 2, C) float64, if given,
    receives each item's per-channel sum and sum of squares of out over time."""
    batch, length, channels = x.shape
    status = function(
        x.data_ptr(),
        batch,
        length,
        channels,
        taps.data_ptr(),
        taps.shape[0],
        None if bias is None else bias.data_ptr(),
        stride,
        padding,
        out.data_ptr(),
        out.shape[1],
        None if sums is None else sums.data_ptr(),
    )
    if status != 0:
        raise MemoryError("tdanet native depthwise convolution: out of memory")


def _reproduces_conv1d(function: Kernel) -> bool:
    """Whether the kernel matches ``F.conv1d`` and torch's sums on a small case (channels
    not a multiple of the register block, both strides, edges)."""
    generator = torch.Generator().manual_seed(0)
    f32 = torch.float32  # whatever torch's default dtype is: the kernel reads float32
    x = torch.randn(2, 11, 70, generator=generator, dtype=f32)
    weight = torch.randn(70, 1, 5, generator=generator, dtype=f32)
    bias = torch.randn(70, generator=generator, dtype=f32)
    taps = weight[:, 0].t().contiguous()
    for stride in (1, 2):
        expected = F.conv1d(x.transpose(1, 2), weight, bias, stride, 2, 1, 70).transpose(1, 2)
        out = torch.full(expected.shape, float("nan"), dtype=f32)
        sums = torch.full((2, 2, 70), float("nan"), dtype=torch.float64)
        depthwise(function, x, taps, bias, stride, 2, out, sums)
        moments = torch.stack([expected.sum(1), (expected * expected).sum(1)], 1).double()
        if not (
            torch.allclose(out, expected, atol=1e-5)
            and torch.allclose(sums, moments, rtol=1e-5, atol=1e-4)
        ):
            return False
    return True

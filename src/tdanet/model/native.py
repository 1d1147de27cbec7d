"""The fast path's native kernels: small C functions, compiled on first use.

On a CPU, oneDNN spends 100-200 us on any depthwise convolution however short (about 290 of
them per TDANet call), a gLN takes a dozen small torch operations, and an LA product with
nearest upsampling one operation per run of repeated rows; on short inputs these per-call
costs dominate. ``native.c`` does each in one call: a depthwise convolution with its output's
moments and gLN map, a gLN applied in place (with a PReLU), a tensor's moments, the gLNs of
per-channel maps from moments, and the LA product. It is plain
C: the system's C compiler (``$CC``, else ``cc`` or ``gcc``) builds it once per machine with
``-march=native`` into ``$XDG_CACHE_HOME/tdanet/native`` (keyed by the source, the flags, the
compiler and the CPU), and it is loaded with ctypes.

Probed like the other version-specific operators: where there is no compiler, the build or
the load fails, or a kernel does not reproduce torch on a test case, :func:`kernels` is None
and callers use torch's operations. ``TDANET_NATIVE=0`` turns them off.
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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("native.c")
# -march=native: the build is for this CPU only, hence the CPU in the cache key.
# -fno-trapping-math: no code here reads FP exceptions; it lets the PReLU's select vectorise.
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-trapping-math", "-shared", "-fPIC")
# Some x86 tunings (e.g. znver1) default to 128-bit vectors; 256 runs 1.25x faster there.
X86_FLAGS = ("-mprefer-vector-width=256",)
# A build takes about half a second; this only bounds a compiler that hangs.
COMPILE_TIMEOUT_S = 120


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
    library = directory / f"kernels-{key}.so"
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


@dataclass(frozen=True)
class Kernels:
    """The loaded C functions (``native.c``); call them through the wrappers below."""

    depthwise: Callable[..., int]
    gln: Callable[..., int]
    moments: Callable[..., int]
    gln_of_map: Callable[..., None]
    la_product: Callable[..., None]


def _load(library: Path) -> Kernels:
    compiled = ctypes.CDLL(str(library))
    long, pointer, double = ctypes.c_long, ctypes.c_void_p, ctypes.c_double
    depthwise = compiled.tdanet_depthwise
    depthwise.argtypes = [pointer, long, long, long, pointer, long, pointer, long, long]
    depthwise.argtypes += [pointer, long, pointer, pointer, pointer, double, pointer]
    depthwise.restype = ctypes.c_int
    gln = compiled.tdanet_gln
    gln.argtypes = [pointer, long, long, long, pointer, pointer, double, ctypes.c_int]
    gln.argtypes += [ctypes.c_float]
    gln.restype = ctypes.c_int
    moments = compiled.tdanet_moments
    moments.argtypes = [pointer, long, long, long, pointer]
    moments.restype = ctypes.c_int
    gln_of_map = compiled.tdanet_gln_of_map
    gln_of_map.argtypes = [pointer, pointer, long, long, long, long, long, pointer, pointer]
    gln_of_map.argtypes += [pointer, pointer, pointer, double, pointer]
    gln_of_map.restype = None
    la_product = compiled.tdanet_la_product
    la_product.argtypes = [pointer, long, long, long, pointer, pointer, pointer, pointer, long]
    la_product.argtypes += [pointer]
    la_product.restype = None
    return Kernels(depthwise, gln, moments, gln_of_map, la_product)


@functools.cache
def kernels() -> Kernels | None:
    """The compiled kernels, or None where they cannot be built, loaded or trusted."""
    if os.environ.get("TDANET_NATIVE", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    try:
        loaded = _load(build(compiler, cache_dir()))
    # RuntimeError: no home folder for the cache; AttributeError: no such symbol.
    except (OSError, subprocess.SubprocessError, AttributeError, RuntimeError):
        return None
    return loaded if _reproduces_torch(loaded) else None


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def depthwise(
    compiled: Kernels,
    x: torch.Tensor,
    taps: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    out: torch.Tensor,
    sums: torch.Tensor | None = None,
    norm: tuple[torch.Tensor, torch.Tensor, float] | None = None,
    affine: torch.Tensor | None = None,
) -> None:
    """Depthwise convolution: x (batch, T, C) -> out (batch, F, C), float32, contiguous, on
    the CPU; ``taps`` (K, C) the weight tap-major. ``sums`` (batch, 2, C) float64, if given,
    receives each item's per-channel sum and sum of squares of out over time; with ``norm``
    = (gamma, beta, eps) of a gLN, ``affine`` (2, batch, 1, C) receives that gLN's map of
    out: ``gLN(out) == out * affine[0] + affine[1]``."""
    batch, length, channels = x.shape
    gamma, beta, eps = norm if norm is not None else (None, None, 0.0)
    status = compiled.depthwise(
        x.data_ptr(),
        batch,
        length,
        channels,
        taps.data_ptr(),
        taps.shape[0],
        _pointer(bias),
        stride,
        padding,
        out.data_ptr(),
        out.shape[1],
        _pointer(sums),
        _pointer(gamma),
        _pointer(beta),
        eps,
        None if norm is None else _pointer(affine),
    )
    if status != 0:
        raise MemoryError("tdanet native depthwise convolution: out of memory")


def gln_(
    compiled: Kernels,
    y: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
    slope: float | None = None,
) -> torch.Tensor:
    """The gLN (``gamma``, ``beta`` (C), ``eps``) of y (batch, T, C), float32, contiguous, on
    the CPU, in place, followed by a one-parameter PReLU of ``slope`` if given; returns y."""
    batch, length, channels = y.shape
    status = compiled.gln(
        y.data_ptr(),
        batch,
        length,
        channels,
        gamma.data_ptr(),
        beta.data_ptr(),
        eps,
        slope is not None,
        0.0 if slope is None else slope,
    )
    if status != 0:
        raise MemoryError("tdanet native gLN: out of memory")
    return y


def moments(compiled: Kernels, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (batch, T, C), float32, contiguous, on the CPU -> each item's per-channel sum and sum
    of squares over time, each (batch, C) float64 (views of one tensor)."""
    batch, length, channels = x.shape
    sums = x.new_empty((batch, 2, channels), dtype=torch.float64)
    if compiled.moments(x.data_ptr(), batch, length, channels, sums.data_ptr()) != 0:
        raise MemoryError("tdanet native moments: out of memory")
    return sums[:, 0], sums[:, 1]


def gln_of_map(
    compiled: Kernels,
    moments: tuple[torch.Tensor, torch.Tensor],
    length: int,
    weight: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """M gLNs (``gamma``, ``beta`` (M, C), ``eps``) of the per-channel maps
    ``weight * (a * x + b)`` of x (batch, ``length``, C), from x's ``moments`` (sum, sum of
    squares over time, each (batch, C) float64, channels contiguous) -> (scale, shift), each
    (M, batch, 1, C), with ``gLN_m(map_m(x)) == x * scale[m] + shift[m]``. ``weight``
    (M, C); ``a``, ``b`` (batch, 1, C), default 1 and 0. Float32 on the CPU."""
    s1, s2 = moments
    maps, channels = weight.shape
    batch = s1.shape[0]
    fits = [tuple(t.shape) == (maps, channels) for t in (weight, gamma, beta)]
    fits += [t is None or tuple(t.shape) == (batch, 1, channels) for t in (a, b)]
    fits += [s1.shape == s2.shape == (batch, channels), s1.stride() == s2.stride()]
    tensors = (weight, gamma, beta, a, b)
    if (
        not all(fits)
        or s1.stride(-1) != 1
        or not all(t is None or t.is_contiguous() for t in tensors)
    ):
        raise ValueError("gln_of_map: shapes or layouts do not fit")
    affine = weight.new_empty((2, maps, batch, 1, channels))
    compiled.gln_of_map(
        s1.data_ptr(),
        s2.data_ptr(),
        s1.stride(0),
        batch,
        channels,
        length,
        maps,
        weight.data_ptr(),
        _pointer(a),
        _pointer(b),
        gamma.data_ptr(),
        beta.data_ptr(),
        eps,
        affine.data_ptr(),
    )
    return affine[0], affine[1]


def la_product_(
    compiled: Kernels,
    d: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    index: torch.Tensor | None,
) -> torch.Tensor:
    """``(d * scale + offset) * up(gate) + up(shift)`` in place, returns d (batch, T, C):
    ``scale``, ``offset`` (batch, 1, C); ``gate``, ``shift`` (batch, T_g, C); ``up`` the
    nearest resize that reads guide row ``index[t]`` for row t (``index`` (T,) int64, None
    when T_g == T). All contiguous on the CPU, float32 but the index."""
    batch, length, channels = d.shape
    source = gate.shape[1]
    maps, guides = (batch, 1, channels), (batch, source, channels)
    expected = [maps, maps, guides, guides]
    if [tuple(t.shape) for t in (scale, offset, gate, shift)] != expected or (
        (source != length) if index is None else tuple(index.shape) != (length,)
    ):
        raise ValueError(f"la_product_: shapes do not fit d {tuple(d.shape)}")
    compiled.la_product(
        d.data_ptr(),
        batch,
        length,
        channels,
        scale.data_ptr(),
        offset.data_ptr(),
        gate.data_ptr(),
        shift.data_ptr(),
        source,
        _pointer(index),
    )
    return d


def _reproduces_torch(compiled: Kernels) -> bool:
    """Whether the kernels match torch on small cases (channels not a multiple of the
    register block, both strides, edges, an upsampling, several maps)."""
    generator = torch.Generator().manual_seed(0)
    f32 = torch.float32  # whatever torch's default dtype is: the kernels read float32

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=f32)

    def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
        return torch.allclose(a, b, rtol=1e-5, atol=atol)

    x, weight, bias, gamma, beta = (
        randn(2, 11, 70),
        randn(70, 1, 5),
        randn(70),
        randn(70),
        randn(70),
    )
    taps = weight[:, 0].t().contiguous()
    for stride in (1, 2):
        expected = F.conv1d(x.transpose(1, 2), weight, bias, stride, 2, 1, 70).transpose(1, 2)
        out = torch.full(expected.shape, float("nan"), dtype=f32)
        sums = torch.full((2, 2, 70), float("nan"), dtype=torch.float64)
        affine = torch.full((2, 2, 1, 70), float("nan"), dtype=f32)
        depthwise(compiled, x, taps, bias, stride, 2, out, sums, (gamma, beta, 1e-8), affine)
        exact = torch.stack([expected.sum(1), (expected * expected).sum(1)], 1).double()
        normed = _gln(expected, gamma, beta, 1e-8)
        if not (
            close(out, expected)
            and close(sums, exact, atol=1e-4)
            and close(out * affine[0] + affine[1], normed, atol=1e-4)
        ):
            return False
    y = randn(2, 9, 70)
    expected = F.leaky_relu(_gln(y, gamma, beta, 1e-8), 0.25)
    if not close(gln_(compiled, y.clone(), gamma, beta, 1e-8, 0.25), expected, atol=1e-4):
        return False
    d, scale, offset, gate, shift = (
        randn(2, 9, 70),
        randn(2, 1, 70),
        randn(2, 1, 70),
        randn(2, 4, 70),
        randn(2, 4, 70),
    )
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3])
    expected = (d * scale + offset) * gate[:, index] + shift[:, index]
    if not close(la_product_(compiled, d.clone(), scale, offset, gate, shift, index), expected):
        return False
    s1, s2 = moments(compiled, y)
    if not (close(s1, y.double().sum(1), atol=1e-4) and close(s2, y.double().pow(2).sum(1))):
        return False
    weights, gammas, betas, b = randn(3, 70), randn(3, 70), randn(3, 70), randn(2, 1, 70)
    scale, shift = gln_of_map(compiled, (s1, s2), 9, weights, gammas, betas, 1e-8, offset, b)
    mapped = weights[:, None, None] * (offset * y + b)
    return all(
        close(y * scale[m] + shift[m], _gln(mapped[m], gammas[m], betas[m], 1e-8), atol=1e-4)
        for m in range(3)
    )


def _gln(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """A gLN of x (batch, T, C) in float64, for the probe."""
    mean = x.double().mean((1, 2), keepdim=True)
    var = (x.double() - mean).pow(2).mean((1, 2), keepdim=True)
    return ((x - mean) / (var + eps).sqrt() * gamma + beta).to(x.dtype)

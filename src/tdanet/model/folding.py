"""Machinery shared by the blocks' folded (inference) forms; the forms live beside their blocks.

A folded form computes its eager block's function (equal up to float rounding) from the
block's weights, rearranged once; :class:`tdanet.model.tdanet.FastTDANet` assembles them.
What makes them fast (each step measured on one CPU thread; see docs/efficiency.md):

* Time-major layout: inside the separator every feature is (batch, frames, channels).
  Depthwise convolutions then run as one pass of a small C kernel that also yields their
  gLN (:mod:`tdanet.model.native`, which also applies the projections' gLNs and forms the LA
  products; channels-last oneDNN kernels and torch's operations where it cannot be built),
  nearest upsampling is a row gather and per-channel scales broadcast along the contiguous
  axis.
* Deferred global layer norms (gLN): each gLN is computed from per-channel moments (sum and
  sum of squares over time) and applied as one per-channel ``x * scale + shift``, folded
  into whatever reads it where that is exact (pooling, the LA products).
* A kernel-1 depthwise convolution is a per-channel affine map, so the gLN after it follows
  analytically from its input's moments and the convolution never runs (the eager model
  spends most of its time there: PyTorch runs such convs one channel at a time).
* The per-frame attention (LayerNorm -> + positions -> value -> output projection, x2) is one
  matrix on the normalised frames plus a position table projected once per call.
* The LA gate/shift products are formed at the coarse resolution before nearest upsampling
  (which commutes with element-wise maps) and broadcast over runs of repeated rows, and the
  top level's fused feature, which the released decoder never reads, is not computed.
* No fresh full-size mappings: the projections and the guides write into buffers of a
  :class:`FoldContext`, reused by every unfolding of the U-block. Large depthwise conv
  outputs are fresh where :func:`keep_freed_memory` makes the allocator reuse freed memory
  (what :func:`tdanet.fast.optimize_for_inference` turns on), else they go into such
  buffers through oneDNN's in-place conv; small ones are always fresh (zeroing a buffer
  costs more there than the allocation).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .ops import nearest_index

Moments = tuple[torch.Tensor, torch.Tensor]
Affine = tuple[torch.Tensor, torch.Tensor]
Run = tuple[int, int, int, int]

# Rows per slice when squaring for per-channel moments: the squares stay in cache.
_MOMENT_ROWS = 256
# Elements per partial dot product in total moments: float32 BLAS dots over millions of
# elements lose ~1e-5 relative accuracy, which the variance's cancellation would amplify.
_DOT_CHUNK = 4096
# Up to this many elements per item, total moments square a copy: fewer operations.
_SMALL_ELEMENTS = 1 << 18
# Conv outputs up to this many elements (2 MiB of float32) are fresh tensors, not scratch.
_FRESH_ELEMENTS = 1 << 19
# More runs than this and a gathered copy of the guides is cheaper than one op per run.
_MAX_RUNS = 64


def time_moments(x: torch.Tensor, scratch: torch.Tensor | None = None) -> Moments:
    """(batch, T, C) -> (sum over time, sum of squares over time), each (batch, C), float64.

    ``scratch`` (batch, >= ``_MOMENT_ROWS``, C), if given, holds the squares: no allocation.
    """
    parts = []
    for part in x.split(_MOMENT_ROWS, dim=1):
        if scratch is None:
            squares = part * part
        else:
            squares = torch.mul(part, part, out=scratch[:, : part.shape[1]])
        parts.append(squares.sum(1))
    square_sum = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)
    # Not sum(dtype=float64): on large tensors that runs 20x slower than float32 then convert.
    return x.sum(1).double(), square_sum.double()


def total_moments(x: torch.Tensor) -> Moments:
    """(batch, T, C) -> (sum, sum of squares) over time and channels, each (batch, 1), float64.

    Enough for a gLN that is not preceded by a per-channel gain: two passes at BLAS speed
    instead of per-channel reductions.
    """
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] <= _SMALL_ELEMENTS:  # one cascaded float32 sum is exact enough there
        return flat.sum(1, keepdim=True).double(), (flat * flat).sum(1, keepdim=True).double()
    whole = flat.shape[1] // _DOT_CHUNK * _DOT_CHUNK
    squares = []
    for item in flat:
        chunks = item[:whole].view(-1, 1, _DOT_CHUNK)
        tail = item[whole:]
        partial = torch.bmm(chunks, chunks.transpose(1, 2)).sum(dtype=torch.float64)
        squares.append(partial.add_(torch.dot(tail, tail)))
    return flat.sum(1, keepdim=True).double(), torch.stack(squares)[:, None]


def gln_scale_shift(
    moments: Moments,
    length: int,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
    gain: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> Affine:
    """Per-channel ``(scale, shift)`` with ``gLN(gain * x + offset) == x * scale + shift``.

    ``moments`` are :func:`time_moments` of x (batch, ``length``, C), or without a
    ``gain`` also :func:`total_moments`; ``gamma``, ``beta`` (C,) and ``eps`` are the gLN's.
    ``gain`` and ``offset`` broadcast against (batch, C) (default 1 and 0; leading dims stack
    several maps). Returns tensors of shape (..., batch, 1, C), ready to broadcast over
    (batch, T, C).
    """
    s1, s2 = moments  # float64: the variance is a difference of nearly equal numbers
    if gain is None and s1.device.type == "cpu":
        sums = torch.stack(moments, -1).sum(1).tolist()
        return _scalar_affine(sums, gamma.shape[-1] * length, gamma, beta, eps)
    if gain is not None:
        s1, s2 = gain * s1, gain * gain * s2
        if offset is not None:
            s2 = s2 + (2.0 * offset) * s1 + (offset * offset) * length
            s1 = s1 + offset * length
    count = gamma.shape[-1] * length
    # Both means in one reduction, then float32 once: only the variance needs float64.
    mean, square_mean = (torch.stack([s1, s2]).sum(-1, keepdim=True) / count).unbind()
    var = torch.addcmul(square_mean, mean, mean, value=-1.0).clamp_min_(0.0)
    mean, inv_std = torch.stack([mean, var.add_(eps).rsqrt_()]).to(gamma.dtype).unbind()
    scale = gamma * inv_std
    shift = torch.addcmul(beta, mean, scale, value=-1.0)
    if gain is not None:
        if offset is not None:
            shift = shift.addcmul_(offset, scale)
        scale = scale.mul_(gain)
    return scale.unsqueeze(-2), shift.unsqueeze(-2)


def total_affine(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> Affine:
    """Per-item ``(scale, shift)``, each (batch, 1, C), with ``gLN(x) == x * scale + shift``
    for x (batch, T, C); ``gamma``, ``beta`` (C,) and ``eps`` are the gLN's.

    On a CPU each item's mean and 1 / std are Python floats (float64) from the sums of
    :func:`total_moments`; elsewhere it is :func:`gln_scale_shift` of them.
    """
    moments = total_moments(x)
    if x.device.type != "cpu":
        return gln_scale_shift(moments, x.shape[1], gamma, beta, eps)
    sums = torch.cat(moments, 1).tolist()
    return _scalar_affine(sums, x.shape[1] * x.shape[2], gamma, beta, eps)


def _scalar_affine(
    sums: list[list[float]], count: int, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> Affine:
    """The gLN map from each item's [sum, sum of squares] over its ``count`` elements, given
    as Python floats: float64 arithmetic without per-item tensors."""
    channels = gamma.shape[-1]
    factors = []
    for first, second in sums:
        mean = first / count
        factors.append((mean, 1.0 / math.sqrt(max(second / count - mean * mean, 0.0) + eps)))
    if len(factors) == 1:  # one item: scalar arithmetic, no per-item tensors
        ((mean, inv_std),) = factors
        scale = gamma * inv_std
        return scale.view(1, 1, channels), torch.add(beta, scale, alpha=-mean).view(1, 1, channels)
    mean_t, inv_std_t = torch.tensor(factors, dtype=gamma.dtype).unsqueeze(-1).unbind(1)
    scale = gamma * inv_std_t
    return scale.unsqueeze(-2), torch.addcmul(beta, mean_t, scale, value=-1.0).unsqueeze(-2)


def nearest_runs(index: torch.Tensor) -> list[Run] | None:
    """A nearest-upsampling index as runs ``(row, source, count, repeat)``: rows
    ``row .. row + count * repeat`` read source rows ``source .. source + count``, each
    ``repeat`` times.

    ``index`` (T,) is a :func:`tdanet.model.ops.nearest_index`. None when it skips a source
    row (a downsampling) or needs more than ``_MAX_RUNS`` runs.
    """
    values, counts = torch.unique_consecutive(index, return_counts=True)
    if not torch.equal(values, torch.arange(len(values), device=values.device)):
        return None
    runs: list[Run] = []
    row = 0
    for source, repeat in enumerate(counts.tolist()):
        if runs and runs[-1][3] == repeat:
            first_row, first_source, count, _ = runs[-1]
            runs[-1] = (first_row, first_source, count + 1, repeat)
        elif len(runs) == _MAX_RUNS:
            return None
        else:
            runs.append((row, source, 1, repeat))
        row += repeat
    return runs


def upsampled_multiply_add_(
    d: torch.Tensor, mul: torch.Tensor, add: torch.Tensor, runs: list[Run]
) -> torch.Tensor:
    """``d * up(mul) + up(add)`` in place, ``up`` being the nearest upsampling given by ``runs``
    (:func:`nearest_runs`).

    d (batch, T, C); mul, add (batch, T_g, C). Each run broadcasts its guide rows over a
    repeat axis, so the upsampled guides are never written.
    """
    batch, _, channels = d.shape
    # The runs tile d and the guides in order: one split each instead of a narrow per run.
    parts = d.split([count * repeat for _, _, count, repeat in runs], dim=1)
    counts = [count for _, _, count, _ in runs]
    muls, adds = mul.unsqueeze(2).split(counts, dim=1), add.unsqueeze(2).split(counts, dim=1)
    for part, m, a, (_, _, count, repeat) in zip(parts, muls, adds, runs, strict=True):
        rows = part.view(batch, count, repeat, channels)
        torch.addcmul(a, rows, m, out=rows)
    return d


def frozen(tensor: object) -> torch.Tensor:
    """A detached copy of a weight, so a folded form never shares storage with its block."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a weight tensor, got {type(tensor).__name__}")
    return tensor.detach().clone()


class FoldContext:
    """Per-call caches of the folded forms: the shared U-block sees the same lengths in every
    unfolding."""

    def __init__(self) -> None:
        self.tensors: dict[tuple[object, ...], torch.Tensor] = {}
        self.runs: dict[tuple[int, int], list[Run] | None] = {}
        self.buffers: dict[tuple[object, ...], torch.Tensor] = {}

    def once(self, key: tuple[object, ...], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()``, called on the first request for ``key`` in this call only."""
        if key not in self.tensors:
            self.tensors[key] = compute()
        return self.tensors[key]

    def buffer(self, owner: object, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A scratch tensor of ``owner`` reused by every unfolding (its previous content is
        dead by then).

        Long inputs make every full-size tensor a fresh zeroed mapping from the OS, which
        costs as much as a pass over it; reusing avoids that.
        """
        key = (owner, *shape)
        if key not in self.buffers:
            self.buffers[key] = like.new_empty(shape)
        return self.buffers[key]

    def squares(self, x: torch.Tensor) -> torch.Tensor:
        """Scratch for :func:`time_moments` of x (batch, T, C)."""
        return self.buffer("squares", x, (x.shape[0], _MOMENT_ROWS, x.shape[2]))

    def index(self, source: int, length: int, device: torch.device) -> torch.Tensor:
        """:func:`tdanet.model.ops.nearest_index` (source -> length), cached."""
        return self.once(("nearest", source, length), lambda: nearest_index(source, length, device))

    def resize(self, x: torch.Tensor, length: int, owner: object = "resize") -> torch.Tensor:
        """Nearest resize along time, (..., T, C) -> (..., length, C), into scratch of ``owner``."""
        source = x.shape[-2]
        if source == length:
            return x
        index = self.index(source, length, x.device)
        shape = (*x.shape[:-2], length, x.shape[-1])
        return torch.index_select(x, -2, index, out=self.buffer(owner, x, shape))

    def upsampling(self, source: int, length: int, device: torch.device) -> list[Run] | None:
        """:func:`nearest_runs` of resizing source -> length, cached."""
        key = (source, length)
        if key not in self.runs:
            self.runs[key] = nearest_runs(self.index(source, length, device))
        return self.runs[key]


# glibc's mallopt parameters, and how much freed memory a process keeps: a few calls' tensors.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30
_freed_memory_kept = False


def native_kernels(x: torch.Tensor) -> native.Kernels | None:
    """:func:`tdanet.model.native.kernels` where they apply to x: float32 on the CPU with torch
    on one thread (the kernels use one; torch's operators use all it has)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.get_num_threads() != 1:
        return None
    return native.kernels()


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse in this process (and in processes it forks
    later); False where there is no ``mallopt`` (not glibc).

    By default glibc serves large allocations (over 128 KiB, adaptively up to 32 MiB) from
    fresh mappings that the kernel faults in and zeroes on first write and that are unmapped
    when freed, so every call of the fast path pays for its large tensors twice. Kept, a
    fresh tensor costs no more than a reused buffer and depthwise convolutions write new
    outputs directly (full-size TDANet, one thread: -11 % CPU time per call on 10 s and
    60 s). The process then holds on to up to 1 GiB that it freed.
    """
    global _freed_memory_kept
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt
        return False
    # Both at once: setting either turns off glibc's adaptive mmap threshold.
    kept = bool(
        mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES // 4) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
    )
    _freed_memory_kept = _freed_memory_kept or kept
    return kept


@functools.cache
def _conv_into() -> bool:
    """Whether oneDNN's in-place conv (``mkldnn._convolution_pointwise_``) runs and is exact,
    so that depthwise convolutions can write into reused buffers; probed on first use."""
    op = getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 1, 9, generator=generator).to(memory_format=torch.channels_last)
    w, b = torch.randn(4, 1, 1, 5, generator=generator), torch.randn(4, generator=generator)
    out = torch.zeros(2, 4, 1, 5).to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            op.binary(out, x, w, b, [0, 2], [1, 2], [1, 1], 4, "add", None, None, [], None)
    except RuntimeError:
        return False
    return torch.allclose(out, F.conv2d(x, w, b, (1, 2), (0, 2), 1, 4), atol=1e-6)


class DepthwiseConv(nn.Module):
    """A depthwise ``nn.Conv1d`` on time-major features: the native kernel
    (:mod:`tdanet.model.native`) where it runs, else a channels-last 2-D conv."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    taps: torch.Tensor | None

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.stride = int(conv.stride[0])
        self.padding = int(conv.padding[0])
        self.kernel = int(conv.kernel_size[0])
        self.groups = conv.groups
        self.register_buffer("weight", frozen(conv.weight).unsqueeze(2))
        self.register_buffer("bias", None if conv.bias is None else frozen(conv.bias))
        # (K, C): the native kernel's layout; None unless one input channel per output.
        plain = conv.groups == conv.in_channels == conv.out_channels
        self.register_buffer("taps", frozen(conv.weight)[:, 0].t().contiguous() if plain else None)

    def frames(self, length: int) -> int:
        """Output frames for ``length`` input frames."""
        return (length + 2 * self.padding - self.kernel) // self.stride + 1

    def native_pass(
        self,
        x: torch.Tensor,
        ctx: FoldContext,
        norm: tuple[torch.Tensor, torch.Tensor, float] | None = None,
        per_channel: bool = False,
    ) -> tuple[torch.Tensor, Moments | None, Affine | None] | None:
        """The convolution of x (batch, T, C) by :mod:`tdanet.model.native` -> (output,
        its :func:`time_moments` if ``per_channel``, the (scale, shift) (batch, 1, C) of the
        gLN ``norm`` = (gamma, beta, eps) of the output if given), all from one pass; None
        where the kernels do not run (:func:`native_kernels`)."""
        compiled = native_kernels(x)
        if compiled is None or self.taps is None:
            return None
        x = x.contiguous()
        batch, length, channels = x.shape
        frames = self.frames(length)
        shape = (batch, frames, channels)
        if _freed_memory_kept or batch * frames * channels <= _FRESH_ELEMENTS:
            out = x.new_empty(shape)
        else:
            out = ctx.buffer(self, x, shape)
        sums = x.new_empty((batch, 2, channels), dtype=torch.float64) if per_channel else None
        affine = None if norm is None else x.new_empty((2, batch, 1, channels))
        native.depthwise(
            compiled, x, self.taps, self.bias, self.stride, self.padding, out, sums, norm, affine
        )
        moments = None if sums is None else (sums[:, 0], sums[:, 1])
        return out, moments, None if affine is None else (affine[0], affine[1])

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, T, C) -> (batch, ceil(T / stride), C).

        On a CPU with oneDNN, unless :func:`keep_freed_memory` is in effect, an output over
        ``_FRESH_ELEMENTS`` is this module's scratch buffer in ``ctx`` (valid until the module
        runs again): a fresh one that large would cost a zero-filled mapping from the OS, as
        much time as the convolution itself.
        """
        computed = self.native_pass(x, ctx)
        if computed is not None:
            return computed[0]
        batch, length, channels = x.shape
        frames = self.frames(length)
        image = x.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        in_place = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not _freed_memory_kept
            and _conv_into()
        )
        # A small fresh output comes from the allocator's cache: cheaper than zeroing scratch.
        if not in_place or batch * frames * channels <= _FRESH_ELEMENTS:
            out = F.conv2d(
                image, self.weight, self.bias, (1, self.stride), (0, self.padding), 1, self.groups
            )
            return out.squeeze(2).transpose(1, 2).contiguous()
        out = ctx.buffer(self, x, (batch, frames, channels)).zero_()
        torch.ops.mkldnn._convolution_pointwise_.binary(
            out.transpose(1, 2).unsqueeze(2),
            image,
            self.weight,
            self.bias,
            [0, self.padding],
            [1, self.stride],
            [1, 1],
            self.groups,
            "add",
            None,
            None,
            [],
            None,
        )
        return out


class TimeMajor(nn.Module):
    """An eager module on (batch, C, T), run on time-major (batch, T, C) features: the folded
    form of a block that has no faster one. A copy in eval mode; the block is not touched."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).eval()

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, T, C) -> (batch, T, C')."""
        return self.module(x.transpose(1, 2)).transpose(1, 2)

"""The default inference path: same weights and outputs as the eager model, less time.

:class:`FastTDANet` computes the function of :class:`tdanet.model.TDANet` (equal up to float
rounding) with the weights rearranged once, at construction. What makes it fast (each step
measured on one CPU thread; see docs/efficiency.md):

* Time-major layout: inside the separator every feature is (batch, frames, channels).
  Depthwise convolutions then run as channels-last oneDNN kernels, nearest upsampling is a
  row gather and per-channel scales broadcast along the contiguous axis.
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
* No fresh full-size tensors: depthwise convolutions (through oneDNN's in-place conv), the
  projection and the guides write into buffers reused by every unfolding of the U-block.
"""

from __future__ import annotations

import copy
import functools
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .model import TDANet, TDANetConfig, as_batch, crop_to_input, pad_to_valid_length
from .model.attention import GlobalAttention, sinusoid_table
from .model.layers import ConvNorm, GlobalLayerNorm, LocalAttention
from .model.ops import nearest_index
from .model.tdanet import UBlock

Moments = tuple[torch.Tensor, torch.Tensor]
Affine = tuple[torch.Tensor, torch.Tensor]


# Rows per slice when squaring for per-channel moments: the squares stay in cache.
_MOMENT_ROWS = 256
# Elements per partial dot product in total moments: float32 BLAS dots over millions of
# elements lose ~1e-5 relative accuracy, which the variance's cancellation would amplify.
_DOT_CHUNK = 4096


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
    return x.sum(1).double(), torch.stack(parts).double().sum(0)


def total_moments(x: torch.Tensor) -> Moments:
    """(batch, T, C) -> (sum, sum of squares) over time and channels, each (batch, 1), float64.

    Enough for a gLN that is not preceded by a per-channel gain: two passes at BLAS speed
    instead of per-channel reductions.
    """
    flat = x.reshape(x.shape[0], -1)
    squares = []
    for item in flat:
        whole = item.shape[0] // _DOT_CHUNK * _DOT_CHUNK
        chunks = item[:whole].view(-1, 1, _DOT_CHUNK)
        tail = item[whole:]
        partial = torch.bmm(chunks, chunks.transpose(1, 2)).double().sum()
        squares.append(partial + torch.dot(tail, tail).double())
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
    if gain is not None:
        s1, s2 = gain * s1, gain * gain * s2
        if offset is not None:
            s2 = s2 + (2.0 * offset) * s1 + (offset * offset) * length
            s1 = s1 + offset * length
    count = gamma.shape[-1] * length
    mean = s1.sum(-1, keepdim=True) / count
    var = (s2.sum(-1, keepdim=True) / count - mean * mean).clamp_min(0.0)
    scale = gamma * torch.rsqrt(var + eps)
    shift = beta - mean * scale
    if gain is not None:
        if offset is not None:
            shift = shift + offset * scale
        scale = gain * scale
    return scale.to(gamma.dtype).unsqueeze(-2), shift.to(gamma.dtype).unsqueeze(-2)


Run = tuple[int, int, int, int]

# More runs than this and a gathered copy of the guides is cheaper than one op per run.
_MAX_RUNS = 64


def nearest_runs(index: torch.Tensor) -> list[Run] | None:
    """A nearest-upsampling index as runs ``(row, source, count, repeat)``: rows
    ``row .. row + count * repeat`` read source rows ``source .. source + count``, each
    ``repeat`` times.

    ``index`` (T,) is a :func:`~tdanet.model.ops.nearest_index`. None when it skips a source row (a
    downsampling) or needs more than ``_MAX_RUNS`` runs.
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


def _frozen(tensor: object) -> torch.Tensor:
    """A detached copy of a weight, so the fast model never shares storage with the model."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a weight tensor, got {type(tensor).__name__}")
    return tensor.detach().clone()


class _Context:
    """Per-call caches: the shared U-block sees the same lengths in every unfolding."""

    def __init__(self) -> None:
        self.indices: dict[tuple[int, int], torch.Tensor] = {}
        self.positions: dict[int, torch.Tensor] = {}
        self.runs: dict[tuple[int, int], list[Run] | None] = {}
        self.buffers: dict[tuple[object, ...], torch.Tensor] = {}

    def buffer(self, name: str, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A scratch tensor reused by every unfolding (its previous content is dead by then).

        Long inputs make every full-size tensor a fresh zeroed mapping from the OS, which
        costs as much as a pass over it; reusing avoids that.
        """
        key = (name, *shape)
        if key not in self.buffers:
            self.buffers[key] = like.new_empty(shape)
        return self.buffers[key]

    def squares(self, x: torch.Tensor) -> torch.Tensor:
        """Scratch for :func:`time_moments` of x (batch, T, C)."""
        return self.buffer("squares", x, (x.shape[0], _MOMENT_ROWS, x.shape[2]))

    def resize(self, x: torch.Tensor, length: int, name: str = "resize") -> torch.Tensor:
        """Nearest resize along time, (..., T, C) -> (..., length, C), into scratch ``name``."""
        source = x.shape[-2]
        if source == length:
            return x
        index = self.index(source, length, x.device)
        shape = (*x.shape[:-2], length, x.shape[-1])
        return torch.index_select(x, -2, index, out=self.buffer(name, x, shape))

    def index(self, source: int, length: int, device: torch.device) -> torch.Tensor:
        """:func:`~tdanet.model.ops.nearest_index` (source -> length), cached."""
        key = (source, length)
        if key not in self.indices:
            self.indices[key] = nearest_index(source, length, device)
        return self.indices[key]

    def upsampling(self, source: int, length: int, device: torch.device) -> list[Run] | None:
        """:func:`nearest_runs` of resizing source -> length, cached."""
        key = (source, length)
        if key not in self.runs:
            self.runs[key] = nearest_runs(self.index(source, length, device))
        return self.runs[key]


class _Norm(nn.Module):
    """A gLN's gain, bias and eps, copied."""

    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, norm: GlobalLayerNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.register_buffer("gamma", _frozen(norm.gamma))
        self.register_buffer("beta", _frozen(norm.beta))

    def affine(
        self,
        moments: Moments,
        length: int,
        gain: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> Affine:
        """:func:`gln_scale_shift` with this norm's parameters."""
        return gln_scale_shift(moments, length, self.gamma, self.beta, self.eps, gain, offset)


def normalized_projection(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    norm: _Norm,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``gLN(x @ weight + bias)``: x (batch, T, C_in), weight (C_in, C_out) -> (batch, T, C_out).

    The product is written (into ``out`` if given), then normalised in place.
    """
    y = torch.baddbmm(bias, x, weight.expand(x.shape[0], -1, -1), out=out)
    scale, shift = norm.affine(total_moments(y), y.shape[1])
    return torch.addcmul(shift, y, scale, out=y)


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


class _DepthwiseConv(nn.Module):
    """A depthwise convolution on time-major features, run as a channels-last 2-D conv."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.stride = int(conv.stride[0])
        self.padding = int(conv.padding[0])
        self.kernel = int(conv.kernel_size[0])
        self.groups = conv.groups
        self.register_buffer("weight", _frozen(conv.weight).unsqueeze(2))
        self.register_buffer("bias", None if conv.bias is None else _frozen(conv.bias))

    def forward(self, x: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """(batch, T, C) -> (batch, ceil(T / stride), C).

        On a CPU with oneDNN, the output is this module's scratch buffer in ``ctx`` (valid
        until the module runs again): a fresh full-size output would cost a zero-filled
        mapping from the OS, as much time as the convolution itself.
        """
        image = x.transpose(1, 2).unsqueeze(2)
        if x.device.type != "cpu" or x.dtype != torch.float32 or not _conv_into():
            out = F.conv2d(
                image, self.weight, self.bias, (1, self.stride), (0, self.padding), 1, self.groups
            )
            return out.squeeze(2).transpose(1, 2).contiguous()
        batch, length, channels = x.shape
        frames = (length + 2 * self.padding - self.kernel) // self.stride + 1
        out = ctx.buffer(f"conv{id(self)}", x, (batch, frames, channels)).zero_()
        torch.ops.mkldnn._convolution_pointwise_.binary(
            out.transpose(1, 2).unsqueeze(2),
            image.contiguous(memory_format=torch.channels_last),
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


class _DepthwiseNorm(nn.Module):
    """A depthwise ``ConvNorm`` (kernel > 1, no activation): the conv and its gLN, apart."""

    def __init__(self, block: ConvNorm) -> None:
        super().__init__()
        self.conv = _DepthwiseConv(block.conv)
        self.norm = _Norm(block.norm)

    def forward(
        self, x: torch.Tensor, ctx: _Context, per_channel: bool = False
    ) -> tuple[torch.Tensor, Moments, Affine]:
        """(batch, T, C) -> raw conv output d, its moments, and (a, b): ConvNorm = d * a + b.

        The moments are per channel (:func:`time_moments`) only when ``per_channel``.
        """
        d = self.conv(x, ctx)
        moments = time_moments(d, ctx.squares(d)) if per_channel else total_moments(d)
        return d, moments, self.norm.affine(moments, d.shape[1])


class _PointwiseFusions(nn.Module):
    """All ``loc_glo_fus`` LAs (kernel-1 depthwise ConvNorms, no bias), as per-channel maps."""

    local_weight: torch.Tensor
    glob_weight: torch.Tensor
    glob_gamma: torch.Tensor
    glob_beta: torch.Tensor

    def __init__(self, fusions: nn.ModuleList) -> None:
        super().__init__()
        las: list[LocalAttention] = list(fusions)  # type: ignore[arg-type]
        self.local = nn.ModuleList([_Norm(la.local_embedding.norm) for la in las])
        self.register_buffer(
            "local_weight",
            torch.stack([_frozen(la.local_embedding.conv.weight[:, 0, 0]) for la in las]),
        )
        branches = [br for la in las for br in (la.global_act, la.global_embedding)]
        for branch in (la.local_embedding for la in las):
            _check_pointwise(branch)
        for branch in branches:
            _check_pointwise(branch)
        # Stacked gains of every (act, embedding) branch: one vectorised gLN for all levels.
        self.register_buffer(
            "glob_weight",
            torch.stack([_frozen(br.conv.weight[:, 0, 0]) for br in branches])[:, None],
        )
        self.register_buffer(
            "glob_gamma", torch.stack([_frozen(br.norm.gamma) for br in branches])[:, None]
        )
        self.register_buffer(
            "glob_beta", torch.stack([_frozen(br.norm.beta) for br in branches])[:, None]
        )
        self.glob_eps = branches[0].norm.eps

    def guides(self, glob: torch.Tensor, ctx: _Context) -> tuple[torch.Tensor, torch.Tensor]:
        """glob (batch, T_g, N) -> gate and shift of every level, each (levels, batch, T_g, N).

        Both are views of one scratch buffer of the call.
        """
        scale, shift = gln_scale_shift(
            time_moments(glob, ctx.squares(glob)),
            glob.shape[1],
            self.glob_gamma,
            self.glob_beta,
            self.glob_eps,
            self.glob_weight,
        )
        out = ctx.buffer("guides", glob, (self.glob_weight.shape[0], *glob.shape))
        torch.addcmul(shift, glob, scale, out=out)
        return out[0::2].sigmoid_(), out[1::2]

    def forward(
        self,
        level: int,
        d: torch.Tensor,
        d_moments: Moments,
        d_affine: Affine,
        gate: torch.Tensor,
        shift: torch.Tensor,
        ctx: _Context,
    ) -> torch.Tensor:
        """LA of level ``d * a + b`` (batch, T, N) with the global guides -> (batch, T, N)."""
        a, b = (t.squeeze(-2) for t in d_affine)
        weight = self.local_weight[level]
        norm = cast(_Norm, self.local[level])
        scale, offset = norm.affine(d_moments, d.shape[1], weight * a, weight * b)
        return _gate_and_shift(d, scale, offset, gate[level], shift[level], ctx)


def _check_pointwise(block: ConvNorm) -> None:
    if block.conv.kernel_size[0] != 1 or block.conv.bias is not None:
        raise ValueError("loc_glo_fus: expected kernel-1 depthwise ConvNorms without bias")


def _gate_and_shift(
    d: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    ctx: _Context,
) -> torch.Tensor:
    """``(d * scale + offset) * up(gate) + up(shift)``: d (batch, T, N), guides (batch, T_g, N).

    Computed as ``d * up(scale * gate) + up(offset * gate + shift)``, forming the products at
    the coarser of the two lengths. Overwrites and returns ``d``, and overwrites the guides.
    """
    length = d.shape[1]
    if gate.shape[1] > length:
        gate, shift = ctx.resize(gate, length, "gate"), ctx.resize(shift, length, "shift")
    add = shift.addcmul_(offset, gate)
    mul = gate.mul_(scale)
    source = mul.shape[1]
    if source == length:
        return torch.addcmul(add, d, mul, out=d)
    runs = ctx.upsampling(source, length, d.device)
    if runs is not None:
        return _upsampled_multiply_add_(d, mul, add, runs)
    both = ctx.resize(torch.cat([mul, add], dim=-1), length)
    mul, add = both.split(d.shape[-1], dim=-1)
    return torch.addcmul(add, d, mul, out=d)


def _upsampled_multiply_add_(
    d: torch.Tensor, mul: torch.Tensor, add: torch.Tensor, runs: list[Run]
) -> torch.Tensor:
    """``d * up(mul) + up(add)`` in place, ``up`` being the nearest upsampling given by ``runs``
    (:func:`nearest_runs`).

    d (batch, T, C); mul, add (batch, T_g, C). Each run broadcasts its guide rows over a
    repeat axis, so the upsampled guides are never written.
    """
    batch, _, channels = d.shape
    for row, source, count, repeat in runs:
        rows = d[:, row : row + count * repeat].view(batch, count, repeat, channels)
        guides = slice(source, source + count)
        torch.addcmul(add[:, guides, None], rows, mul[:, guides, None], out=rows)
    return d


class _DepthwiseFusion(nn.Module):
    """``last_layer.i``: an LA whose three branches are kernel-5 depthwise ConvNorms."""

    def __init__(self, la: LocalAttention) -> None:
        super().__init__()
        self.local = _DepthwiseNorm(la.local_embedding)
        self.act = _DepthwiseNorm(la.global_act)
        self.embed = _DepthwiseNorm(la.global_embedding)

    def forward(self, local: torch.Tensor, glob: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """local (batch, T, N), glob (batch, T_g, N) -> (batch, T, N)."""
        dl, _, (scale, offset) = self.local(local, ctx)
        ga, _, (ga_scale, ga_shift) = self.act(glob, ctx)
        ge, _, (ge_scale, ge_shift) = self.embed(glob, ctx)
        # In place: ga and ge are this step's own conv outputs.
        gate = torch.addcmul(ga_shift, ga, ga_scale, out=ga).sigmoid_()
        shift = torch.addcmul(ge_shift, ge, ge_scale, out=ge)
        return _gate_and_shift(dl, scale, offset, gate, shift, ctx)


class _FrameAttention(nn.Module):
    """The GA module in ``attention="frame"`` mode with the attention folded into one matrix.

    ``2 * out_proj(v_proj(LN(x) + pe))`` per frame is ``LN0(x) @ A + P[t]`` with
    ``A = 2 diag(g) Wv^T Wo^T`` (g, b: the LayerNorm's affine; LN0: LayerNorm without it) and
    ``P[t] = 2 ((b + pe[t]) Wv^T Wo^T + bv Wo^T + bo)`` (:meth:`position_table`).
    """

    matrix: torch.Tensor
    pos_matrix: torch.Tensor
    pos_bias: torch.Tensor
    pe: torch.Tensor
    out_gain: torch.Tensor
    out_bias: torch.Tensor
    fc1: torch.Tensor
    fc2: torch.Tensor

    def __init__(self, globalatt: GlobalAttention) -> None:
        super().__init__()
        mha = globalatt.attn
        channels = mha.pos_enc.channels
        self.channels = channels
        self.in_eps = mha.attn_in_norm.eps
        dtype = mha.attn.in_proj_weight.dtype
        in_w = mha.attn.in_proj_weight.detach().double()[2 * channels :]
        in_b = mha.attn.in_proj_bias.detach().double()[2 * channels :]
        out_w = mha.attn.out_proj.weight.detach().double()
        out_b = mha.attn.out_proj.bias.detach().double()
        project = 2.0 * in_w.t() @ out_w.t()  # (N, N): rows in, columns out
        gain = mha.attn_in_norm.weight.detach().double()
        bias = mha.attn_in_norm.bias.detach().double()
        self.register_buffer("matrix", (gain[:, None] * project).to(dtype))
        self.register_buffer("pos_matrix", project.to(dtype))
        self.register_buffer(
            "pos_bias", (bias @ project + 2.0 * (in_b @ out_w.t() + out_b)).to(dtype)
        )
        self.register_buffer("pe", _frozen(mha.pos_enc.pe[0]))
        self.register_buffer("out_gain", _frozen(mha.norm.weight))
        self.register_buffer("out_bias", _frozen(mha.norm.bias))
        self.out_eps = mha.norm.eps
        mlp = globalatt.mlp
        self.register_buffer("fc1", _frozen(mlp.fc1.conv.weight[..., 0]).t())
        self.fc1_norm = _Norm(mlp.fc1.norm)
        self.dwconv = _DepthwiseConv(mlp.dwconv)
        self.register_buffer("fc2", _frozen(mlp.fc2.conv.weight[..., 0]).t())
        self.fc2_norm = _Norm(mlp.fc2.norm)

    def position_table(self, frames: int) -> torch.Tensor:
        """(frames, N): the projected position term P for positions 0..frames-1."""
        if frames <= self.pe.shape[0]:
            pe = self.pe[:frames]
        else:
            pe = sinusoid_table(frames, self.channels).to(self.pe)
        return torch.addmm(self.pos_bias, pe, self.pos_matrix)

    def forward(self, x: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """(batch, frames, N) -> same shape."""
        frames = x.shape[1]
        if frames not in ctx.positions:
            ctx.positions[frames] = self.position_table(frames)
        h = F.layer_norm(x, (self.channels,), None, None, self.in_eps)
        h = torch.matmul(h, self.matrix).add_(ctx.positions[frames])
        x = x + F.layer_norm(h, (self.channels,), self.out_gain, self.out_bias, self.out_eps)
        h = torch.matmul(x, self.fc1)
        scale, shift = self.fc1_norm.affine(total_moments(h), frames)
        h = F.relu(self.dwconv(torch.addcmul(shift, h, scale), ctx))
        h = torch.matmul(h, self.fc2)
        scale, shift = self.fc2_norm.affine(total_moments(h), frames)
        return torch.addcmul(x + shift, h, scale)


class _EagerAttention(nn.Module):
    """The GA module run by the eager code (``attention="sequence"``), on time-major data."""

    def __init__(self, globalatt: GlobalAttention) -> None:
        super().__init__()
        self.module = copy.deepcopy(globalatt).eval()

    def forward(self, x: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """(batch, frames, N) -> same shape."""
        return self.module(x.transpose(1, 2)).transpose(1, 2)


class _FastUBlock(nn.Module):
    """The shared U-block on time-major features; see the module docstring."""

    proj_weight: torch.Tensor
    proj_bias: torch.Tensor
    res_weight: torch.Tensor
    res_bias: torch.Tensor

    def __init__(self, unet: UBlock, config: TDANetConfig) -> None:
        super().__init__()
        self.depth = config.upsampling_depth
        proj = unet.proj_1x1
        self.register_buffer("proj_weight", _frozen(proj.conv.weight[..., 0]).t())
        self.register_buffer("proj_bias", _frozen(proj.conv.bias))
        self.proj_norm = _Norm(proj.norm)
        self.proj_slope = float(_frozen(proj.act.weight).item())
        self.levels = nn.ModuleList(
            [_DepthwiseNorm(cast(ConvNorm, block)) for block in unet.spp_dw]
        )
        self.attention: nn.Module = (
            _FrameAttention(unet.globalatt)
            if config.attention == "frame"
            else _EagerAttention(unet.globalatt)
        )
        self.fusions = _PointwiseFusions(unet.loc_glo_fus)
        self.decoder = nn.ModuleList(
            [_DepthwiseFusion(cast(LocalAttention, la)) for la in unet.last_layer]
        )
        self.register_buffer("res_weight", _frozen(unet.res_conv.weight[..., 0]).t())
        self.register_buffer("res_bias", _frozen(unet.res_conv.bias))
        top = self.depth - 2
        # Fused levels the decoder reads: 0..S-1 and the guide of its first step.
        self.needed = sorted(set(range(top + 1)) | {(top - 1) % self.depth})

    def forward(self, x: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """(batch, frames, out_channels) -> same shape."""
        batch, frames, _ = x.shape
        shape = (batch, frames, self.proj_weight.shape[1])
        h = normalized_projection(
            x, self.proj_weight, self.proj_bias, self.proj_norm, ctx.buffer("proj", x, shape)
        )
        h = F.leaky_relu_(h, self.proj_slope)  # a one-parameter PReLU
        raw: list[tuple[torch.Tensor, Moments, Affine]] = []  # level k = d * a + b
        for k, level in enumerate(self.levels):
            if raw:
                d, _, (a, b) = raw[-1]
                h = torch.addcmul(b, d, a, out=ctx.buffer("level", d, d.shape))
            raw.append(level(h, ctx, per_channel=k in self.needed))
        d, _, (a, b) = raw[-1]
        top_length = d.shape[1]
        glob = torch.addcmul(b, d, a)
        for d, _, (a, b) in raw[:-1]:
            # Average pooling commutes with the per-channel affine map of the gLN.
            pooled = F.adaptive_avg_pool1d(d.transpose(1, 2), top_length).transpose(1, 2)
            glob = glob + torch.addcmul(b, pooled, a)
        glob = self.attention(glob, ctx)
        gate, shift = self.fusions.guides(glob, ctx)
        fused = {k: self.fusions(k, *raw[k], gate, shift, ctx) for k in self.needed}
        top = self.depth - 2
        y = self.decoder[top](fused[top], fused[(top - 1) % self.depth], ctx)
        for k in range(top - 1, -1, -1):
            y = self.decoder[k](fused[k], y, ctx)
        out = torch.addmm(
            (x + self.res_bias).view(batch * frames, -1),
            y.view(batch * frames, -1),
            self.res_weight,
        )
        return out.view(batch, frames, -1)


class FastTDANet(nn.Module):
    """Inference-only TDANet: (batch, T) -> (batch, C, T), equal to the eager model's output.

    Built from a :class:`TDANet`, which is not modified (every weight is copied); ``config``
    is the model's. Runs without autograd.
    """

    encoder: torch.Tensor
    bottleneck_weight: torch.Tensor
    bottleneck_bias: torch.Tensor
    concat_weight: torch.Tensor
    concat_bias: torch.Tensor
    concat_slope: torch.Tensor
    mask_slope: torch.Tensor
    mask_weight: torch.Tensor
    mask_bias: torch.Tensor
    decoder: torch.Tensor

    def __init__(self, model: TDANet) -> None:
        super().__init__()
        self.config = model.config
        self.register_buffer("encoder", _frozen(model.encoder.weight))
        self.ln = _Norm(model.ln)
        self.register_buffer("bottleneck_weight", _frozen(model.bottleneck.weight[..., 0]).t())
        self.register_buffer("bottleneck_bias", _frozen(model.bottleneck.bias))
        separator = model.sm
        self.num_blocks = separator.num_blocks
        self.unet = _FastUBlock(separator.unet, model.config)
        concat_conv, concat_act = separator.concat_block
        self.register_buffer("concat_weight", _frozen(concat_conv.weight)[:, 0, 0])
        self.register_buffer("concat_bias", _frozen(concat_conv.bias))
        self.register_buffer("concat_slope", _frozen(concat_act.weight))
        mask_act, mask_conv = model.mask_net
        self.register_buffer("mask_slope", _frozen(mask_act.weight))
        self.register_buffer("mask_weight", _frozen(mask_conv.weight)[..., 0].t())
        self.register_buffer("mask_bias", _frozen(mask_conv.bias))
        self.register_buffer("decoder", _frozen(model.decoder.weight))
        self.eval()

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, T) or (T,) -> (batch, num_sources, T)."""
        waveform = as_batch(waveform)
        config = self.config
        kernel, hop = config.kernel_size, config.hop_size
        padded, _ = pad_to_valid_length(waveform, kernel, hop)
        embedding = F.conv1d(padded.unsqueeze(1), self.encoder, stride=hop, padding=kernel // 2)
        embedding = embedding.transpose(1, 2).contiguous()  # (batch, frames, K)
        batch, frames, _ = embedding.shape
        scale, shift = self.ln.affine(total_moments(embedding), frames)
        x0 = torch.matmul(torch.addcmul(shift, embedding, scale), self.bottleneck_weight)
        x0 = x0.add_(self.bottleneck_bias)
        ctx = _Context()
        x = self.unet(x0, ctx)
        for _ in range(1, self.num_blocks):
            h = torch.addcmul(self.concat_bias, x0 + x, self.concat_weight)
            x = self.unet(F.prelu(h, self.concat_slope), ctx)
        masks = torch.matmul(F.prelu(x, self.mask_slope), self.mask_weight).add_(self.mask_bias)
        masks = F.relu(masks).view(batch, frames, config.num_sources, -1)
        masked = masks * embedding.unsqueeze(2)  # (batch, frames, C, K)
        masked = masked.view(batch, frames, -1).transpose(1, 2)
        decoded = F.conv_transpose1d(masked, self.decoder, stride=hop, padding=kernel // 2)
        return crop_to_input(decoded, kernel, hop, waveform.shape[-1])


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """The fast module computing ``model``'s output (batch, T) -> (batch, C, T).

    A :class:`TDANet` becomes a :class:`FastTDANet` (the model itself is not modified;
    the result has its ``config``); any other module is returned unchanged.
    """
    if isinstance(model, TDANet):
        return FastTDANet(model)
    return model

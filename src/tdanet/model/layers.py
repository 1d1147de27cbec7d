"""Convolution, normalisation and fusion building blocks of TDANet, each with its folded
(inference) form beside it (:mod:`tdanet.model.folding`)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from . import native
from .folding import (
    Affine,
    DepthwiseConv,
    FoldContext,
    Moments,
    frozen,
    gln_scale_shift,
    native_kernels,
    time_moments,
    total_affine,
    upsampled_multiply_add_,
)
from .ops import nearest_resize


class GlobalLayerNorm(nn.Module):
    """Global layer norm (gLN): normalise each item over channels and time together.

    Population variance, ``eps`` added inside the square root, then a per-channel gain
    ``gamma`` and bias ``beta`` (names as in the release checkpoints). With ``wide`` set
    the statistics are reduced in float64 (ONNX export: onnxruntime's float32 reductions
    over a whole item lose accuracy that 16 unfoldings amplify).
    """

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.wide = False
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        if not self.wide:  # a group norm of one group is this norm, in one fused kernel
            return F.group_norm(x, 1, self.gamma, self.beta, self.eps)
        stats = x.to(torch.float64)
        mean = stats.mean(dim=(1, 2), keepdim=True)
        var = (stats - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        # 1 / std rounded once to float32: closer to float64 than a division.
        x = (x - mean.to(x.dtype)) * torch.rsqrt(var + self.eps).to(x.dtype)
        return x * self.gamma[:, None] + self.beta[:, None]


class FoldedNorm(nn.Module):
    """A :class:`GlobalLayerNorm` applied from moments: its gain, bias and eps, copied."""

    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, norm: GlobalLayerNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.register_buffer("gamma", frozen(norm.gamma))
        self.register_buffer("beta", frozen(norm.beta))

    def affine(
        self,
        moments: Moments,
        length: int,
        gain: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> Affine:
        """:func:`~tdanet.model.folding.gln_scale_shift` with this norm's parameters."""
        return gln_scale_shift(moments, length, self.gamma, self.beta, self.eps, gain, offset)

    def of(self, x: torch.Tensor) -> Affine:
        """This gLN of x (batch, T, C) as ``x * scale + shift``
        (:func:`~tdanet.model.folding.total_affine`)."""
        return total_affine(x, self.gamma, self.beta, self.eps)


class ChannelAffine(nn.Conv1d):
    """A depthwise ``nn.Conv1d`` of kernel 1 (same weights, same state-dict keys) computed as
    the per-channel affine map it is: PyTorch runs a grouped convolution one group at a time,
    a fifth of a demo model's training step."""

    def __init__(self, channels: int, bias: bool = True) -> None:
        super().__init__(channels, channels, 1, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        weight = self.weight.view(1, -1, 1)
        if self.bias is None:
            return x * weight
        return torch.addcmul(self.bias.view(1, -1, 1), x, weight)


def _tap_spans(tap: int, padding: int, length: int) -> tuple[slice, slice]:
    """Where tap ``tap`` of a stride-1 "same" convolution reads: ``y[out] += w[tap] * x[in]``
    for (output slice, input slice), since ``y[t]`` reads ``x[t + tap - padding]``."""
    shift = tap - padding
    return (
        slice(max(0, -shift), length - max(0, shift)),
        slice(max(0, shift), length - max(0, -shift)),
    )


class _ShiftedTaps(torch.autograd.Function):
    """A depthwise stride-1 "same" convolution as K shifted multiply-adds, and its backward
    the same way: oneDNN's depthwise backward is 2-3x slower on training shapes."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        taps, length = weight.shape[-1], x.shape[-1]
        padding = (taps - 1) // 2
        w = weight.view(-1, taps, 1)
        centre = w[:, padding]
        y = x * centre if bias is None else torch.addcmul(bias.view(-1, 1), x, centre)
        for tap in range(taps):
            if tap != padding:
                out, inp = _tap_spans(tap, padding, length)
                y[..., out].addcmul_(x[..., inp], w[:, tap])
        return y

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        taps, length = weight.shape[-1], x.shape[-1]
        padding = (taps - 1) // 2
        w = weight.view(-1, taps, 1)
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        grad_x = grad_w = grad_b = None
        if needs[0]:
            grad_x = grad * w[:, padding]
            for tap in range(taps):
                if tap != padding:
                    out, inp = _tap_spans(tap, padding, length)
                    grad_x[..., inp].addcmul_(grad[..., out], w[:, tap])
        if needs[1]:
            columns = []
            for tap in range(taps):
                out, inp = _tap_spans(tap, padding, length)
                columns.append((grad[..., out] * x[..., inp]).sum((0, 2)))
            grad_w = torch.stack(columns, 1).view_as(weight)
        if needs[2]:  # False without a bias
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


class DepthwiseConv1d(nn.Conv1d):
    """A depthwise stride-1 ``nn.Conv1d`` with odd kernel and "same" padding (same weights,
    same state-dict keys) that trains through :class:`_ShiftedTaps`; in evaluation or
    without gradients it is the plain convolution (what export and the profiler see)."""

    def __init__(self, channels: int, kernel_size: int, bias: bool = True) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        if self.training and torch.is_grad_enabled():
            return cast(torch.Tensor, _ShiftedTaps.apply(x, self.weight, self.bias))
        return super().forward(x)


class ConvNorm(nn.Module):
    """Conv1d followed by global layer norm (and an optional one-parameter PReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.conv: nn.Conv1d
        depthwise = stride == 1 and groups == in_channels == out_channels
        if depthwise and kernel_size == 1:
            self.conv = ChannelAffine(in_channels, bias=bias)
        elif depthwise and kernel_size % 2 == 1:
            self.conv = DepthwiseConv1d(in_channels, kernel_size, bias=bias)
        else:
            self.conv = nn.Conv1d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=bias,
            )
        self.norm = GlobalLayerNorm(out_channels)
        self.act: nn.Module = nn.PReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, frames) -> (batch, out_channels, ceil(frames / stride))."""
        return self.act(self.norm(self.conv(x)))


class FoldedProjection(nn.Module):
    """A pointwise :class:`ConvNorm` (kernel 1, no groups) on time-major features."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, block: ConvNorm) -> None:
        super().__init__()
        conv = block.conv
        if conv.kernel_size[0] != 1 or conv.groups != 1:
            raise ValueError("FoldedProjection: expected a kernel-1 ConvNorm without groups")
        self.register_buffer("weight", frozen(conv.weight[..., 0]).t())
        # A zero bias keeps one GEMM that writes straight into the buffer.
        bias = torch.zeros(conv.out_channels) if conv.bias is None else frozen(conv.bias)
        self.register_buffer("bias", bias.to(self.weight))
        self.norm = FoldedNorm(block.norm)
        act = block.act
        self.slope = float(frozen(act.weight).item()) if isinstance(act, nn.PReLU) else None

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, T, C_in) -> (batch, T, C_out), in this module's buffer of ``ctx``.

        The product is written, then normalised (and activated) in place from its moments.
        """
        batch, frames, _ = x.shape
        out = ctx.buffer(self, x, (batch, frames, self.weight.shape[1]))
        y = torch.baddbmm(self.bias, x, self.weight.expand(batch, -1, -1), out=out)
        compiled = native_kernels(y)
        if compiled is not None:
            norm = self.norm
            return native.gln_(compiled, y, norm.gamma, norm.beta, norm.eps, self.slope)
        scale, shift = self.norm.of(y)
        y = torch.addcmul(shift, y, scale, out=y)
        return y if self.slope is None else F.leaky_relu_(y, self.slope)  # one-parameter PReLU


class FoldedDepthwiseNorm(nn.Module):
    """A depthwise :class:`ConvNorm` (kernel > 1, no activation): the conv and its gLN, apart."""

    def __init__(self, block: ConvNorm) -> None:
        super().__init__()
        if not isinstance(block.act, nn.Identity):
            raise ValueError("FoldedDepthwiseNorm: expected a ConvNorm without activation")
        self.conv = DepthwiseConv(block.conv)
        self.norm = FoldedNorm(block.norm)

    def forward(
        self, x: torch.Tensor, ctx: FoldContext, per_channel: bool = False
    ) -> tuple[torch.Tensor, Moments | None, Affine]:
        """(batch, T, C) -> raw conv output d, its per-channel moments
        (:func:`~tdanet.model.folding.time_moments`; None unless ``per_channel``), and (a, b):
        ConvNorm = d * a + b.
        """
        norm = self.norm
        computed = self.conv.native_pass(x, ctx, (norm.gamma, norm.beta, norm.eps), per_channel)
        if computed is not None:  # the native kernels: moments and map from the same pass
            d, moments, affine = computed
            assert affine is not None
            return d, moments, affine
        d = self.conv(x, ctx)
        if not per_channel:
            return d, None, self.norm.of(d)
        moments = time_moments(d, ctx.squares(d))
        return d, moments, self.norm.affine(moments, d.shape[1])


class LocalAttention(nn.Module):
    """Top-down fusion "LA": a coarser (global) feature gates and shifts a finer one.

    ``local_embedding(local) * up(sigmoid(global_act(glob))) + up(global_embedding(glob))``
    where each term is a depthwise conv (no bias) + gLN and ``up`` is nearest-neighbour
    interpolation (floor index rule) to the local length, which may also shrink.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.local_embedding = ConvNorm(
            channels, channels, kernel_size, groups=channels, bias=False
        )
        self.global_embedding = ConvNorm(
            channels, channels, kernel_size, groups=channels, bias=False
        )
        self.global_act = ConvNorm(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """local (batch, channels, T_l), glob (batch, channels, T_g) -> (batch, channels, T_l)."""
        length = local.shape[-1]
        gate = nearest_resize(torch.sigmoid(self.global_act(glob)), length)
        shift = nearest_resize(self.global_embedding(glob), length)
        return self.local_embedding(local) * gate + shift


def gate_and_shift(
    d: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    ctx: FoldContext,
) -> torch.Tensor:
    """The LA product ``(d * scale + offset) * up(gate) + up(shift)``: d (batch, T, N), guides
    (batch, T_g, N), ``up`` the nearest resize to T.

    Computed as ``d * up(scale * gate) + up(offset * gate + shift)``, forming the products at
    the coarser of the two lengths. Overwrites and returns ``d``; may overwrite the guides.
    With the native kernels (:mod:`tdanet.model.native`) one pass over d does it all.
    """
    length = d.shape[1]
    compiled = native_kernels(d)
    if compiled is not None and d.is_contiguous():
        source = gate.shape[1]
        index = None if source == length else ctx.index(source, length, d.device)
        return native.la_product_(
            compiled,
            d,
            scale.contiguous(),
            offset.contiguous(),
            gate.contiguous(),
            shift.contiguous(),
            index,
        )
    if gate.shape[1] > length:
        gate, shift = ctx.resize(gate, length, "gate"), ctx.resize(shift, length, "shift")
    add = shift.addcmul_(offset, gate)
    mul = gate.mul_(scale)
    source = mul.shape[1]
    if source == length:
        return torch.addcmul(add, d, mul, out=d)
    runs = ctx.upsampling(source, length, d.device)
    if runs is not None:
        return upsampled_multiply_add_(d, mul, add, runs)
    both = ctx.resize(torch.cat([mul, add], dim=-1), length)
    mul, add = both.split(d.shape[-1], dim=-1)
    return torch.addcmul(add, d, mul, out=d)


class FoldedFusion(nn.Module):
    """A :class:`LocalAttention` whose three branches are depthwise ConvNorms of kernel > 1."""

    def __init__(self, la: LocalAttention) -> None:
        super().__init__()
        self.local = FoldedDepthwiseNorm(la.local_embedding)
        self.act = FoldedDepthwiseNorm(la.global_act)
        self.embed = FoldedDepthwiseNorm(la.global_embedding)

    def forward(self, local: torch.Tensor, glob: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """local (batch, T, N), glob (batch, T_g, N) -> (batch, T, N)."""
        dl, _, (scale, offset) = self.local(local, ctx)
        ga, _, (ga_scale, ga_shift) = self.act(glob, ctx)
        ge, _, (ge_scale, ge_shift) = self.embed(glob, ctx)
        # In place: ga and ge are this step's own conv outputs.
        gate = torch.addcmul(ga_shift, ga, ga_scale, out=ga).sigmoid_()
        shift = torch.addcmul(ge_shift, ge, ge_scale, out=ge)
        return gate_and_shift(dl, scale, offset, gate, shift, ctx)


class FoldedPointwiseFusions(nn.Module):
    """Several :class:`LocalAttention` of kernel 1 (one per level), as per-channel maps.

    Their kernel-1 depthwise ConvNorms (no bias) are per-channel gains, so each gLN follows
    from its input's moments and no convolution runs; the global branches of every level
    are normalised together, from the moments of the one global feature they all read.
    """

    local_weight: torch.Tensor
    local_gamma: torch.Tensor
    local_beta: torch.Tensor
    glob_weight: torch.Tensor
    glob_gamma: torch.Tensor
    glob_beta: torch.Tensor

    def __init__(self, las: list[LocalAttention]) -> None:
        super().__init__()
        branches = [br for la in las for br in (la.global_act, la.global_embedding)]
        for branch in [la.local_embedding for la in las] + branches:
            conv = branch.conv
            if conv.kernel_size[0] != 1 or conv.bias is not None:
                raise ValueError("expected LocalAttentions of kernel 1 without bias")
        locals_ = [la.local_embedding for la in las]
        self.register_buffer(
            "local_weight", torch.stack([frozen(br.conv.weight[:, 0, 0]) for br in locals_])
        )
        self.register_buffer("local_gamma", torch.stack([frozen(br.norm.gamma) for br in locals_]))
        self.register_buffer("local_beta", torch.stack([frozen(br.norm.beta) for br in locals_]))
        self.local_eps = [br.norm.eps for br in locals_]
        # Stacked gains of every (act, embedding) branch: one vectorised gLN for all levels.
        self.register_buffer(
            "glob_weight",
            torch.stack([frozen(br.conv.weight[:, 0, 0]) for br in branches])[:, None],
        )
        self.register_buffer(
            "glob_gamma", torch.stack([frozen(br.norm.gamma) for br in branches])[:, None]
        )
        self.register_buffer(
            "glob_beta", torch.stack([frozen(br.norm.beta) for br in branches])[:, None]
        )
        self.glob_eps = branches[0].norm.eps

    def guides(self, glob: torch.Tensor, ctx: FoldContext) -> tuple[torch.Tensor, torch.Tensor]:
        """glob (batch, T_g, N) -> gate and shift of every level, each (levels, batch, T_g, N).

        Both are views of one scratch buffer of the call.
        """
        compiled = native_kernels(glob)
        if compiled is not None:
            scale, shift = native.gln_of_map(
                compiled,
                native.moments(compiled, glob.contiguous()),
                glob.shape[1],
                self.glob_weight[:, 0],
                self.glob_gamma[:, 0],
                self.glob_beta[:, 0],
                self.glob_eps,
            )
        else:
            scale, shift = gln_scale_shift(
                time_moments(glob, ctx.squares(glob)),
                glob.shape[1],
                self.glob_gamma,
                self.glob_beta,
                self.glob_eps,
                self.glob_weight,
            )
        out = ctx.buffer(self, glob, (self.glob_weight.shape[0], *glob.shape))
        torch.addcmul(shift, glob, scale, out=out)
        return out[0::2].sigmoid_(), out[1::2]

    def forward(
        self,
        level: int,
        raw: tuple[torch.Tensor, Moments | None, Affine],
        gate: torch.Tensor,
        shift: torch.Tensor,
        ctx: FoldContext,
    ) -> torch.Tensor:
        """The LA of ``level`` on the feature ``d * a + b`` (batch, T, N), ``raw`` = (d, its
        per-channel moments, (a, b)), with :meth:`guides` -> (batch, T, N); overwrites d."""
        d, moments, (a, b) = raw
        if moments is None:
            raise ValueError(f"level {level}: the LA needs the per-channel moments of its input")
        rows = slice(level, level + 1)  # this level's map, kept 2-D: (1, N)
        weight, gamma, beta = self.local_weight[rows], self.local_gamma[rows], self.local_beta[rows]
        eps = self.local_eps[level]
        compiled = native_kernels(d)
        if compiled is not None:
            scale, offset = native.gln_of_map(
                compiled,
                moments,
                d.shape[1],
                weight,
                gamma,
                beta,
                eps,
                a.contiguous(),
                b.contiguous(),
            )
            return gate_and_shift(d, scale[0], offset[0], gate[level], shift[level], ctx)
        scale, offset = gln_scale_shift(
            moments,
            d.shape[1],
            gamma[0],
            beta[0],
            eps,
            weight * a.squeeze(-2),
            weight * b.squeeze(-2),
        )
        return gate_and_shift(d, scale, offset, gate[level], shift[level], ctx)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a whole residual branch per item with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep

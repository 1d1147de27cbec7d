"""Convolution, normalisation and fusion building blocks of TDANet."""

from __future__ import annotations

import torch
from torch import nn

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
        stats = x.to(torch.float64) if self.wide else x
        mean = stats.mean(dim=(1, 2), keepdim=True)
        var = (stats - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        if self.wide:  # 1 / std rounded once to float32: closer to float64 than a division
            x = (x - mean.to(x.dtype)) * torch.rsqrt(var + self.eps).to(x.dtype)
        else:
            x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.gamma[:, None] + self.beta[:, None]


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


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a whole residual branch per item with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep

"""The global attention (GA) module of TDANet: attention then a convolutional MLP, each
with its folded (inference) form beside it (:mod:`tdanet.model.folding`)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import AttentionMode
from .folding import DepthwiseConv, FoldContext, TimeMajor, frozen
from .layers import ConvNorm, DepthwiseConv1d, FoldedProjection, drop_path


def sinusoid_table(length: int, channels: int) -> torch.Tensor:
    """Sinusoidal position table (length, channels).

    Channel 2i holds sin(pos * w_i), channel 2i + 1 cos(pos * w_i), w_i = 10000^(-2i/channels),
    computed exactly as the release computes its 10000-row buffer so that rows agree bit
    for bit; any length is allowed (rows past the release's 10000 are extrapolation).
    """
    position = torch.arange(length).to(torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels)
    )
    angles = position * freq  # (length, channels / 2)
    # Interleaved sin/cos by stacking, not slice assignment, so a traced graph keeps it.
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(length, channels)


class PositionalEncoding(nn.Module):
    """Holds the position table; ``pe`` is rebuilt, never loaded (it is not a weight)."""

    pe: torch.Tensor

    def __init__(self, channels: int, max_positions: int) -> None:
        super().__init__()
        self.channels = channels
        # A shapes-only model (checkpoint checks build one) needs no values, and arange on
        # the meta device costs a second the first time.
        if torch.get_default_device().type == "meta":
            table = torch.empty(1, max_positions, channels)
        else:
            table = sinusoid_table(max_positions, channels)[None]
        self.register_buffer("pe", table, persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        """-> (1, length, channels) table rows for positions 0..length-1."""
        # A traced graph (ONNX export) must hold for any length: the formula, not the rows.
        if length <= self.pe.shape[1] and not torch.jit.is_tracing():
            return self.pe[:, :length]
        return sinusoid_table(length, self.channels).to(self.pe)[None]


class MultiHeadAttention(nn.Module):
    """Pre-norm attention with absolute positions: ``norm(2 * attn(LN(x) + pe))`` at inference.

    ``mode="frame"`` is what the released checkpoints compute: the release hands
    (batch, frames, N) data to a sequence-first attention layer, so with one utterance per
    batch each frame attends only to itself and the layer is the value projection followed
    by the output projection, per frame (and batch items stay independent here, unlike the
    release at batch > 1). ``mode="sequence"`` is the paper's self-attention across frames.
    """

    def __init__(
        self, channels: int, num_heads: int, mode: AttentionMode, max_positions: int, dropout: float
    ) -> None:
        super().__init__()
        self.mode = mode
        self.pos_enc = PositionalEncoding(channels, max_positions)
        self.attn_in_norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, N, frames) -> (batch, N, frames)."""
        h = x.transpose(1, 2)
        h = self.attn_in_norm(h) + self.pos_enc(h.shape[1])
        if self.mode == "frame":
            out = self.per_frame(h)
        elif self.training:
            out = self.attn(h, h, h, need_weights=False)[0]
        else:
            out = self.across_frames(h)
        out = self.norm(out + self.dropout(out))
        return out.transpose(1, 2)

    def per_frame(self, h: torch.Tensor) -> torch.Tensor:
        """The release's attention, each frame attending to itself: (batch, frames, N) -> same.

        With one key per query the softmax weight is 1, leaving the value projection
        followed by the output projection.
        """
        return self.attn.out_proj(F.linear(h, *self.value_projection()))

    def value_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The value rows of the input projection: weight (N, N), bias (N,)."""
        channels = self.attn.embed_dim
        return self.attn.in_proj_weight[2 * channels :], self.attn.in_proj_bias[2 * channels :]

    def across_frames(self, h: torch.Tensor) -> torch.Tensor:
        """``self.attn(h, h, h)`` at inference, spelled out: (batch, frames, N) -> same.

        The same function as the fused kernel (which has no ONNX form), so the export traces
        this model as it is.
        """
        batch, frames, channels = h.shape
        heads = self.attn.num_heads
        q, k, v = F.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, frames, heads, -1).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.attn.head_dim), dim=-1)
        return self.attn.out_proj((weights @ v).transpose(1, 2).reshape(batch, frames, channels))


class FoldedFrameAttention(nn.Module):
    """A :class:`MultiHeadAttention` of ``mode="frame"`` at inference, on time-major features,
    with the attention folded into one matrix.

    ``2 * out_proj(v_proj(LN(x) + pe))`` per frame is ``LN0(x) @ A + P[t]`` with
    ``A = 2 diag(g) Wv^T Wo^T`` (g, b: the LayerNorm's affine; LN0: LayerNorm without it) and
    ``P[t] = 2 ((b + pe[t]) Wv^T Wo^T + bv Wo^T + bo)`` (:meth:`position_table`).
    """

    matrix: torch.Tensor
    pos_matrix: torch.Tensor
    pos_bias: torch.Tensor
    out_gain: torch.Tensor
    out_bias: torch.Tensor

    def __init__(self, mha: MultiHeadAttention) -> None:
        super().__init__()
        if mha.mode != "frame":
            raise ValueError(f"FoldedFrameAttention: expected mode 'frame', got {mha.mode!r}")
        self.channels = mha.pos_enc.channels
        self.in_eps = mha.attn_in_norm.eps
        dtype = mha.attn.in_proj_weight.dtype
        value_w, value_b = (t.detach().double() for t in mha.value_projection())
        out_w = mha.attn.out_proj.weight.detach().double()
        out_b = mha.attn.out_proj.bias.detach().double()
        project = 2.0 * value_w.t() @ out_w.t()  # (N, N): rows in, columns out
        gain = mha.attn_in_norm.weight.detach().double()
        bias = mha.attn_in_norm.bias.detach().double()
        self.register_buffer("matrix", (gain[:, None] * project).to(dtype))
        self.register_buffer("pos_matrix", project.to(dtype))
        self.register_buffer(
            "pos_bias", (bias @ project + 2.0 * (value_b @ out_w.t() + out_b)).to(dtype)
        )
        self.pos_enc = copy.deepcopy(mha.pos_enc)
        self.register_buffer("out_gain", frozen(mha.norm.weight))
        self.register_buffer("out_bias", frozen(mha.norm.bias))
        self.out_eps = mha.norm.eps

    def position_table(self, frames: int) -> torch.Tensor:
        """(frames, N): the projected position term P for positions 0..frames-1."""
        return torch.addmm(self.pos_bias, self.pos_enc(frames)[0], self.pos_matrix)

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, frames, N) -> same shape."""
        frames = x.shape[1]
        positions = ctx.once((self, frames), lambda: self.position_table(frames))
        h = F.layer_norm(x, (self.channels,), None, None, self.in_eps)
        h = torch.matmul(h, self.matrix).add_(positions)
        return F.layer_norm(h, (self.channels,), self.out_gain, self.out_bias, self.out_eps)


class FeedForward(nn.Module):
    """Convolutional MLP: 1x1 expand (x2) + gLN, depthwise k=5, ReLU, 1x1 project + gLN."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        hidden = 2 * channels
        self.fc1 = ConvNorm(channels, hidden, 1, bias=False)
        self.dwconv = DepthwiseConv1d(hidden, 5)
        self.fc2 = ConvNorm(hidden, channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, N, frames) -> (batch, N, frames)."""
        x = self.dropout(F.relu(self.dwconv(self.fc1(x))))
        return self.dropout(self.fc2(x))


class FoldedFeedForward(nn.Module):
    """A :class:`FeedForward` at inference, on time-major features."""

    def __init__(self, mlp: FeedForward) -> None:
        super().__init__()
        self.fc1 = FoldedProjection(mlp.fc1)
        self.dwconv = DepthwiseConv(mlp.dwconv)
        self.fc2 = FoldedProjection(mlp.fc2)

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, frames, N) -> same shape, in a buffer of ``ctx``."""
        return self.fc2(F.relu_(self.dwconv(self.fc1(x, ctx), ctx)), ctx)


class GlobalAttention(nn.Module):
    """GA module: two residual steps, attention then MLP, on the top-level global feature."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        mode: AttentionMode,
        max_positions: int,
        dropout: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(channels, num_heads, mode, max_positions, dropout)
        self.mlp = FeedForward(channels, dropout)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, N, frames) -> (batch, N, frames)."""
        x = x + drop_path(self.attn(x), self.drop_path, self.training)
        return x + drop_path(self.mlp(x), self.drop_path, self.training)


class FoldedGlobalAttention(nn.Module):
    """A :class:`GlobalAttention` at inference, on time-major features: the folded per-frame
    attention, or in ``mode="sequence"`` the eager attention (on the small top level)."""

    def __init__(self, globalatt: GlobalAttention) -> None:
        super().__init__()
        mha = globalatt.attn
        self.attn = FoldedFrameAttention(mha) if mha.mode == "frame" else TimeMajor(mha)
        self.mlp = FoldedFeedForward(globalatt.mlp)

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, frames, N) -> same shape."""
        x = x + self.attn(x, ctx)
        return x + self.mlp(x, ctx)

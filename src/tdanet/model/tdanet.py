"""TDANet: encoder, a shared top-down-attention U-block unfolded B times, masks, decoder;
and :class:`FastTDANet`, its inference form assembled from the blocks' folded forms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .attention import FoldedGlobalAttention, GlobalAttention
from .config import TDANetConfig
from .folding import Affine, FoldContext, Moments, frozen
from .layers import (
    ChannelAffine,
    ConvNorm,
    FoldedDepthwiseNorm,
    FoldedFusion,
    FoldedNorm,
    FoldedPointwiseFusions,
    FoldedProjection,
    GlobalLayerNorm,
    LocalAttention,
)
from .ops import adaptive_average, transposed_conv1d

Step = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def pad_to_valid_length(waveform: torch.Tensor, kernel: int, hop: int) -> tuple[torch.Tensor, int]:
    """Pad (batch, T) as the release does; returns the padded signal and ``rest``.

    ``rest = L - (hop + T % L) % L`` zeros are appended, then ``L - hop`` zeros go on both
    sides, so that the strided encoder covers every sample and the transposed-conv decoder
    output can be cropped back to exactly T samples with :func:`crop_to_input`.
    """
    length = waveform.shape[-1]
    rest = kernel - (hop + length % kernel) % kernel
    side = kernel - hop
    return F.pad(waveform, (side, rest + side)), rest


def crop_to_input(decoded: torch.Tensor, kernel: int, hop: int, length: int) -> torch.Tensor:
    """Undo :func:`pad_to_valid_length` on the decoder output (..., padded) -> (..., length).

    Equals the release's crop ``[L - hop : -(rest + L - hop)]`` when L = 4 * hop, and stays
    exact for kernels that are not a multiple of 4 samples, where the release's is not.
    """
    side = kernel - hop
    return decoded[..., side : side + length]


def as_batch(waveform: torch.Tensor, network: str = "TDANet") -> torch.Tensor:
    """(T,) or (batch, T) -> (batch, T); any other shape, or T = 0, is a ValueError that
    names the ``network``."""
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2 or waveform.shape[-1] < 1:
        raise ValueError(
            f"{network} expects a (batch, samples) waveform with samples >= 1, "
            f"got shape {tuple(waveform.shape)}"
        )
    return waveform


def decoder_start(depth: int) -> tuple[int, int]:
    """(level, guide level) of the first top-down step of a U-block with ``depth`` levels.

    As released: the decoder starts at level S-1 guided by level S-2 (the top level when
    S = 1); the top level's own fused feature is never read.
    """
    top = depth - 2
    return top, (top - 1) % depth


def decoder_levels(depth: int) -> list[int]:
    """The fused levels :func:`top_down` reads."""
    top, guide = decoder_start(depth)
    return sorted({*range(top + 1), guide})


def top_down(fused: Mapping[int, torch.Tensor], depth: int, step: Step) -> torch.Tensor:
    """The U-block's decoder: ``step(level, fused[level], guide)`` from level S-1 down to 0,
    each step guided by the previous one's output (the first by :func:`decoder_start`)."""
    top, guide = decoder_start(depth)
    y = step(top, fused[top], fused[guide])
    for level in range(top - 1, -1, -1):
        y = step(level, fused[level], y)
    return y


def unfold_block(
    x0: torch.Tensor,
    num_blocks: int,
    block: Callable[[torch.Tensor], torch.Tensor],
    concat: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``num_blocks`` unfoldings of the shared ``block`` on the separator input ``x0``, each
    after the first reading ``concat(x0 + previous output)``; any layout, shape kept."""
    x = block(x0)
    for _ in range(1, num_blocks):
        x = block(concat(x0 + x))
    return x


class UBlock(nn.Module):
    """The shared U-block: bottom-up pyramid, global attention, top-down fusion, decoder.

    Names follow the release (``proj_1x1``, ``spp_dw``, ``globalatt``, ``loc_glo_fus``,
    ``last_layer``, ``res_conv``) so released weights load by name.
    """

    def __init__(self, config: TDANetConfig) -> None:
        super().__init__()
        width, depth = config.in_channels, config.upsampling_depth
        self.depth = depth
        self.proj_1x1 = ConvNorm(config.out_channels, width, 1, act=True)
        self.spp_dw = nn.ModuleList(
            [ConvNorm(width, width, 5, groups=width)]
            + [ConvNorm(width, width, 5, stride=2, groups=width) for _ in range(depth - 1)]
        )
        self.globalatt = GlobalAttention(
            width,
            config.num_heads,
            config.attention,
            config.max_positions,
            config.dropout,
            config.drop_path,
        )
        self.loc_glo_fus = nn.ModuleList([LocalAttention(width, 1) for _ in range(depth)])
        self.last_layer = nn.ModuleList([LocalAttention(width, 5) for _ in range(depth - 1)])
        self.res_conv = nn.Conv1d(width, config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, out_channels, frames) -> (batch, out_channels, frames)."""
        levels = [self.spp_dw[0](self.proj_1x1(x))]
        for down in self.spp_dw[1:]:
            levels.append(down(levels[-1]))
        top_length = levels[-1].shape[-1]
        glob = levels[-1]
        for level in levels[:-1]:
            glob = glob + adaptive_average(level, top_length)
        glob = self.globalatt(glob)
        fused = {k: fuse(levels[k], glob) for k, fuse in enumerate(self.loc_glo_fus)}
        y = top_down(fused, self.depth, lambda k, local, guide: self.last_layer[k](local, guide))
        return self.res_conv(y) + x


class FoldedUBlock(nn.Module):
    """A :class:`UBlock` at inference, on time-major features (:mod:`tdanet.model.folding`)."""

    res_weight: torch.Tensor
    res_bias: torch.Tensor

    def __init__(self, unet: UBlock) -> None:
        super().__init__()
        self.depth = unet.depth
        self.proj = FoldedProjection(unet.proj_1x1)
        self.levels = nn.ModuleList(
            [FoldedDepthwiseNorm(cast(ConvNorm, block)) for block in unet.spp_dw]
        )
        self.attention = FoldedGlobalAttention(unet.globalatt)
        self.fusions = FoldedPointwiseFusions(cast(list[LocalAttention], list(unet.loc_glo_fus)))
        self.decoder = nn.ModuleList(
            [FoldedFusion(cast(LocalAttention, la)) for la in unet.last_layer]
        )
        self.register_buffer("res_weight", frozen(unet.res_conv.weight[..., 0]).t())
        self.register_buffer("res_bias", frozen(unet.res_conv.bias))
        self.needed = decoder_levels(self.depth)

    def forward(self, x: torch.Tensor, ctx: FoldContext) -> torch.Tensor:
        """(batch, frames, out_channels) -> same shape."""
        batch, frames, _ = x.shape
        h = self.proj(x, ctx)
        raw: list[tuple[torch.Tensor, Moments | None, Affine]] = []  # level k = d * a + b
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
            pooled = adaptive_average(d.transpose(1, 2), top_length).transpose(1, 2)
            glob = glob + torch.addcmul(b, pooled, a)
        glob = self.attention(glob, ctx)
        gate, shift = self.fusions.guides(glob, ctx)
        fused = {k: self.fusions(k, raw[k], gate, shift, ctx) for k in self.needed}
        y = top_down(fused, self.depth, lambda k, local, guide: self.decoder[k](local, guide, ctx))
        out = torch.addmm(
            (x + self.res_bias).view(batch * frames, -1),
            y.view(batch * frames, -1),
            self.res_weight,
        )
        return out.view(batch, frames, -1)


class UnfoldedUBlock(nn.Module):
    """B unfoldings of one shared U-block with a skip from the separator input."""

    def __init__(self, config: TDANetConfig) -> None:
        super().__init__()
        self.num_blocks = config.num_blocks
        self.unet = UBlock(config)
        channels = config.out_channels
        self.concat_block = nn.Sequential(ChannelAffine(channels), nn.PReLU())

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(batch, out_channels, frames) -> (batch, out_channels, frames)."""
        return unfold_block(x0, self.num_blocks, self.unet, self.concat_block)


class TDANet(nn.Module):
    """TDANet (Li, Yang, Hu, ICLR 2023) as the authors' released checkpoints compute it.

    Waveform (batch, T) in, separated waveforms (batch, C, T) out, any T >= 1.
    """

    def __init__(self, config: TDANetConfig) -> None:
        super().__init__()
        self.config = config
        kernel, hop, bases = config.kernel_size, config.hop_size, config.enc_bases
        self.encoder = nn.Conv1d(1, bases, kernel, stride=hop, padding=kernel // 2, bias=False)
        self.ln = GlobalLayerNorm(bases)
        self.bottleneck = nn.Conv1d(bases, config.out_channels, 1)
        self.sm = UnfoldedUBlock(config)
        self.mask_net = nn.Sequential(
            nn.PReLU(), nn.Conv1d(config.out_channels, config.num_sources * bases, 1)
        )
        # Holds the release's decoder weight; forward runs it through transposed_conv1d.
        self.decoder = nn.ConvTranspose1d(
            config.num_sources * bases,
            config.num_sources,
            kernel,
            stride=hop,
            padding=kernel // 2,
            bias=False,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, T) or (T,) -> (batch, num_sources, T)."""
        waveform = as_batch(waveform)
        kernel, hop = self.config.kernel_size, self.config.hop_size
        padded, _ = pad_to_valid_length(waveform, kernel, hop)
        embedding = self.encoder(padded.unsqueeze(1))
        x = self.sm(self.bottleneck(self.ln(embedding)))
        batch, frames = x.shape[0], x.shape[-1]
        masks = F.relu(self.mask_net(x).view(batch, self.config.num_sources, -1, frames))
        masked = (masks * embedding.unsqueeze(1)).view(batch, -1, frames)
        decoded = transposed_conv1d(masked.transpose(1, 2), self.decoder.weight, hop, kernel // 2)
        return crop_to_input(decoded, kernel, hop, waveform.shape[-1])


class FastTDANet(nn.Module):
    """Inference-only TDANet: (batch, T) -> (batch, C, T), equal to the eager model's output.

    Built from a :class:`TDANet` and its blocks' folded forms; the model is not modified
    (every weight is copied); ``config`` is the model's. Runs without autograd.
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
        self.register_buffer("encoder", frozen(model.encoder.weight))
        self.ln = FoldedNorm(model.ln)
        self.register_buffer("bottleneck_weight", frozen(model.bottleneck.weight[..., 0]).t())
        self.register_buffer("bottleneck_bias", frozen(model.bottleneck.bias))
        separator = model.sm
        self.num_blocks = separator.num_blocks
        self.unet = FoldedUBlock(separator.unet)
        concat_conv, concat_act = separator.concat_block
        self.register_buffer("concat_weight", frozen(concat_conv.weight)[:, 0, 0])
        self.register_buffer("concat_bias", frozen(concat_conv.bias))
        self.register_buffer("concat_slope", frozen(concat_act.weight))
        mask_act, mask_conv = model.mask_net
        self.register_buffer("mask_slope", frozen(mask_act.weight))
        self.register_buffer("mask_weight", frozen(mask_conv.weight)[..., 0].t())
        self.register_buffer("mask_bias", frozen(mask_conv.bias))
        self.register_buffer("decoder", frozen(model.decoder.weight))
        self.eval()

    def concat(self, x: torch.Tensor) -> torch.Tensor:
        """The unfoldings' ``concat_block`` (per-channel conv, PReLU): (batch, frames, N) -> same."""
        return F.prelu(torch.addcmul(self.concat_bias, x, self.concat_weight), self.concat_slope)

    # Not only no_grad: inference mode skips version counting, 12-15 ms per call (1 s input).
    @torch.inference_mode()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, T) or (T,) -> (batch, num_sources, T), inference tensors."""
        waveform = as_batch(waveform)
        config = self.config
        kernel, hop = config.kernel_size, config.hop_size
        padded, _ = pad_to_valid_length(waveform, kernel, hop)
        embedding = F.conv1d(padded.unsqueeze(1), self.encoder, stride=hop, padding=kernel // 2)
        embedding = embedding.transpose(1, 2).contiguous()  # (batch, frames, K)
        batch, frames, _ = embedding.shape
        scale, shift = self.ln.of(embedding)
        x0 = torch.matmul(torch.addcmul(shift, embedding, scale), self.bottleneck_weight)
        x0 = x0.add_(self.bottleneck_bias)
        ctx = FoldContext()
        x = unfold_block(x0, self.num_blocks, lambda h: self.unet(h, ctx), self.concat)
        masks = torch.matmul(F.prelu(x, self.mask_slope), self.mask_weight).add_(self.mask_bias)
        masks = F.relu(masks).view(batch, frames, config.num_sources, -1)
        masked = masks * embedding.unsqueeze(2)  # (batch, frames, C, K)
        decoded = transposed_conv1d(masked.view(batch, frames, -1), self.decoder, hop, kernel // 2)
        return crop_to_input(decoded, kernel, hop, waveform.shape[-1])

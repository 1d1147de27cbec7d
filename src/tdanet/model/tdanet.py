"""TDANet: encoder, a shared top-down-attention U-block unfolded B times, masks, decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import GlobalAttention
from .config import TDANetConfig
from .layers import ConvNorm, GlobalLayerNorm, LocalAttention
from .ops import adaptive_average


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
        fused = [fuse(level, glob) for fuse, level in zip(self.loc_glo_fus, levels, strict=True)]
        # As released: the decoder starts at level S-1 guided by level S-2 (fused[-1], the
        # top level, when S = 1); the top level's own fused feature is never read.
        top = self.depth - 2
        y = self.last_layer[top](fused[top], fused[top - 1])
        for i in range(top - 1, -1, -1):
            y = self.last_layer[i](fused[i], y)
        return self.res_conv(y) + x


class UnfoldedUBlock(nn.Module):
    """B unfoldings of one shared U-block with a skip from the separator input."""

    def __init__(self, config: TDANetConfig) -> None:
        super().__init__()
        self.num_blocks = config.num_blocks
        self.unet = UBlock(config)
        channels = config.out_channels
        self.concat_block = nn.Sequential(
            nn.Conv1d(channels, channels, 1, groups=channels), nn.PReLU()
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(batch, out_channels, frames) -> (batch, out_channels, frames)."""
        x = self.unet(x0)
        for _ in range(1, self.num_blocks):
            x = self.unet(self.concat_block(x0 + x))
        return x


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
        return crop_to_input(self.decoder(masked), kernel, hop, waveform.shape[-1])

"""Widen a trained TDANet's U-block (more channels N) without changing what it computes.

Each of the N channels of the U-block becomes ``k`` copies (and each of the 2N channels of
the attention's MLP): per-channel weights are copied, weights that sum over the channels are
split among the copies, and every global or layer norm sees the same statistics. The one
part that is not per channel is the sinusoidal position table added before the attention's
value projection: its ``kN``-channel table holds the ``N``-channel one's frequencies at every
``k``-th sine/cosine pair, so channel ``c = 2j + r`` is copied to channels
``2(kj + t) + r`` (t = 0..k-1), the value projection reads only the copy at t = 0 (whose
position rows match), and the widened network is the same function. Small noise on the
copies then lets them learn apart (Net2Net, Chen et al. 2016, in function-preserving form).
"""

from __future__ import annotations

import re

import torch

from .tdanet import TDANet

# U-block parameter suffixes -> how each dimension grows: "w" the U-block width N,
# "h" the MLP width 2N; "<" marks a dimension summed over (its copies share the weight).
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"proj_1x1\.conv\.weight", ("w", "", "")),
    (r"globalatt\.attn\.attn\.in_proj_weight", ("3w", "v<")),
    (r"globalatt\.attn\.attn\.in_proj_bias", ("3w",)),
    (r"globalatt\.attn\.attn\.out_proj\.weight", ("w", "w<")),
    (r"globalatt\.mlp\.fc1\.conv\.weight", ("h", "w<", "")),
    (r"globalatt\.mlp\.fc2\.conv\.weight", ("w", "h<", "")),
    (r"globalatt\.mlp\.(fc1\.norm\.(gamma|beta)|dwconv\.(weight|bias))", ("h", "", "")),
    (r"res_conv\.weight", ("", "w<", "")),
    (r"res_conv\.bias|proj_1x1\.act\.weight", ("",)),
    # Everything else in the U-block is per channel of N: conv weights, biases, norms.
    (r".*", ("w", "", "")),
)


def copy_sources(channels: int, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``factor * channels`` new channels: the old channel it copies, and
    whether it is the copy that keeps that channel's position-table frequency (t = 0)."""
    new = torch.arange(factor * channels)
    pair, parity = new // 2, new % 2
    return 2 * (pair // factor) + parity, pair % factor == 0


def widen_in_channels(model: TDANet, width: int, noise: float = 1e-3, seed: int = 0) -> TDANet:
    """A new TDANet with ``in_channels`` = ``width`` (a multiple k of the model's) computing
    the same function as ``model`` up to ``noise`` (relative to each grown tensor's RMS),
    which breaks the symmetry of the copies. Only ``attention="frame"`` (the release's): across
    frames the heads would regroup the channels.
    """
    config = model.config
    if config.attention != "frame":
        raise ValueError("widening keeps the function only with attention='frame'")
    if width < config.in_channels or width % config.in_channels:
        raise ValueError(
            f"in_channels {width} must be a multiple of the model's {config.in_channels}"
        )
    factor = width // config.in_channels
    wide = TDANet(config.replace(in_channels=width))
    sources = {
        "w": copy_sources(config.in_channels, factor),
        "h": copy_sources(2 * config.in_channels, factor),
    }
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if not name.startswith("sm.unet."):
            state[name] = tensor
            continue
        key = name.removeprefix("sm.unet.")
        rule = next(dims for pattern, dims in _RULES if re.fullmatch(pattern, key))
        grown = _grow(tensor, rule, sources, factor)
        if noise and grown.shape != tensor.shape:
            scale = noise * grown.pow(2).mean().sqrt()
            grown = grown + scale * torch.randn(grown.shape, generator=generator)
        state[name] = grown
    wide.load_state_dict(state)
    return wide.train(model.training)


def _grow(
    tensor: torch.Tensor,
    rule: tuple[str, ...],
    sources: dict[str, tuple[torch.Tensor, torch.Tensor]],
    factor: int,
) -> torch.Tensor:
    """``tensor`` with each dimension grown as ``rule`` says (see :data:`_RULES`)."""
    for dim, how in enumerate(rule[: tensor.dim()]):
        if how == "3w":  # the q, k, v blocks of an input projection, each of width N
            tensor = torch.cat(
                [_grow(block, ("w",), sources, factor) for block in tensor.chunk(3, dim)], dim
            )
        elif how == "v<":  # q and k sum over copies; v reads only the position-matching one
            index, matching = sources["w"]
            grown = tensor.index_select(dim, index)
            rows = grown.shape[0] // 3
            shared = grown[: 2 * rows] / factor
            tensor = torch.cat([shared, grown[2 * rows :] * matching.to(grown)], 0)
        elif how:
            index, _ = sources[how.rstrip("<")]
            tensor = tensor.index_select(dim, index)
            if how.endswith("<"):
                tensor = tensor / factor
    return tensor

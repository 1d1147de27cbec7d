"""ONNX export with a dynamic length axis, and :class:`OnnxModel` to run the result.

The eager model's ``F.interpolate(size=...)`` and ``F.adaptive_avg_pool1d`` with sizes that
do not divide, and its Python-side position-table branch, do not translate to a graph that
is right for every length. :class:`ExportableTDANet` computes the same function with
shape-generic tensor ops instead (nearest resize as a gather with the exact float32 index
rule, adaptive pooling as differences of a float64 cumulative sum, the position table from
its formula), and is what gets exported.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import replaced_on_success
from .errors import CheckpointError, TDANetError
from .model import TDANet, TDANetConfig, as_batch, crop_to_input, pad_to_valid_length
from .model.attention import MultiHeadAttention
from .model.layers import GlobalLayerNorm, LocalAttention
from .model.tdanet import UBlock

# ONNX operator set used for the export.
OPSET = 18
# metadata_props key holding the model's TDANetConfig as JSON.
CONFIG_KEY = "tdanet_config"
INPUT_NAME = "waveform"
OUTPUT_NAME = "sources"


class ExportError(TDANetError):
    """An export that cannot be done: missing exporter, unwritable destination."""


def nearest_resize(x: torch.Tensor, length: int) -> torch.Tensor:
    """``F.interpolate(x, size=length, mode="nearest")`` for (batch, C, T) as a gather.

    Index ``min(floor(i * (T / length)), T - 1)`` in float32, the rule PyTorch's kernel
    uses, built from tensors so that a traced graph stays right for any T and length.
    """
    source = x.shape[-1]
    scale = (
        torch.ones((), dtype=torch.float32)
        * source
        / (torch.ones((), dtype=torch.float32) * length)
    )
    positions = torch.arange(length).to(torch.float32) * scale
    index = torch.clamp(torch.floor(positions).to(torch.int64), max=source - 1)
    return torch.index_select(x, -1, index)


def adaptive_average(x: torch.Tensor, length: int) -> torch.Tensor:
    """``F.adaptive_avg_pool1d(x, length)`` for (batch, C, T) with any T and length.

    Window i covers ``[floor(i T / length), ceil((i + 1) T / length))``; its mean is a
    difference of a cumulative sum (float64, so long inputs keep float32 accuracy).
    """
    source = x.shape[-1]
    cumulative = F.pad(torch.cumsum(x.to(torch.float64), dim=-1), (1, 0))
    steps = torch.arange(length)
    start = torch.div(steps * source, length, rounding_mode="floor")
    end = torch.div((steps + 1) * source + length - 1, length, rounding_mode="floor")
    total = torch.index_select(cumulative, -1, end) - torch.index_select(cumulative, -1, start)
    return (total / (end - start).to(torch.float64)).to(x.dtype)


def position_table(length: int, channels: int) -> torch.Tensor:
    """(1, length, channels) sinusoidal table, the formula of ``sinusoid_table``."""
    position = torch.arange(length).to(torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels)
    )
    angles = position * freq  # (length, channels / 2)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(1, length, channels)


def _local_attention(la: LocalAttention, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
    """``LocalAttention.forward`` with :func:`nearest_resize`: (batch, N, T_l) out."""
    length = local.shape[-1]
    gate = nearest_resize(torch.sigmoid(la.global_act(glob)), length)
    shift = nearest_resize(la.global_embedding(glob), length)
    return la.local_embedding(local) * gate + shift


def _attention(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """``MultiHeadAttention.forward`` with the table from its formula: (batch, N, frames)."""
    h = x.transpose(1, 2)
    h = mha.attn_in_norm(h) + position_table(h.shape[1], mha.pos_enc.channels)
    out = mha.per_frame(h) if mha.mode == "frame" else _self_attention(mha.attn, h)
    return mha.norm(2.0 * out).transpose(1, 2)


def _self_attention(attn: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """``attn(h, h, h)`` (batch-first, eval) spelled out: its fused kernel has no ONNX form.

    h (batch, frames, N) -> (batch, frames, N).
    """
    batch, frames, channels = h.shape
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, frames, heads, -1).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, frames, channels)
    return attn.out_proj(out)


def _ublock(unet: UBlock, x: torch.Tensor) -> torch.Tensor:
    """``UBlock.forward`` at inference with shape-generic resizing and pooling."""
    levels = [unet.spp_dw[0](unet.proj_1x1(x))]
    for down in list(unet.spp_dw)[1:]:
        levels.append(down(levels[-1]))
    top_length = levels[-1].shape[-1]
    glob = levels[-1]
    for level in levels[:-1]:
        glob = glob + adaptive_average(level, top_length)
    ga = unet.globalatt
    glob = glob + _attention(ga.attn, glob)
    glob = glob + ga.mlp(glob)
    fusions: list[LocalAttention] = list(unet.loc_glo_fus)  # type: ignore[arg-type]
    decoder: list[LocalAttention] = list(unet.last_layer)  # type: ignore[arg-type]
    fused = [_local_attention(la, level, glob) for la, level in zip(fusions, levels, strict=True)]
    top = unet.depth - 2
    y = _local_attention(decoder[top], fused[top], fused[top - 1])
    for i in range(top - 1, -1, -1):
        y = _local_attention(decoder[i], fused[i], y)
    return unet.res_conv(y) + x


class WideGlobalLayerNorm(nn.Module):
    """gLN with its statistics reduced in float64: onnxruntime's float32 ReduceMean over a
    whole (channels x frames) item loses accuracy that 16 unfoldings amplify."""

    def __init__(self, norm: GlobalLayerNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.gamma = norm.gamma
        self.beta = norm.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        wide = x.to(torch.float64)
        mean = wide.mean(dim=(1, 2), keepdim=True)
        var = (wide - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        return (x - mean.to(x.dtype)) * scale * self.gamma[:, None] + self.beta[:, None]


def _with_wide_norms(model: TDANet) -> TDANet:
    """A copy of ``model`` whose gLNs are :class:`WideGlobalLayerNorm` (same weights)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GlobalLayerNorm):
                setattr(parent, name, WideGlobalLayerNorm(child))
    return model


class ExportableTDANet(nn.Module):
    """The eager model's inference function in export-friendly form: (batch, T) -> (batch, C, T).

    Works on a copy of the given model's weights; see the module docstring.
    """

    def __init__(self, model: TDANet) -> None:
        super().__init__()
        self.model = _with_wide_norms(model)
        self.config = model.config

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, T) -> (batch, num_sources, T)."""
        model, config = self.model, self.config
        kernel, hop = config.kernel_size, config.hop_size
        padded, _ = pad_to_valid_length(waveform, kernel, hop)
        embedding = model.encoder(padded.unsqueeze(1))
        x0 = model.bottleneck(model.ln(embedding))
        separator = model.sm
        x = _ublock(separator.unet, x0)
        for _ in range(1, separator.num_blocks):
            x = _ublock(separator.unet, separator.concat_block(x0 + x))
        batch, frames = x.shape[0], x.shape[-1]
        masks = F.relu(model.mask_net(x).view(batch, config.num_sources, -1, frames))
        masked = (masks * embedding.unsqueeze(1)).view(batch, -1, frames)
        return crop_to_input(model.decoder(masked), kernel, hop, waveform.shape[-1])


def export_onnx(
    model: TDANet,
    path: str | os.PathLike[str],
    *,
    example_seconds: float = 1.0,
    check_lengths: tuple[int, ...] = (),
) -> Path:
    """Write ``model`` as an ONNX file (input ``waveform`` (batch, samples) float32, output
    ``sources`` (batch, C, samples)), both axes dynamic, the config in ``metadata_props``.

    With ``check_lengths``, onnxruntime runs the file on inputs of those lengths against the
    eager model first (:func:`verify_onnx`). The file is written under a temporary name and
    renamed only when all went well, so a failure leaves nothing.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install 'tdanet[onnx]'") from None
    target = Path(path)
    if target.is_dir():
        raise ExportError(f"{target}: is a directory; give a file name such as model.onnx")
    if not target.parent.is_dir():
        raise ExportError(f"{target}: the folder {target.parent} does not exist")
    module = ExportableTDANet(model.eval()).eval()
    samples = max(1, round(example_seconds * model.config.sample_rate))
    example = torch.randn(1, samples)
    try:
        with replaced_on_success(target) as scratch, torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(scratch),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "samples"},
                    OUTPUT_NAME: {0: "batch", 2: "samples"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
            proto = onnx.load(str(scratch))
            entry = proto.metadata_props.add()
            entry.key, entry.value = CONFIG_KEY, json.dumps(model.config.to_dict())
            onnx.save(proto, str(scratch))
            if check_lengths:
                verify_onnx(model, str(scratch), check_lengths, name=str(target))
    except OSError as exc:
        raise ExportError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target


class OnnxModel:
    """An exported model run by onnxruntime: ``model(waveform)`` (batch, T) float32 tensor ->
    (batch, C, T) tensor; ``config`` is the :class:`TDANetConfig` stored in the file."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise CheckpointError(
                f"{path}: running ONNX models needs onnxruntime: pip install 'tdanet[onnx]'"
            ) from None
        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for every kind of bad file
            raise CheckpointError(
                f"{self.path}: not a loadable ONNX model ({type(exc).__name__}); "
                "re-export it with `tdanet export --format onnx`"
            ) from None
        self.config = _config_from_metadata(
            self.path, self.session.get_modelmeta().custom_metadata_map
        )

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, T) or (T,) float tensor -> (batch, C, T) float32 tensor (on the CPU)."""
        waveform = as_batch(waveform)
        array = np.ascontiguousarray(waveform.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(out)


def _config_from_metadata(path: Path, metadata: dict[str, Any]) -> TDANetConfig:
    text = metadata.get(CONFIG_KEY)
    if text is None:
        raise CheckpointError(
            f"{path}: this ONNX file has no TDANet configuration; export it with `tdanet export`"
        )
    try:
        return TDANetConfig.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: bad TDANet configuration in the ONNX metadata ({exc})"
        ) from None


# Lengths the exported graph is checked on: very different from the export example.
CHECK_LENGTHS: tuple[int, ...] = (1, 777, 16001)
# Largest allowed difference between onnxruntime's and PyTorch's output, relative to the
# output's peak: float32 rounds at 1.2e-7 of it and the two runtimes sum in different orders
# (docs/efficiency.md), while a wrong graph is off by 1e-2 or more.
CHECK_TOLERANCE = 1e-5


def verify_onnx(
    model: TDANet,
    path: str | os.PathLike[str],
    lengths: tuple[int, ...] = CHECK_LENGTHS,
    *,
    name: str | None = None,
) -> float:
    """Run the exported file and the eager ``model`` on random inputs of ``lengths`` samples.

    Returns the largest difference relative to the output's peak (max |onnx - torch| /
    max |torch| per input, the worst input), raising :class:`ExportError` above
    :data:`CHECK_TOLERANCE`.
    """
    runtime = OnnxModel(path)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for length in lengths:
        waveform = torch.randn(1, length, generator=generator)
        with torch.inference_mode():
            expected = model(waveform)
        difference = (runtime(waveform) - expected).abs().max().item()
        # A silent output (all zeros) must match exactly: any difference counts in full.
        scale = expected.abs().max().item() or 1.0
        worst = max(worst, difference / scale)
    if not worst <= CHECK_TOLERANCE:
        raise ExportError(
            f"{name or path}: onnxruntime's output differs from PyTorch's by {worst:.2e} of its "
            f"peak (more than {CHECK_TOLERANCE:g}); please report this model configuration"
        )
    return worst

"""ONNX export with a dynamic length axis, and :class:`OnnxModel` to run the result.

The network is traced as it is defined: its forward uses shape-generic ops
(:mod:`tdanet.model.ops`: nearest resize as a gather, adaptive pooling from a cumulative
sum, the position table from its formula while tracing, attention spelled out at
inference), so the graph is right for every length. The only change for export is
numerical: a copy of the model whose gLNs reduce in float64 (``GlobalLayerNorm.wide``), as
onnxruntime's float32 reductions lose accuracy over long inputs.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import replaced_on_success
from .errors import CheckpointError, TDANetError
from .model import TDANet, TDANetConfig, as_batch
from .model.layers import GlobalLayerNorm

# ONNX operator set used for the export.
OPSET = 18
# metadata_props key holding the model's TDANetConfig as JSON.
CONFIG_KEY = "tdanet_config"
INPUT_NAME = "waveform"
OUTPUT_NAME = "sources"


class ExportError(TDANetError):
    """An export that cannot be done: missing exporter, unwritable destination."""


def exportable(model: TDANet) -> TDANet:
    """The model to trace: a copy of ``model`` in eval mode whose gLNs reduce in float64."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, GlobalLayerNorm):
            module.wide = True
    return model


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
    module = exportable(model.eval())
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

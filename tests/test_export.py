from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet.checkpoint import save_checkpoint
from tdanet.cli import main
from tdanet.errors import CheckpointError
from tdanet.export import (
    CHECK_TOLERANCE,
    ExportError,
    OnnxModel,
    export_onnx,
    verify_onnx,
)
from tdanet.model import PRESETS, TDANet

from .conftest import randomize_

TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[TDANet, Path]:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"])).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path)
    return model, path


def test_onnx_runs_any_length_like_pytorch(tiny_export: tuple[TDANet, Path]) -> None:
    model, path = tiny_export
    runtime = OnnxModel(path)
    assert runtime.config == model.config
    gen = torch.Generator().manual_seed(2)
    for batch, length in ((1, 1), (2, 777), (1, 16001), (1, 48013)):
        waveform = torch.randn(batch, length, generator=gen)
        with torch.no_grad():
            expected = model(waveform)
        output = runtime(waveform)
        assert isinstance(output, torch.Tensor) and output.dtype == torch.float32
        assert output.shape == expected.shape == (batch, 2, length)
        assert (output - expected).abs().max().item() <= TOLERANCE, length


def test_sequence_attention_and_other_sizes_export(tmp_path: Path) -> None:
    changes = {"attention": "sequence", "upsampling_depth": 2, "num_sources": 3}
    model = randomize_(TDANet(PRESETS["tdanet-tiny"].replace(**changes))).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert verify_onnx(model, path, lengths=(1, 777, 5003)) <= CHECK_TOLERANCE
    assert OnnxModel(path).config == model.config


def test_export_errors_leave_nothing(tmp_path: Path) -> None:
    model = TDANet(PRESETS["tdanet-tiny"]).eval()
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_onnx_files_are_one_line_errors(
    tmp_path: Path, tiny_export: tuple[TDANet, Path]
) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.onnx"):
        OnnxModel(junk)
    import onnx

    proto = onnx.load(tiny_export[1])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    with pytest.raises(CheckpointError, match="no TDANet configuration"):
        OnnxModel(bare)


def test_export_cli_then_separate_with_onnxruntime(tmp_path: Path) -> None:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"])).eval()
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(model, checkpoint)
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), str(onnx_path), "--format", "onnx"]) == 0
    assert onnx_path.is_file()
    # Refuses to overwrite without --force.
    assert main(["export", str(checkpoint), str(onnx_path)]) == 1

    rng = np.random.default_rng(0)
    mixture = (0.1 * rng.standard_normal(12345)).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mixture, 16000)
    outputs = {}
    for backend, source in (("onnxruntime", onnx_path), ("torch", checkpoint)):
        out_dir = tmp_path / backend
        argv = ["separate", str(tmp_path / "mix.wav"), "-o", str(out_dir), "--model", str(source)]
        assert main([*argv, "--backend", backend, "--quiet"]) == 0
        outputs[backend] = [sf.read(out_dir / f"mix_spk{i}.wav")[0] for i in (1, 2)]
    for onnx_source, torch_source in zip(outputs["onnxruntime"], outputs["torch"], strict=True):
        assert onnx_source.shape == (12345,)
        assert np.abs(onnx_source - torch_source).max() <= 1e-3  # 16-bit files may round apart


def test_bundled_model_exports_with_its_parity_check(tmp_path: Path) -> None:
    # Its outputs peak near 370 on the check's inputs: an absolute 1e-4 was float32 rounding.
    out = tmp_path / "demo.onnx"
    assert main(["export", "tdanet-demo", str(out)]) == 0
    assert out.is_file()


def test_parity_check_is_relative_and_catches_wrong_weights(
    tmp_path: Path, tiny_export: tuple[TDANet, Path]
) -> None:
    model, path = tiny_export
    assert verify_onnx(model, path) <= CHECK_TOLERANCE
    louder = TDANet(model.config).eval()
    louder.load_state_dict(model.state_dict())
    with torch.no_grad():
        louder.decoder.weight.mul_(1000.0)  # same graph, 1000x the output level
    louder_path = export_onnx(louder, tmp_path / "louder.onnx")
    assert verify_onnx(louder, louder_path) <= CHECK_TOLERANCE
    with torch.no_grad():
        louder.decoder.weight.mul_(1.001)  # a 0.1 % error is not rounding
    with pytest.raises(ExportError, match="of its peak"):
        verify_onnx(louder, louder_path)

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tdanet.fast import FastTDANet, optimize_for_inference
from tdanet.model import PRESETS, TDANet, native
from tdanet.model.folding import (
    DepthwiseConv,
    FoldContext,
    gln_scale_shift,
    nearest_runs,
    time_moments,
    total_affine,
    total_moments,
    upsampled_multiply_add_,
)
from tdanet.model.layers import GlobalLayerNorm
from tdanet.model.ops import nearest_index

from .conftest import randomize_

TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["native", "torch"])
def conv_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The native kernels (skipped where they do not build), or torch's operations only."""
    if request.param == "torch":
        monkeypatch.setattr(native, "kernels", lambda: None)
    elif native.kernels() is None:
        pytest.skip("the native kernels do not build here")
    return str(request.param)


def reference_and_fast(changes: dict, seed: int = 0) -> tuple[TDANet, torch.nn.Module]:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"].replace(**changes)), seed).eval()
    return model, optimize_for_inference(model)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "sequence"},
        {"upsampling_depth": 2},
        {"upsampling_depth": 4, "num_blocks": 3},
        {"num_sources": 3, "enc_kernel_size": 2},
        {"sample_rate": 8000},
        {"sample_rate": 22050, "enc_kernel_size": 3},
    ],
)
def test_fast_path_equals_eager_model_on_odd_lengths(changes: dict, conv_path: str) -> None:
    model, fast = reference_and_fast(changes)
    assert isinstance(fast, FastTDANet)
    assert fast.config == model.config
    gen = torch.Generator().manual_seed(1)
    for length in (1, 3, 17, 777, 4001):
        mixture = torch.randn(2, length, generator=gen)
        with torch.no_grad():
            expected = model(mixture)
        output = fast(mixture)
        assert output.shape == expected.shape == (2, model.config.num_sources, length)
        assert (output - expected).abs().max().item() <= TOLERANCE, (changes, length)


def test_plain_convolutions_where_oneDNN_cannot_write_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, fast = reference_and_fast({})
    monkeypatch.setattr(native, "kernels", lambda: None)
    monkeypatch.setattr("tdanet.model.folding._conv_into", lambda: False)
    mixture = torch.randn(2, 777, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(mixture)
    assert (fast(mixture) - expected).abs().max().item() <= TOLERANCE


def test_gathered_guides_equal_the_run_by_run_upsampling(monkeypatch: pytest.MonkeyPatch) -> None:
    model, fast = reference_and_fast({})
    monkeypatch.setattr(native, "kernels", lambda: None)  # the native LA product has no runs
    monkeypatch.setattr(
        "tdanet.model.folding._MAX_RUNS", 1
    )  # every upsampling takes the gather path
    mixture = torch.randn(2, 4001, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(mixture)
    assert (fast(mixture) - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("kept", [False, True])  # scratch buffers, or fresh outputs
def test_large_convolution_outputs_equal_the_eager_model(
    monkeypatch: pytest.MonkeyPatch, kept: bool, conv_path: str
) -> None:
    model, fast = reference_and_fast({})
    monkeypatch.setattr("tdanet.model.folding._FRESH_ELEMENTS", 0)  # every output counts large
    monkeypatch.setattr("tdanet.model.folding._freed_memory_kept", kept)
    buffers = []
    real_buffer = FoldContext.buffer
    monkeypatch.setattr(
        FoldContext, "buffer", lambda *args: buffers.append(args[1]) or real_buffer(*args)
    )
    mixture = torch.randn(2, 4001, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(mixture)
    assert (fast(mixture) - expected).abs().max().item() <= TOLERANCE
    assert any(isinstance(owner, DepthwiseConv) for owner in buffers) is not kept


def test_fast_path_matches_small_preset_and_one_dimensional_input() -> None:
    model = randomize_(TDANet(PRESETS["tdanet-small"]), seed=3).eval()
    fast = optimize_for_inference(model)
    mixture = torch.randn(8001)
    with torch.no_grad():
        expected = model(mixture)
    assert (fast(mixture) - expected).abs().max().item() <= TOLERANCE


def test_fast_path_past_the_position_table() -> None:
    model, fast = reference_and_fast({"max_positions": 8})
    mixture = torch.randn(1, 3001)
    with torch.no_grad():
        expected = model(mixture)
    assert (fast(mixture) - expected).abs().max().item() <= TOLERANCE


def test_batch_items_are_independent() -> None:
    _, fast = reference_and_fast({})
    mixture = torch.randn(3, 2000)
    together = fast(mixture)
    alone = torch.cat([fast(mixture[i : i + 1]) for i in range(3)])
    assert (together - alone).abs().max().item() <= 1e-5


def test_model_is_not_modified() -> None:
    model, _ = reference_and_fast({})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    with torch.no_grad():
        for buffer in fast.buffers():
            buffer.add_(1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training is False


def test_bad_input_shape_is_a_clear_error() -> None:
    _, fast = reference_and_fast({})
    with pytest.raises(ValueError, match="samples >= 1"):
        fast(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="batch, samples"):
        fast(torch.zeros(1, 1, 10))


def test_other_modules_pass_through() -> None:
    module = torch.nn.Identity()
    assert optimize_for_inference(module) is module


def test_gln_scale_shift_matches_global_layer_norm_of_an_affine_map() -> None:
    norm = randomize_(GlobalLayerNorm(6))
    x = torch.randn(2, 50, 6) * 3 + 1  # (batch, T, C)
    gain, offset = torch.randn(2, 6), torch.randn(2, 6)
    scale, shift = gln_scale_shift(
        time_moments(x), 50, norm.gamma, norm.beta, norm.eps, gain, offset
    )
    mapped = (x * gain[:, None] + offset[:, None]).transpose(1, 2)
    expected = norm(mapped).transpose(1, 2)
    assert torch.allclose(x * scale + shift, expected, atol=1e-5)


@pytest.mark.parametrize("frames", [50, 1200])  # the small and the chunked total moments
@pytest.mark.parametrize("batch", [1, 2])  # one item takes scalar arithmetic
def test_gln_from_total_moments_matches_global_layer_norm(frames: int, batch: int) -> None:
    norm = randomize_(GlobalLayerNorm(256))
    x = torch.randn(batch, frames, 256) * 3 + 1  # (batch, T, C)
    moments = total_moments(x)
    assert torch.allclose(moments[1], x.double().square().sum((1, 2))[:, None], rtol=1e-6)
    scale, shift = gln_scale_shift(moments, frames, norm.gamma, norm.beta, norm.eps)
    expected = norm(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(x * scale + shift, expected, atol=1e-5)
    # The general path (a unit gain) gives the same map as the scalar one taken above.
    general = gln_scale_shift(moments, frames, norm.gamma, norm.beta, norm.eps, torch.ones(1))
    assert all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(general, (scale, shift), strict=True)
    )


@pytest.mark.parametrize("frames", [50, 1200])  # the small and the chunked sums
@pytest.mark.parametrize("batch", [1, 2])
def test_total_affine_is_the_global_layer_norm(frames: int, batch: int) -> None:
    norm = randomize_(GlobalLayerNorm(256))
    x = torch.randn(batch, frames, 256) * 3 + 1  # (batch, T, C)
    scale, shift = total_affine(x, norm.gamma, norm.beta, norm.eps)
    assert scale.shape == shift.shape == (batch, 1, 256)
    expected = norm(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(x * scale + shift, expected, atol=1e-5)


@pytest.mark.parametrize(("source", "target"), [(64, 127), (64, 1010), (3, 5)])
def test_upsampled_multiply_add_is_the_resized_product(source: int, target: int) -> None:
    index = nearest_index(source, target, torch.device("cpu"))
    runs = nearest_runs(index)
    assert runs is not None
    d, mul, add = torch.randn(2, target, 8), torch.randn(2, source, 8), torch.randn(2, source, 8)
    expected = d * mul[:, index] + add[:, index]
    assert torch.allclose(upsampled_multiply_add_(d, mul, add, runs), expected, atol=1e-6)


@pytest.mark.parametrize(("source", "target"), [(3, 5), (64, 1010), (505, 1010), (9, 4), (7, 7)])
def test_nearest_index_is_interpolate_rule(source: int, target: int) -> None:
    x = torch.randn(1, 2, source)
    index = nearest_index(source, target, x.device)
    assert torch.equal(x[..., index], F.interpolate(x, size=target, mode="nearest"))


@pytest.mark.parametrize(
    ("source", "target"), [(3, 5), (626, 10010), (5005, 10010), (4, 4), (2, 9)]
)
def test_nearest_runs_expand_to_the_index(source: int, target: int) -> None:
    index = nearest_index(source, target, torch.device("cpu"))
    runs = nearest_runs(index)
    assert runs is not None
    rows = [src + i // repeat for _, src, count, repeat in runs for i in range(count * repeat)]
    assert rows == index.tolist()
    assert [row for row, *_ in runs] == sorted(row for row, *_ in runs)


def test_nearest_runs_refuse_downsampling_and_irregular_indices() -> None:
    assert nearest_runs(nearest_index(9, 4, torch.device("cpu"))) is None
    # 1.5x upsampling alternates repeats 2, 1, 2, 1...: one run per source row.
    assert nearest_runs(nearest_index(200, 300, torch.device("cpu"))) is None


REUSED_MEMORY = """
import os
import numpy as np
from tdanet.fast import optimize_for_inference
from tdanet.model import PRESETS, TDANet

def resident_mib_freed_with_a_64_mib_array():
    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    block = np.ones(16 << 20, np.float32)
    before = resident()
    del block
    return before - resident()

default = resident_mib_freed_with_a_64_mib_array()
optimize_for_inference(TDANet(PRESETS["tdanet-tiny"]))
print(round(default), round(resident_mib_freed_with_a_64_mib_array()))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="mallopt is glibc's")
def test_the_fast_path_makes_the_allocator_keep_freed_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", REUSED_MEMORY], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    default, kept = map(int, done.stdout.split())
    assert default >= 60 and kept <= 4, (default, kept)

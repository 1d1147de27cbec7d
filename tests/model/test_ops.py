from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tdanet.model import PRESETS, TDANet
from tdanet.model.attention import MultiHeadAttention
from tdanet.model.ops import adaptive_average, nearest_resize, transposed_conv1d


@pytest.mark.parametrize(("source", "target"), [(5, 3), (3, 5), (253, 1010), (63, 1000), (8, 8)])
def test_nearest_resize_is_interpolate(source: int, target: int) -> None:
    x = torch.randn(2, 3, source)
    traced = torch.jit.trace(lambda t: nearest_resize(t, target), x)
    assert torch.equal(traced(x), F.interpolate(x, size=target, mode="nearest"))


@pytest.mark.parametrize(("source", "target"), [(10, 3), (1010, 64), (7, 7), (1, 1), (9, 4)])
def test_adaptive_average_is_adaptive_avg_pool(source: int, target: int) -> None:
    x = torch.randn(2, 3, source)
    expected = F.adaptive_avg_pool1d(x, target)
    traced = torch.jit.trace(lambda t: adaptive_average(t, target), x)
    assert torch.allclose(traced(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "frames"),
    [(256, 64, 128, 40), (64, 16, 32, 9), (5, 1, 2, 7), (6, 4, 3, 5), (4, 4, 0, 1), (7, 3, 0, 4)],
)
def test_transposed_conv1d_is_conv_transpose1d(
    kernel: int, stride: int, padding: int, frames: int
) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, frames, 10)
    weight = torch.randn(10, 3, kernel, requires_grad=True)
    expected = F.conv_transpose1d(x.transpose(1, 2), weight, stride=stride, padding=padding)
    got = transposed_conv1d(x, weight, stride, padding)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    (grad,) = torch.autograd.grad(got.square().sum(), weight)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), weight)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)
    fixed = weight.detach()
    traced = torch.jit.trace(lambda t: transposed_conv1d(t, fixed, stride, padding), x)
    longer = torch.randn(1, frames + 5, 10)
    expected = F.conv_transpose1d(longer.transpose(1, 2), fixed, stride=stride, padding=padding)
    assert torch.allclose(traced(longer), expected, atol=1e-5)


def test_spelled_out_attention_is_the_fused_kernel() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, "sequence", 100, 0.0).eval()
    h = torch.randn(2, 37, 32)
    fused = mha.attn(h, h, h, need_weights=False)[0]
    assert torch.allclose(mha.across_frames(h), fused, atol=1e-6)


def test_traced_model_holds_for_other_lengths() -> None:
    """The reason for the ops: a graph traced on one length computes any other."""
    model = TDANet(PRESETS["tdanet-tiny"].replace(attention="sequence")).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 4000), check_trace=False)
        for length in (1000, 9001):
            x = torch.randn(1, length)
            assert torch.allclose(traced(x), model(x), atol=1e-5)

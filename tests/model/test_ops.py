from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tdanet.model import PRESETS, TDANet
from tdanet.model.attention import MultiHeadAttention
from tdanet.model.ops import adaptive_average, nearest_resize


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

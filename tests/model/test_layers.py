"""The eager building blocks compute what their plain PyTorch definitions compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdanet.model.layers import ChannelAffine, ConvNorm, DepthwiseConv1d, GlobalLayerNorm


def assert_trains_like(fast: nn.Conv1d, conv: nn.Conv1d, frames: int) -> torch.Tensor:
    """``fast`` with ``conv``'s weights gives its outputs and gradients; returns fast's output."""
    conv.load_state_dict(fast.state_dict())
    x = torch.randn(3, conv.in_channels, frames, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    out_fast, out_conv = fast(x), conv(y)
    assert torch.allclose(out_fast, out_conv, atol=1e-6)
    upstream = torch.randn_like(out_conv)
    (out_fast * upstream).sum().backward()
    (out_conv * upstream).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, y.grad, atol=1e-5)
    assert fast.weight.grad is not None and conv.weight.grad is not None
    assert torch.allclose(fast.weight.grad, conv.weight.grad, atol=1e-4)
    if conv.bias is not None:
        assert torch.allclose(fast.bias.grad, conv.bias.grad, atol=1e-4)
    return out_fast


@pytest.mark.parametrize("bias", [True, False])
def test_channel_affine_is_a_kernel_one_depthwise_conv(bias: bool) -> None:
    torch.manual_seed(0)
    assert_trains_like(ChannelAffine(6, bias=bias), nn.Conv1d(6, 6, 1, groups=6, bias=bias), 40)


def test_conv_norm_keeps_its_state_dict_keys_for_kernel_one_depthwise() -> None:
    block = ConvNorm(8, 8, 1, groups=8)
    assert isinstance(block.conv, ChannelAffine)
    assert set(block.state_dict()) == {"conv.weight", "conv.bias", "norm.gamma", "norm.beta"}
    assert not isinstance(ConvNorm(8, 8, 5, groups=8).conv, ChannelAffine)
    assert not isinstance(ConvNorm(8, 4, 1).conv, ChannelAffine)


@pytest.mark.parametrize(("kernel", "bias", "frames"), [(5, True, 40), (5, False, 3), (3, True, 1)])
def test_depthwise_conv_trains_like_nn_conv1d(kernel: int, bias: bool, frames: int) -> None:
    torch.manual_seed(2)
    conv = nn.Conv1d(6, 6, kernel, padding=kernel // 2, groups=6, bias=bias)
    out = assert_trains_like(DepthwiseConv1d(6, kernel, bias=bias), conv, frames)
    assert out.grad_fn is not None and "ShiftedTaps" in type(out.grad_fn).__name__


def test_depthwise_conv_is_the_plain_convolution_outside_training() -> None:
    fast = DepthwiseConv1d(4, 5).eval()
    out = fast(torch.randn(1, 4, 30))
    assert out.grad_fn is not None and "Convolution" in type(out.grad_fn).__name__
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DepthwiseConv1d(4, 4)
    assert isinstance(ConvNorm(8, 8, 5, groups=8).conv, DepthwiseConv1d)
    assert not isinstance(ConvNorm(8, 8, 5, stride=2, groups=8).conv, DepthwiseConv1d)


@pytest.mark.parametrize("wide", [False, True])
def test_global_layer_norm_matches_its_formula(wide: bool) -> None:
    torch.manual_seed(1)
    norm = GlobalLayerNorm(16)
    norm.wide = wide
    with torch.no_grad():
        norm.gamma.normal_()
        norm.beta.normal_()
    x = torch.randn(2, 16, 300) * 3 + 2
    wide_x = x.double()
    mean = wide_x.mean(dim=(1, 2), keepdim=True)
    var = (wide_x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
    expected = (wide_x - mean) / torch.sqrt(var + norm.eps)
    expected = expected * norm.gamma.double()[:, None] + norm.beta.double()[:, None]
    assert torch.allclose(norm(x).double(), expected, atol=1e-5)

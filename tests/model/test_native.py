from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tdanet.model import native
from tdanet.model.folding import total_affine

# Set in CI: a machine with a C compiler must build and use the kernels, not skip.
REQUIRE_NATIVE = "TDANET_REQUIRE_NATIVE"


@pytest.fixture
def kernels() -> native.Kernels:
    compiled = native.kernels()
    if compiled is None:
        if os.environ.get(REQUIRE_NATIVE):
            pytest.fail(f"{REQUIRE_NATIVE} is set but the native kernels did not build or load")
        pytest.skip("the native kernels do not build here (no C compiler?): torch computes")
    return compiled


@pytest.fixture
def fresh_kernels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """An empty cache folder and a cleared per-process cache, restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native.kernels.cache_clear()
    yield
    native.kernels.cache_clear()


def gln(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """The gLN of x (batch, T, C) in float64."""
    x = x.double()
    mean = x.mean((1, 2), keepdim=True)
    var = (x - mean).pow(2).mean((1, 2), keepdim=True)
    return (x - mean) / (var + eps).sqrt() * gamma.double() + beta.double()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depthwise_equals_conv1d_torch_sums_and_gln(
    kernels: native.Kernels, stride: int, kernel_size: int, with_bias: bool
) -> None:
    gen = torch.Generator().manual_seed(stride * 10 + kernel_size)
    padding = kernel_size // 2
    # Lengths around the edges and past the 256-frame float32 partial sums; channels that
    # are and are not multiples of the 64-channel register block.
    for batch, length, channels in [(1, 1, 1), (2, 2, 3), (3, 37, 64), (2, 300, 70), (1, 600, 130)]:
        x = torch.randn(batch, length, channels, generator=gen)
        weight = torch.randn(channels, 1, kernel_size, generator=gen)
        bias = torch.randn(channels, generator=gen) if with_bias else None
        gamma, beta = torch.randn(2, channels, generator=gen)
        expected = F.conv1d(x.transpose(1, 2), weight, bias, stride, padding, 1, channels)
        expected = expected.transpose(1, 2)
        out = torch.full(expected.shape, float("nan"))
        sums = torch.full((batch, 2, channels), float("nan"), dtype=torch.float64)
        affine = torch.full((2, batch, 1, channels), float("nan"))
        taps = weight[:, 0].t().contiguous()
        norm = (gamma, beta, 1e-8)
        native.depthwise(kernels, x, taps, bias, stride, padding, out, sums, norm, affine)
        assert torch.allclose(out, expected, atol=1e-5), (batch, length, channels)
        exact = expected.double()
        assert torch.allclose(sums[:, 0], exact.sum(1), rtol=1e-6, atol=1e-4)
        assert torch.allclose(sums[:, 1], (exact * exact).sum(1), rtol=1e-6, atol=1e-4)
        # The map is the gLN of the output, as torch's folded path computes it.
        scale, shift = total_affine(expected, gamma, beta, 1e-8)
        assert torch.allclose(affine[0], scale, rtol=1e-5, atol=1e-5)
        assert torch.allclose(affine[1], shift, rtol=1e-5, atol=1e-5)
        if expected[0].numel() > 1:  # one value has no spread: 1 / sqrt(eps) amplifies rounding
            normed = gln(expected, gamma, beta, 1e-8)
            assert torch.allclose((out * affine[0] + affine[1]).double(), normed, atol=1e-4)
        # Without sums the map still comes; with neither only out is written.
        again, alone = torch.full(expected.shape, float("nan")), torch.full_like(affine, 7.0)
        native.depthwise(kernels, x, taps, bias, stride, padding, again, None, norm, alone)
        assert torch.equal(again, out) and torch.equal(alone, affine)
        plain = torch.full(expected.shape, float("nan"))
        native.depthwise(kernels, x, taps, bias, stride, padding, plain)
        assert torch.equal(plain, out)


@pytest.mark.parametrize("slope", [None, 0.25, -0.5])
def test_gln_in_place_with_prelu(kernels: native.Kernels, slope: float | None) -> None:
    gen = torch.Generator().manual_seed(5)
    for batch, length, channels in [(1, 1, 2), (2, 3, 70), (3, 300, 64), (1, 600, 130)]:
        # An offset mean: the variance must not come from a cancelling float32 difference.
        y = torch.randn(batch, length, channels, generator=gen) * 3 + 5
        gamma, beta = torch.randn(2, channels, generator=gen)
        expected = gln(y, gamma, beta, 1e-8)
        if slope is not None:
            expected = torch.where(expected < 0, slope * expected, expected)
        out = native.gln_(kernels, y, gamma, beta, 1e-8, slope)
        assert out is y
        assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-4), (batch, length)


def test_la_product_equals_torch_with_and_without_upsampling(kernels: native.Kernels) -> None:
    gen = torch.Generator().manual_seed(6)
    for batch, length, source, channels in [(1, 5, 5, 3), (2, 1010, 64, 70), (2, 9, 20, 64)]:
        d = torch.randn(batch, length, channels, generator=gen)
        scale, offset = torch.randn(2, batch, 1, channels, generator=gen)
        gate, shift = torch.randn(2, batch, source, channels, generator=gen)
        index = None
        if source != length:
            index = F.interpolate(
                torch.arange(source, dtype=torch.float32)[None, None], size=length
            )[0, 0].long()
        rows = slice(None) if index is None else index
        expected = (d * scale + offset) * gate[:, rows] + shift[:, rows]
        guides = (gate.clone(), shift.clone())
        out = native.la_product_(kernels, d, scale, offset, gate, shift, index)
        assert out is d
        assert torch.allclose(d, expected, rtol=1e-5, atol=1e-5), (length, source)
        assert torch.equal(gate, guides[0]) and torch.equal(shift, guides[1])  # not written


def test_moments_and_the_gln_of_per_channel_maps(kernels: native.Kernels) -> None:
    gen = torch.Generator().manual_seed(7)
    for batch, length, channels, maps in [(1, 1, 2, 1), (2, 300, 70, 3), (3, 600, 64, 1)]:
        x = torch.randn(batch, length, channels, generator=gen) + 2
        s1, s2 = native.moments(kernels, x)
        assert torch.allclose(s1, x.double().sum(1), rtol=1e-6, atol=1e-4)
        assert torch.allclose(s2, x.double().pow(2).sum(1), rtol=1e-6, atol=1e-4)
        weight, gamma, beta = torch.randn(3, maps, channels, generator=gen)
        a, b = torch.randn(2, batch, 1, channels, generator=gen)
        for gain, offset in [(None, None), (a, b)]:
            scale, shift = native.gln_of_map(
                kernels, (s1, s2), length, weight, gamma, beta, 1e-8, gain, offset
            )
            assert scale.shape == shift.shape == (maps, batch, 1, channels)
            inner = x if gain is None else gain * x + offset
            for m in range(maps):
                expected = gln(weight[m] * inner, gamma[m], beta[m], 1e-8)
                got = (x * scale[m] + shift[m]).double()
                assert torch.allclose(got, expected, rtol=1e-5, atol=1e-4), (length, m)
    # Moments as torch's time_moments gives them (separate tensors) are read the same way.
    s1, s2 = x.double().sum(1), x.double().pow(2).sum(1)
    assert all(
        torch.allclose(u, v)
        for u, v in zip(
            native.gln_of_map(kernels, (s1, s2), length, weight, gamma, beta, 1e-8, a, b),
            native.gln_of_map(
                kernels, native.moments(kernels, x), length, weight, gamma, beta, 1e-8, a, b
            ),
            strict=True,
        )
    )
    with pytest.raises(ValueError, match="do not fit"):
        native.gln_of_map(kernels, (s1, s2), length, weight[:, 1:], gamma, beta, 1e-8)


def test_la_product_refuses_shapes_that_do_not_fit(kernels: native.Kernels) -> None:
    d, maps, guides = torch.zeros(1, 8, 4), torch.zeros(1, 1, 4), torch.zeros(1, 4, 4)
    with pytest.raises(ValueError, match="do not fit"):  # an upsampling without its index
        native.la_product_(kernels, d, maps, maps, guides, guides, None)
    with pytest.raises(ValueError, match="do not fit"):
        native.la_product_(kernels, d, maps, maps, guides, guides, torch.zeros(7).long())
    with pytest.raises(ValueError, match="do not fit"):
        native.la_product_(kernels, d, maps, torch.zeros(1, 1, 3), guides, guides, None)


def test_builds_once_into_the_cache_folder(kernels: native.Kernels, tmp_path: Path) -> None:
    compiler = native._compiler()
    assert compiler is not None
    library = native.build(compiler, tmp_path)
    assert library.parent == tmp_path and library.suffix == ".so"
    stamp = library.stat().st_mtime_ns
    assert native.build(compiler, tmp_path) == library
    assert library.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no partial file left


def test_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch, fresh_kernels: None) -> None:
    monkeypatch.setenv("TDANET_NATIVE", "0")
    assert native.kernels() is None


def test_failing_compiler_means_no_kernels_and_no_file(
    monkeypatch: pytest.MonkeyPatch, fresh_kernels: None, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", "false")  # exits 1: a compiler that fails
    monkeypatch.setattr(
        native.shutil, "which", lambda name: "/bin/false" if name == "false" else None
    )
    assert native.kernels() is None
    assert not list((tmp_path / "tdanet" / "native").glob("*.so"))


def test_no_cache_folder_means_no_kernels(
    monkeypatch: pytest.MonkeyPatch, fresh_kernels: None
) -> None:
    def homeless() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(native.Path, "home", homeless)
    assert native.kernels() is None


@pytest.mark.parametrize("broken", ["depthwise", "gln", "moments", "gln_of_map", "la_product"])
def test_kernels_that_compute_wrong_are_not_used(
    monkeypatch: pytest.MonkeyPatch, fresh_kernels: None, broken: str
) -> None:
    def wrong(*args: object) -> int:
        return 0  # writes nothing: the output keeps whatever memory held

    real_load = native._load

    def load_one_broken(library: Path) -> native.Kernels:
        loaded = real_load(library)
        return native.Kernels(**{**vars(loaded), broken: wrong})

    monkeypatch.setattr(native, "_load", load_one_broken)
    assert native.kernels() is None


@pytest.mark.usefixtures("one_thread")
def test_the_fast_path_runs_the_kernels_on_one_thread(
    kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdanet.fast import optimize_for_inference
    from tdanet.model import PRESETS, TDANet

    from ..conftest import randomize_

    names = ["depthwise", "gln_", "moments", "gln_of_map", "la_product_"]
    calls: dict[str, list[tuple[object, ...]]] = {name: [] for name in names}
    for name, seen in calls.items():
        real = getattr(native, name)
        monkeypatch.setattr(
            native, name, lambda *args, real=real, seen=seen: seen.append(args) or real(*args)
        )
    model = randomize_(TDANet(PRESETS["tdanet-tiny"])).eval()
    mixture = torch.randn(2, 4001)
    with torch.no_grad():
        expected = model(mixture)
    assert (optimize_for_inference(model)(mixture) - expected).abs().max().item() <= 1e-4
    # Every depthwise conv of kernel 5 (levels, LAs, the attention's MLP) ran natively, most
    # with their gLN's map; so did the projections' gLNs, the guides and every LA product.
    depthwise = calls["depthwise"]
    assert len(depthwise) >= 10 and sum(args[8] is not None for args in depthwise) >= 8
    assert all(calls[name] for name in names)
    # With several threads torch's operators, which use them, run instead.
    for seen in calls.values():
        seen.clear()
    torch.set_num_threads(2)
    assert (optimize_for_inference(model)(mixture) - expected).abs().max().item() <= 1e-4
    assert not any(calls.values())

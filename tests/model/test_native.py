from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tdanet.model import native

# Set in CI: a machine with a C compiler must build and use the kernel, not skip.
REQUIRE_NATIVE = "TDANET_REQUIRE_NATIVE"


@pytest.fixture
def kernel() -> native.Kernel:
    function = native.kernel()
    if function is None:
        if os.environ.get(REQUIRE_NATIVE):
            pytest.fail(f"{REQUIRE_NATIVE} is set but the native kernel did not build or load")
        pytest.skip("the native kernel does not build here (no C compiler?): torch convolves")
    return function


@pytest.fixture
def fresh_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """An empty cache folder and a cleared per-process cache, restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native.kernel.cache_clear()
    yield
    native.kernel.cache_clear()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("with_bias", [True, False])
def test_kernel_equals_conv1d_and_torch_sums(
    kernel: native.Kernel, stride: int, kernel_size: int, with_bias: bool
) -> None:
    gen = torch.Generator().manual_seed(stride * 10 + kernel_size)
    padding = kernel_size // 2
    # Lengths around the edges and past the 256-frame float32 partial sums; channels that
    # are and are not multiples of the 64-channel register block.
    for batch, length, channels in [(1, 1, 1), (2, 2, 3), (3, 37, 64), (2, 300, 70), (1, 600, 130)]:
        x = torch.randn(batch, length, channels, generator=gen)
        weight = torch.randn(channels, 1, kernel_size, generator=gen)
        bias = torch.randn(channels, generator=gen) if with_bias else None
        expected = F.conv1d(x.transpose(1, 2), weight, bias, stride, padding, 1, channels)
        expected = expected.transpose(1, 2)
        out = torch.full(expected.shape, float("nan"))
        sums = torch.full((batch, 2, channels), float("nan"), dtype=torch.float64)
        taps = weight[:, 0].t().contiguous()
        native.depthwise(kernel, x, taps, bias, stride, padding, out, sums)
        assert torch.allclose(out, expected, atol=1e-5), (batch, length, channels)
        exact = expected.double()
        assert torch.allclose(sums[:, 0], exact.sum(1), rtol=1e-6, atol=1e-4)
        assert torch.allclose(sums[:, 1], (exact * exact).sum(1), rtol=1e-6, atol=1e-4)
        # Without sums only out is written.
        again = torch.full(expected.shape, float("nan"))
        native.depthwise(kernel, x, taps, bias, stride, padding, again)
        assert torch.equal(again, out)


def test_builds_once_into_the_cache_folder(kernel: native.Kernel, tmp_path: Path) -> None:
    compiler = native._compiler()
    assert compiler is not None
    library = native.build(compiler, tmp_path)
    assert library.parent == tmp_path and library.suffix == ".so"
    stamp = library.stat().st_mtime_ns
    assert native.build(compiler, tmp_path) == library
    assert library.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no partial file left


def test_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch, fresh_kernel: None) -> None:
    monkeypatch.setenv("TDANET_NATIVE", "0")
    assert native.kernel() is None


def test_failing_compiler_means_no_kernel_and_no_file(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel: None, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", "false")  # exits 1: a compiler that fails
    monkeypatch.setattr(
        native.shutil, "which", lambda name: "/bin/false" if name == "false" else None
    )
    assert native.kernel() is None
    assert not list((tmp_path / "tdanet" / "native").glob("*.so"))


def test_no_cache_folder_means_no_kernel(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel: None
) -> None:
    def homeless() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(native.Path, "home", homeless)
    assert native.kernel() is None


def test_a_kernel_that_computes_wrong_is_not_used(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel: None
) -> None:
    def wrong(*args: object) -> int:
        return 0  # writes nothing: out keeps whatever memory held

    monkeypatch.setattr(native, "_load", lambda library: wrong)
    assert native.kernel() is None


@pytest.mark.usefixtures("one_thread")
def test_the_fast_path_runs_the_kernel_on_one_thread(
    kernel: native.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdanet.fast import optimize_for_inference
    from tdanet.model import PRESETS, TDANet

    from ..conftest import randomize_

    calls = []
    real = native.depthwise
    monkeypatch.setattr(native, "depthwise", lambda *args: calls.append(args[7]) or real(*args))
    model = randomize_(TDANet(PRESETS["tdanet-tiny"])).eval()
    mixture = torch.randn(2, 4001)
    with torch.no_grad():
        expected = model(mixture)
    assert (optimize_for_inference(model)(mixture) - expected).abs().max().item() <= 1e-4
    # Every depthwise conv of kernel 5 (levels, LAs, the attention's MLP) ran natively, most
    # of them with the moments for their gLN.
    assert len(calls) >= 10 and sum(sums is not None for sums in calls) >= len(calls) // 2
    # With several threads oneDNN's convolution, which uses them, runs instead.
    calls.clear()
    torch.set_num_threads(2)
    assert (optimize_for_inference(model)(mixture) - expected).abs().max().item() <= 1e-4
    assert not calls

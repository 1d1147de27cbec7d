"""StreamingSeparator: streamed output equals the offline causal forward, with fixed latency."""

from __future__ import annotations

import itertools

import pytest
import torch

from tdanet import load_model
from tdanet.model import TFACM, TFACM_PRESETS
from tdanet.streaming import StreamingSeparator

from .conftest import randomize_

TINY = TFACM_PRESETS["tfacm-tiny"]


def stream(engine: StreamingSeparator, mixture: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Feed ``mixture`` (B, L) in blocks cycling through ``sizes``; concatenate all outputs."""
    outputs, start = [], 0
    for size in itertools.cycle(sizes):
        if start >= mixture.shape[-1]:
            break
        outputs.append(engine.process(mixture[:, start : start + size]))
        start += size
    outputs.append(engine.flush())
    return torch.cat(outputs, dim=-1)


@pytest.mark.parametrize("context", [0, 1, 7])
def test_streamed_equals_offline_with_irregular_blocks(context: int) -> None:
    model = randomize_(TFACM(TINY.replace(attention_context=context))).eval()
    hop, win = TINY.hop_length, TINY.win_length
    mixture = torch.randn(2, 40 * hop + 5)
    with torch.no_grad():
        offline = model(mixture)
    sizes = [1, 3, hop, 0, 7, 5 * hop + 1, 2, 3 * win, hop - 1]
    streamed = stream(StreamingSeparator(model, batch=2), mixture, sizes)
    assert streamed.shape == offline.shape
    assert torch.allclose(streamed, offline, atol=1e-5, rtol=0)


def test_small_preset_streams_like_offline(one_thread: None) -> None:
    config = TFACM_PRESETS["tfacm-small"]
    model = randomize_(TFACM(config)).eval()
    mixture = torch.randn(1, 2 * config.segment_frames * config.hop_length + 77)
    with torch.no_grad():
        offline = model(mixture)
    streamed = stream(StreamingSeparator(model), mixture, [256, 100, 128, 1000])
    assert torch.allclose(streamed, offline, atol=1e-5, rtol=0)


def test_latency_is_fixed_at_one_window() -> None:
    """After R input samples, exactly the outputs before R - win + 1 (hop-aligned) are out."""
    model = randomize_(TFACM(TINY)).eval()
    hop, win = TINY.hop_length, TINY.win_length
    engine = StreamingSeparator(model)
    assert engine.latency_samples == win
    assert engine.latency_seconds == win / TINY.sample_rate
    received = emitted = 0
    for size in [1, 2, hop, 5, hop, hop, 3 * hop + 2, 1, 1, 1]:
        out = engine.process(torch.randn(size))
        received += size
        emitted += out.shape[-1]
        assert emitted == max(0, received // hop * hop - (win - hop))
        # Output sample n is out once input n + win - 1 is in.
        assert emitted >= received - win + 1
    assert emitted + engine.flush().shape[-1] == received


def test_one_hop_blocks_give_one_hop_back_after_warm_up() -> None:
    model = randomize_(TFACM(TINY)).eval()
    hop, win = TINY.hop_length, TINY.win_length
    engine = StreamingSeparator(model)
    lengths = [engine.process(torch.randn(hop)).shape[-1] for _ in range(10)]
    warm_up = win // hop - 1
    assert lengths == [0] * warm_up + [hop] * (10 - warm_up)


def test_reset_starts_a_new_stream_and_flush_ends_one() -> None:
    model = randomize_(TFACM(TINY)).eval()
    engine = StreamingSeparator(model)
    mixture = torch.randn(1, 123)
    first = stream(engine, mixture, [10])
    with pytest.raises(RuntimeError, match="reset"):
        engine.process(mixture)
    engine.reset()
    assert torch.equal(stream(engine, mixture, [10]), first)
    engine.reset()
    assert engine.flush().shape == (1, 2, 0)


def test_rejects_tdanet_and_bad_blocks() -> None:
    with pytest.raises(TypeError, match="causal TFACM"):
        StreamingSeparator(load_model("tdanet-tiny"))  # type: ignore[arg-type]
    engine = StreamingSeparator(randomize_(TFACM(TINY)).eval(), batch=2)
    with pytest.raises(ValueError, match=r"\(2, samples\)"):
        engine.process(torch.zeros(3, 10))

"""TFACM: config, shapes, causality of every preset, checkpoints and load_model for the family."""

from __future__ import annotations

import pytest
import torch

from tdanet import load_checkpoint, load_model, save_checkpoint
from tdanet.checkpoint import read_checkpoint
from tdanet.errors import CheckpointError
from tdanet.model import TFACM, TFACM_PRESETS, TDANet, TFACMConfig
from tdanet.pretrained import require_tdanet

from ..conftest import randomize_

TINY = TFACM_PRESETS["tfacm-tiny"]


def tiny_model(**changes: object) -> TFACM:
    return randomize_(TFACM(TINY.replace(**changes))).eval()


def test_config_round_trip_names_its_family() -> None:
    values = TINY.to_dict()
    assert values["family"] == "tfacm"
    assert TFACMConfig.from_dict(values) == TINY
    assert TINY.replace(hidden=4).hidden == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hop_length": 12}, "multiple of hop_length"),
        ({"hop_length": 32}, "at least twice"),
        ({"emb_dim": 9}, "divisible by num_heads"),
        ({"attention_context": -1}, "attention_context"),
        ({"segment_frames": 0}, "segment_frames"),
        ({"emb_kernel": 40}, "frequency bins"),
        ({"family": "tdanet"}, "family"),
        ({"bogus": 1}, "unknown key"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_paper_preset_size() -> None:
    config = TFACM_PRESETS["tfacm"]
    model = TFACM(config)
    # Pinned so that an accidental architecture change shows; see docs/architecture.md.
    assert sum(p.numel() for p in model.parameters()) == 914_348
    assert (config.sample_rate, config.win_length, config.hop_length) == (8000, 64, 8)
    assert (config.emb_dim, config.num_blocks, config.hidden) == (64, 3, 64)


@pytest.mark.parametrize("length", [1, 7, 8, 101, 333])
def test_output_has_the_input_length(length: int) -> None:
    model = tiny_model()
    with torch.no_grad():
        assert model(torch.randn(length)).shape == (1, 2, length)
        assert model(torch.randn(3, length)).shape == (3, 2, length)


def test_rejects_empty_or_badly_shaped_input() -> None:
    model = tiny_model()
    for bad in (torch.zeros(1, 0), torch.zeros(1, 1, 10)):
        with pytest.raises(ValueError, match="samples"):
            model(bad)


@pytest.mark.parametrize("name", sorted(TFACM_PRESETS))
def test_every_preset_is_causal(name: str, one_thread: None) -> None:
    """Outputs up to t do not change when only inputs from t + look-ahead on change."""
    config = TFACM_PRESETS[name]
    model = randomize_(TFACM(config)).eval()
    look_ahead = config.latency_samples
    frames = 3 * config.segment_frames + 5
    length = frames * config.hop_length
    mixture = torch.randn(1, length)
    with torch.no_grad():
        reference = model(mixture)
        for t in (length // 3, length // 2 + 3):
            changed = mixture.clone()
            changed[:, t + look_ahead :] = torch.randn(1, length - t - look_ahead)
            output = model(changed)
            assert torch.equal(output[..., : t + 1], reference[..., : t + 1])
            # The test is not vacuous: the perturbation does change the later output.
            assert not torch.allclose(
                output[..., t + look_ahead :], reference[..., t + look_ahead :]
            )


def test_attention_context_limits_the_history() -> None:
    """One block with short segments forgets a change once it is out of the attention window."""
    mixture = torch.randn(1, 600)
    changed = mixture.clone()
    changed[:, :8] += 1.0
    late = 400  # 50 frames on: beyond convs (2 + 2 + 3 frames), segments (2) and context (7)
    for context, forgets in ((7, True), (0, False)):
        model = tiny_model(num_blocks=1, segment_frames=2, attention_context=context)
        with torch.no_grad():
            a, b = model(mixture), model(changed)
        assert torch.equal(a[..., late:], b[..., late:]) is forgets
        assert not torch.allclose(a[..., :64], b[..., :64])


def test_gradients_reach_every_weight() -> None:
    model = TFACM(TINY).train()
    model(torch.randn(2, 200)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_presets_resolve_through_load_model() -> None:
    for name in TFACM_PRESETS:
        model = load_model(name)
        assert isinstance(model, TFACM)
        assert model.config == TFACM_PRESETS[name]
        assert not model.training
    assert isinstance(load_model(TINY), TFACM)
    assert load_model("tfacm-tiny", attention_context=0).config.attention_context == 0


def test_checkpoint_round_trip_keeps_family_and_weights(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "tfacm.pt"
    model = tiny_model()
    save_checkpoint(model, path, metadata={"note": "test"})
    assert read_checkpoint(path)["config"]["family"] == "tfacm"
    loaded = load_model(str(path))
    assert isinstance(loaded, TFACM)
    assert loaded.config == model.config
    mixture = torch.randn(1, 300)
    with torch.no_grad():
        assert torch.equal(loaded(mixture), model(mixture))
    assert isinstance(load_checkpoint(path), TFACM)


def test_checkpoint_without_family_is_tdanet(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "tdanet.pt"
    save_checkpoint(load_model("tdanet-tiny"), path)
    assert "family" not in read_checkpoint(path)["config"]
    assert isinstance(load_model(str(path)), TDANet)


def test_unknown_family_or_mismatched_weights_are_one_line_errors(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "odd.pt"
    payload = {
        "format_version": 1,
        "config": {**TINY.to_dict(), "family": "mystery"},
        "state_dict": TFACM(TINY).state_dict(),
        "metadata": {},
    }
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown model family 'mystery'"):
        load_model(str(path))
    payload["config"] = TINY.replace(hidden=4).to_dict()
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="shape"):
        load_model(str(path))


def test_tdanet_only_tools_refuse_tfacm_in_one_line() -> None:
    with pytest.raises(CheckpointError, match="tdanet stream"):
        require_tdanet(load_model("tfacm-tiny"), "tdanet export")
    tdanet = load_model("tdanet-tiny")
    assert require_tdanet(tdanet, "x") is tdanet


def test_gradients_are_finite_for_training() -> None:
    # The overlap-add envelope is zero before the first full window: dividing there and
    # cropping afterwards would give 0/0 gradients.
    model = load_model("tfacm-tiny", sample_rate=8000).train()
    mixture = 0.1 * torch.randn(2, 3001)
    model(mixture).square().mean().backward()
    assert all(
        p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
    )

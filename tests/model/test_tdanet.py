from __future__ import annotations

import numpy as np
import pytest
import torch

from tdanet.checkpoint import load_checkpoint
from tdanet.model import PRESETS, TDANet, TDANetConfig, crop_to_input, pad_to_valid_length
from tdanet.model.attention import sinusoid_table

from ..conftest import OFFICIAL_SMALL, randomize_
from ..release_reference import release_forward


def release_state(model: TDANet) -> dict[str, torch.Tensor]:
    """The model's weights in the release layout (with its 10000-row position table)."""
    state = dict(model.state_dict())
    state["sm.unet.globalatt.attn.pos_enc.pe"] = sinusoid_table(10000, model.config.in_channels)[
        None
    ]
    return state


def test_official_fixture_matches_expected_output() -> None:
    model = load_checkpoint(OFFICIAL_SMALL / "checkpoint.pth")
    mixture = torch.from_numpy(np.load(OFFICIAL_SMALL / "input.npy"))
    expected = np.load(OFFICIAL_SMALL / "expected.npy")
    with torch.no_grad():
        output = model(mixture).numpy()
    assert output.shape == expected.shape == (1, 2, 4001)
    assert np.abs(output - expected).max() <= 1e-5


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"num_sources": 3},
        {"enc_kernel_size": 2},
        {"sample_rate": 8000},
        {"sample_rate": 8000, "enc_kernel_size": 2, "upsampling_depth": 2},
        {"upsampling_depth": 4, "num_blocks": 1},
        {"out_channels": 8, "in_channels": 24, "num_heads": 8},
        {"sample_rate": 22050, "enc_kernel_size": 4},
    ],
)
def test_matches_release_transcription_for_any_config(changes: dict) -> None:
    config = PRESETS["tdanet-tiny"].replace(**changes)
    model = randomize_(TDANet(config)).eval()
    state = release_state(model)
    release_args = {
        k: getattr(config, k)
        for k in (
            "out_channels",
            "in_channels",
            "num_blocks",
            "upsampling_depth",
            "enc_kernel_size",
            "num_sources",
            "sample_rate",
        )
    }
    batch = torch.randn(3, 1237)
    with torch.no_grad():
        ours = model(batch)
        for item in range(batch.shape[0]):
            reference = release_forward(
                batch[item : item + 1], state, release_args, heads=config.num_heads
            )
            assert ours.shape == (3, config.num_sources, 1237)
            assert (ours[item] - reference[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("length", [1, 2, 15, 16, 17, 63, 64, 65, 127, 1001, 4000])
def test_output_has_exactly_the_input_length(length: int) -> None:
    model = TDANet(PRESETS["tdanet-tiny"]).eval()
    with torch.no_grad():
        assert model(torch.randn(2, length)).shape == (2, 2, length)
        assert model(torch.randn(length)).shape == (1, 2, length)


def test_rejects_empty_and_badly_shaped_input() -> None:
    model = TDANet(PRESETS["tdanet-tiny"]).eval()
    with pytest.raises(ValueError, match="samples >= 1"):
        model(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="batch, samples"):
        model(torch.zeros(1, 1, 100))


@pytest.mark.parametrize("attention", ["frame", "sequence"])
def test_items_are_independent_of_their_batch(attention: str) -> None:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"].replace(attention=attention))).eval()
    batch = torch.randn(4, 800)
    with torch.no_grad():
        together = model(batch)
        other = model(torch.cat([batch[:1], 5 * torch.randn(3, 800)]))
        alone = model(batch[:1])
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    assert torch.allclose(other[0], alone[0], atol=1e-5)


def test_sequence_attention_mixes_frames_and_frame_attention_does_not() -> None:
    from tdanet.model.attention import MultiHeadAttention

    x = torch.randn(1, 32, 20)
    changed = x.clone()
    changed[..., 0] += 3.0 * torch.randn(32)
    for mode, expect_spread in (("frame", False), ("sequence", True)):
        layer = MultiHeadAttention(32, 4, mode, 100, 0.0).eval()
        with torch.no_grad():
            diff = (layer(x) - layer(changed)).abs()[..., 1:].max()
        assert (diff > 1e-4) == expect_spread, mode


def test_frame_attention_equals_release_sequence_first_call_at_batch_one() -> None:
    from tdanet.model.attention import MultiHeadAttention

    layer = randomize_(MultiHeadAttention(32, 4, "frame", 100, 0.0)).eval()
    x = torch.randn(1, 32, 30)
    h = layer.attn_in_norm(x.transpose(1, 2)) + layer.pos_enc(30)
    sequence_first = torch.nn.MultiheadAttention(32, 4).eval()
    sequence_first.load_state_dict(layer.attn.state_dict())
    with torch.no_grad():
        out = sequence_first(h, h, h)[0]
        expected = layer.norm(2 * out).transpose(1, 2)
        assert torch.allclose(layer(x), expected, atol=1e-6)


@pytest.mark.parametrize("name,count", [("tdanet", 2_353_479), ("tdanet-large", 2_339_431)])
def test_full_size_parameter_counts(name: str, count: int) -> None:
    assert sum(p.numel() for p in TDANet(PRESETS[name]).parameters()) == count


def test_inputs_beyond_the_position_table_extend_it_deterministically() -> None:
    config = PRESETS["tdanet-tiny"]
    model = randomize_(TDANet(config)).eval()
    short_table = TDANet(config.replace(max_positions=4)).eval()
    short_table.load_state_dict(model.state_dict())
    wave = torch.randn(1, 3000)  # 3000 / (4 * 4) samples per top frame: > 4 top frames
    with torch.no_grad():
        assert torch.equal(model(wave), short_table(wave))


def test_position_table_matches_release_formula() -> None:
    table = sinusoid_table(50, 16)
    pos, i = 7, 3
    w = 10000 ** (-2 * i / 16)
    assert table[pos, 2 * i].item() == pytest.approx(np.sin(pos * w), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(np.cos(pos * w), abs=1e-6)


@pytest.mark.parametrize("length", [1, 5, 64, 100, 1001])
def test_padding_and_crop_are_inverse(length: int) -> None:
    wave = torch.randn(2, length)
    padded, rest = pad_to_valid_length(wave, 64, 16)
    assert padded.shape[-1] == length + rest + 2 * 48
    assert torch.equal(crop_to_input(padded, 64, 16, length), wave)


@pytest.mark.parametrize("length", [1, 37, 1000])
def test_exact_length_when_kernel_is_not_a_multiple_of_four(length: int) -> None:
    config = PRESETS["tdanet-tiny"].replace(sample_rate=22050, enc_kernel_size=3)
    assert config.kernel_size % 4 != 0
    with torch.no_grad():
        assert TDANet(config).eval()(torch.randn(1, length)).shape == (1, 2, length)


def test_training_mode_runs_backward_with_dropout_and_drop_path() -> None:
    model = TDANet(PRESETS["tdanet-tiny"].replace(dropout=0.1, drop_path=0.1)).train()
    out = model(torch.randn(2, 500))
    out.pow(2).mean().backward()
    # As released, the top level's fused feature is never read, so its LA gets no gradient.
    unused = f"sm.unet.loc_glo_fus.{model.config.upsampling_depth - 1}."
    for name, param in model.named_parameters():
        assert (param.grad is None) == name.startswith(unused), name


def test_config_is_part_of_the_model() -> None:
    config = TDANetConfig(num_sources=3, in_channels=64, out_channels=16, num_blocks=1)
    assert TDANet(config).config is config

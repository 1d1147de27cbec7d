from __future__ import annotations

import dataclasses

import pytest

from tdanet.model import PRESETS, TDANetConfig, get_preset


def test_presets_derive_kernel_hop_and_bases() -> None:
    assert (PRESETS["tdanet"].kernel_size, PRESETS["tdanet"].hop_size) == (64, 16)
    assert PRESETS["tdanet"].enc_bases == 33
    assert (PRESETS["tdanet-large"].kernel_size, PRESETS["tdanet-large"].enc_bases) == (32, 17)


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown key.*hidden"):
        TDANetConfig.from_dict({"hidden": 3})


def test_config_is_frozen_and_round_trips() -> None:
    config = PRESETS["tdanet-small"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_blocks = 3  # type: ignore[misc]
    assert TDANetConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "values,match",
    [
        ({"num_blocks": 0}, "num_blocks"),
        ({"upsampling_depth": 1}, "upsampling_depth"),
        ({"attention": "global"}, "attention"),
        ({"in_channels": 30, "num_heads": 8}, "divisible"),
        ({"enc_kernel_size": 1, "sample_rate": 2000}, "at least 4 samples"),
        ({"dropout": 1.5}, "dropout"),
        ({"num_sources": True}, "num_sources"),
    ],
)
def test_invalid_values_are_rejected(values: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TDANetConfig.from_dict(values)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tdanet-large"):
        get_preset("nope")

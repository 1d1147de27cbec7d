from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tdanet.checkpoint import (
    FORMAT_VERSION,
    POSITION_TABLE_KEY,
    average_checkpoints,
    average_weights,
    checkpoint_metadata,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from tdanet.errors import CheckpointError
from tdanet.model import PRESETS, TDANet

from .conftest import OFFICIAL_SMALL, randomize_


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"].replace(attention="sequence")))
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt", metadata={"epoch": 3})
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert set(payload) == {"format_version", "config", "state_dict", "metadata"}
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert checkpoint_metadata(path) == {"epoch": 3}
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.pt"]


def test_release_layout_loads_strictly_and_drops_position_table() -> None:
    payload = read_checkpoint(OFFICIAL_SMALL / "checkpoint.pth")
    assert POSITION_TABLE_KEY in payload["state_dict"]
    model = load_checkpoint(OFFICIAL_SMALL / "checkpoint.pth")
    assert sum(p.numel() for p in model.parameters()) == 25463
    assert model.config.attention == "frame"


def test_attention_override_on_load() -> None:
    model = load_checkpoint(OFFICIAL_SMALL / "checkpoint.pth", attention="sequence")
    assert model.config.attention == "sequence"


def _release_payload() -> dict:
    return read_checkpoint(OFFICIAL_SMALL / "checkpoint.pth")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda p: p["state_dict"].pop("decoder.weight"), "missing 1 weight"),
        (lambda p: p["state_dict"].__setitem__("extra.weight", torch.zeros(1)), "unexpected"),
        (
            lambda p: p["state_dict"].__setitem__("decoder.weight", torch.zeros(66, 2, 32)),
            "decoder.weight has shape",
        ),
        (lambda p: p["model_args"].__setitem__("num_sources", 3), "shape"),
        (lambda p: p["model_args"].__setitem__("bogus", 1), "unknown release model_args"),
        (lambda p: p["state_dict"][POSITION_TABLE_KEY].add_(1.0), "position table"),
        (lambda p: p.pop("model_args"), "not a TDANet checkpoint"),
    ],
)
def test_mismatched_release_checkpoints_get_clear_errors(tmp_path: Path, mutate, match) -> None:
    payload = _release_payload()
    mutate(payload)
    path = tmp_path / "bad.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_unsupported_format_version(tmp_path: Path) -> None:
    path = save_checkpoint(TDANet(PRESETS["tdanet-tiny"]), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(path)


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    good = save_checkpoint(TDANet(PRESETS["tdanet-tiny"]), tmp_path / "m.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match="not a loadable TDANet checkpoint") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_malicious_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    torch_file, plain_pickle = tmp_path / "torch.pt", tmp_path / "plain.pkl"
    torch.save({"state_dict": _Exploit(marker)}, torch_file)
    plain_pickle.write_bytes(pickle.dumps(_Exploit(marker)))
    for path in (torch_file, plain_pickle):
        assert not marker.exists()
        with pytest.raises(CheckpointError, match="refused"):
            load_checkpoint(path)
        assert not marker.exists()


def test_non_dict_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(path)


def release_payload() -> dict:
    """The fixture as the authors' ``serialize()`` writes it (``infos`` included)."""
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        return torch.load(OFFICIAL_SMALL / "checkpoint.pth", weights_only=True)


def assert_computes_release_output(model: TDANet) -> None:
    mixture = torch.from_numpy(np.load(OFFICIAL_SMALL / "input.npy"))
    with torch.no_grad():
        output = model(mixture).numpy()
    np.testing.assert_allclose(output, np.load(OFFICIAL_SMALL / "expected.npy"), atol=1e-5)


def test_fixture_is_written_as_the_authors_script_writes_it() -> None:
    payload = release_payload()
    versions = payload["infos"]["software_versions"]
    assert type(versions["torch_version"]) is torch.torch_version.TorchVersion
    assert isinstance(versions["pytorch_lightning_version"], str)
    # Plain weights_only loading refuses it: the reason the loader allows TorchVersion.
    with pytest.raises(Exception, match="TorchVersion"):
        torch.load(OFFICIAL_SMALL / "checkpoint.pth", weights_only=True)


def test_release_file_with_infos_computes_the_release_output() -> None:
    assert_computes_release_output(load_checkpoint(OFFICIAL_SMALL / "checkpoint.pth"))


@pytest.mark.parametrize(
    "intruder, name",
    [
        (Path("/tmp/x"), "pathlib.PosixPath"),
        (argparse.Namespace(lr=1e-3), "argparse.Namespace"),
        (np.float64(1.0), "numpy"),
    ],
)
def test_any_other_global_is_refused_by_name(tmp_path: Path, intruder, name: str) -> None:
    payload = release_payload()
    payload["infos"]["extra"] = intruder
    path = tmp_path / "release.pth"
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=rf"refused: it holds the Python object {name}"
    ) as info:
        load_checkpoint(path)
    assert "re-save it" in str(info.value) and "\n" not in str(info.value)


def legacy_zip_without_new_records(source: Path, target: Path) -> None:
    """A zip checkpoint as torch 1.x wrote it: no ``byteorder``, no serialization id."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            if not item.filename.endswith(("/byteorder", "/.data/serialization_id")):
                new.writestr(item, old.read(item.filename))


@pytest.mark.parametrize("layout", ["legacy", "zip-1.x"])
def test_files_in_torch_1x_formats_load(tmp_path: Path, layout: str) -> None:
    payload = release_payload()
    path = tmp_path / f"{layout}.pth"
    if layout == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        modern = tmp_path / "modern.pth"
        torch.save(payload, modern)
        legacy_zip_without_new_records(modern, path)
        assert "byteorder" not in " ".join(zipfile.ZipFile(path).namelist())
    assert_computes_release_output(load_checkpoint(path))


def test_own_format_version_1_with_all_metadata_types(tmp_path: Path) -> None:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"]))
    metadata = {"epoch": 3, "val_loss": -4.5, "recipe": {"seed": 1, "lufs": [-33.0, -25.0]}}
    path = save_checkpoint(model, tmp_path / "m.pt", metadata=metadata)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    assert checkpoint_metadata(path) == metadata


def test_lightning_checkpoint_without_config_says_what_to_load(tmp_path: Path) -> None:
    model = TDANet(PRESETS["tdanet-tiny"])
    path = tmp_path / "old.ckpt"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"pytorch-lightning_version": "2.2.0", "state_dict": state, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="load best.pt or last.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"max_positions": 10**12}, "max_positions must be at most"),
        ({"in_channels": 10**9}, "in_channels must be at most"),
        ({"num_blocks": 10**7}, "num_blocks must be at most"),
        ({"max_positions": 900_000, "in_channels": 512}, "max_positions \\* in_channels"),
    ],
)
def test_hostile_config_ranges_are_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, match: str
) -> None:
    path = save_checkpoint(TDANet(PRESETS["tdanet-tiny"]), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"].update(change)
    torch.save(payload, path)
    monkeypatch.setattr("tdanet.checkpoint.TDANet", _never_built)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def _never_built(config: object) -> None:
    raise AssertionError("a model was built from an invalid config")


def test_config_that_does_not_match_the_weights_allocates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In range, but its widths (8192) would allocate gigabytes if built before the check.
    path = save_checkpoint(TDANet(PRESETS["tdanet-tiny"]), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"].update(in_channels=8192, out_channels=8192, max_positions=1000)
    torch.save(payload, path)
    built_on: list[str] = []

    def record(config: object) -> TDANet:
        built_on.append(torch.get_default_device().type)
        return TDANet(config)  # type: ignore[arg-type]

    monkeypatch.setattr("tdanet.checkpoint.TDANet", record)
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)
    assert built_on == ["meta"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    model = TDANet(PRESETS["tdanet-tiny"])
    with torch.no_grad():
        model.decoder.weight[0, 0, 0] = bad
    path = save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="decoder.weight holds NaN or infinite"):
        load_checkpoint(path)


def test_average_weights_is_the_mean_in_each_weights_dtype() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16)}
    b = {"w": torch.tensor([2.0, 5.0]), "h": torch.tensor([2.0], dtype=torch.float16)}
    mean = average_weights([a, b, b])
    assert torch.equal(mean["w"], torch.tensor([5.0 / 3, 4.0]))
    assert mean["h"].dtype == torch.float16
    assert average_weights([a])["w"] is not a["w"]
    with pytest.raises(ValueError, match="different weights"):
        average_weights([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="no state dicts"):
        average_weights([])


def test_average_checkpoints_writes_the_mean_network_with_its_sources(tmp_path: Path) -> None:
    config = PRESETS["tdanet-tiny"]
    paths = [
        save_checkpoint(randomize_(TDANet(config)), tmp_path / f"e{i}.pt", {"epoch": i})
        for i in range(3)
    ]
    out = average_checkpoints(paths, tmp_path / "mean.pt")
    mean = load_checkpoint(out)
    states = [load_checkpoint(p).state_dict() for p in paths]
    for name, value in mean.state_dict().items():
        expected = (states[0][name] + states[1][name] + states[2][name]) / 3
        assert torch.allclose(value, expected, atol=1e-6), name
    assert checkpoint_metadata(out) == {"epoch": 0, "averaged_from": [str(p) for p in paths]}


def test_average_checkpoints_refuses_other_networks_before_writing(tmp_path: Path) -> None:
    a = save_checkpoint(TDANet(PRESETS["tdanet-tiny"]), tmp_path / "a.pt")
    wider = PRESETS["tdanet-tiny"].replace(in_channels=2 * PRESETS["tdanet-tiny"].in_channels)
    b = save_checkpoint(TDANet(wider), tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="b.pt: its config differs from .*a.pt"):
        average_checkpoints([a, b], tmp_path / "mean.pt")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([], tmp_path / "mean.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]

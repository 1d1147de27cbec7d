from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tdanet import load_model
from tdanet.errors import CheckpointError
from tdanet.model import TDANet, TDANetConfig
from tdanet.pretrained import BUNDLED_MODELS, RELEASED_MODELS

from .conftest import OFFICIAL_SMALL


@pytest.mark.parametrize("name", ["tdanet", "tdanet-large", "tdanet-small", "tdanet-tiny"])
def test_presets_build_eval_models(name: str) -> None:
    model = load_model(name)
    assert isinstance(model, TDANet) and not model.training


def test_any_length_through_load_model() -> None:
    model = load_model("tdanet-small")
    with torch.no_grad():
        for length in (1, 333, 16000):
            assert model(torch.randn(2, length)).shape == (2, 2, length)


def test_config_and_override() -> None:
    model = load_model(TDANetConfig(num_blocks=1, in_channels=32, out_channels=8, num_heads=4))
    assert model.config.num_blocks == 1
    assert load_model("tdanet-tiny", attention="sequence").config.attention == "sequence"


def test_release_file_through_load_model() -> None:
    model = load_model(str(OFFICIAL_SMALL / "checkpoint.pth"))
    assert model.config.in_channels == 32


def _fake_hub_cache(cache: Path, repo: str, source: Path) -> None:
    """The Hugging Face cache layout, as huggingface_hub writes it after a download."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(source, snapshot / "pytorch_model.bin")


def test_hub_name_resolves_through_huggingface_cache(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        _fake_hub_cache(
            tmp_path, "JusperLee/TDANetBest-4ms-LRS2", OFFICIAL_SMALL / "checkpoint.pth"
        )
        model = load_model("JusperLee/TDANetBest-4ms-LRS2")
        assert model.config.out_channels == 16
        # The cached file carries the authors' `infos` (a TorchVersion) and still loads exactly.
        mixture = torch.from_numpy(np.load(OFFICIAL_SMALL / "input.npy"))
        with torch.no_grad():
            output = model(mixture).numpy()
        np.testing.assert_allclose(output, np.load(OFFICIAL_SMALL / "expected.npy"), atol=1e-5)
        with pytest.raises(CheckpointError, match="offline mode"):
            load_model("JusperLee/TDANetBest-2ms-LRS2")
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


def test_unknown_source_lists_choices() -> None:
    with pytest.raises(CheckpointError, match="no such file, model or hub name") as caught:
        load_model("./nothing-here.pt")
    message = str(caught.value)
    assert all(name in message for name in [*BUNDLED_MODELS, *RELEASED_MODELS, "tdanet-large"])
    assert "tdanet-demo (the default)" in message


def test_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "https://tdanet-test.invalid"])
def test_unreachable_hub_fails_fast_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    for key in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=f"{endpoint} cannot be reached") as caught:
        load_model("JusperLee/TDANetBest-2ms-LRS2")
    assert time.monotonic() - start < 5
    assert "\n" not in str(caught.value)
    # A cached file is used without the network.
    _fake_hub_cache(tmp_path, "JusperLee/TDANetBest-4ms-LRS2", OFFICIAL_SMALL / "checkpoint.pth")
    assert load_model("JusperLee/TDANetBest-4ms-LRS2").config.out_channels == 16

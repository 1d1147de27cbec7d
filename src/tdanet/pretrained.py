"""``load_model``: one entry point for presets, local checkpoints and Hugging Face Hub names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .model import PRESETS, TDANet, TDANetConfig

# The release stores one file per hub repository under this name.
HUB_FILENAME = "pytorch_model.bin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

# Checkpoints shipped inside the package (src/tdanet/assets/), usable offline.
BUNDLED_MODELS: dict[str, str] = {"tdanet-demo": "tdanet-demo.pt"}
# The model `separate`, `serve` and `profile` use when none is given.
DEFAULT_MODEL = "tdanet-demo"

# The authors' released checkpoints (16 kHz, 2 speakers, trained on LRS2-2Mix).
RELEASED_MODELS: dict[str, str] = {
    "JusperLee/TDANetBest-4ms-LRS2": "TDANet",
    "JusperLee/TDANetBest-2ms-LRS2": "TDANet Large",
}


def load_model(source: str | os.PathLike[str] | TDANetConfig, **config_overrides: Any) -> TDANet:
    """Build or load a TDANet, in eval mode.

    ``source`` is one of:
      * a :class:`TDANetConfig` or a preset name (``tdanet``, ``tdanet-large``,
        ``tdanet-small``, ``tdanet-tiny``): the architecture with fresh random weights;
      * a bundled model name (``tdanet-demo``, the default; shipped with the package);
      * a checkpoint file written by this package or in the authors' release layout;
      * a Hugging Face Hub name such as ``JusperLee/TDANetBest-4ms-LRS2`` (optionally
        ``@revision``), downloaded with ``huggingface_hub`` and cached.

    ``config_overrides`` change fields that do not alter the weights, e.g.
    ``attention="sequence"``.
    """
    if isinstance(source, TDANetConfig):
        return TDANet(source.replace(**config_overrides)).eval()
    text = os.fspath(source)
    if Path(text).suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{text}: an ONNX file runs with onnxruntime, not torch; pass --backend onnxruntime "
            "(in Python: Separator(path, backend='onnxruntime') or tdanet.export.OnnxModel)"
        )
    if text in PRESETS:
        return TDANet(PRESETS[text].replace(**config_overrides)).eval()
    if text in BUNDLED_MODELS:
        return load_checkpoint(bundled_path(text), **config_overrides)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            raise CheckpointError(f"{text}: is a directory; pass the checkpoint file inside it")
        return load_checkpoint(path, **config_overrides)
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return load_checkpoint(download_from_hub(text), **config_overrides)
    raise CheckpointError(
        f"{text}: no such file, model or hub name; bundled: {', '.join(BUNDLED_MODELS)} "
        f"(the default); released: {', '.join(RELEASED_MODELS)}; untrained presets: "
        f"{', '.join(PRESETS)}"
    )


def untrained_note(name: str | os.PathLike[str]) -> str | None:
    """One line saying that model ``name`` is a preset with random, untrained weights, or
    None for a bundled model, checkpoint or hub name."""
    text = os.fspath(name)
    if text not in PRESETS:
        return None
    return (
        f"{text} is an untrained preset (random weights), so its outputs are not separated "
        f"speech; use the bundled {DEFAULT_MODEL} (the default), a released model such as "
        f"{next(iter(RELEASED_MODELS))}, or a checkpoint you trained"
    )


def bundled_path(name: str) -> Path:
    """Path of a checkpoint shipped inside the package."""
    path = Path(__file__).parent / "assets" / BUNDLED_MODELS[name]
    if not path.is_file():
        raise CheckpointError(
            f"{name}: the bundled checkpoint {path.name} is missing from this installation; "
            "reinstall tdanet or pass another model"
        )
    return path


def download_from_hub(name: str) -> Path:
    """Fetch (or find in the local cache) the checkpoint of hub repository ``name[@revision]``."""
    repo_id, _, revision = name.partition("@")
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{name}: loading hub models needs huggingface_hub; run `pip install huggingface_hub` "
            "or pass a local checkpoint file"
        ) from None
    try:
        return Path(
            huggingface_hub.hf_hub_download(
                repo_id=repo_id, filename=HUB_FILENAME, revision=revision or None
            )
        )
    except Exception as exc:  # network, offline mode, missing repo: all reported the same way
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        why = "offline mode (HF_HUB_OFFLINE) is on" if offline else type(exc).__name__
        raise CheckpointError(
            f"{name}: could not download {HUB_FILENAME} from the Hugging Face Hub and it is not "
            f"in the local cache ({why}); connect to the internet, or download it elsewhere and "
            "pass the file's path"
        ) from None

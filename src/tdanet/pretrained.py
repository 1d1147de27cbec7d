"""``load_model``: one entry point for presets, local checkpoints and Hugging Face Hub names."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .model import PRESETS, TFACM, TFACM_PRESETS, TDANet, TDANetConfig, TFACMConfig

# The release stores one file per hub repository under this name.
HUB_FILENAME = "pytorch_model.bin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

# Seconds to wait for a TCP connection to the hub before using the local cache only.
HUB_CONNECT_TIMEOUT = 3.0
# Environment variables that route HTTP through a proxy (which the hub check cannot see past).
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)

# Checkpoints shipped inside the package (src/tdanet/assets/), usable offline.
BUNDLED_MODELS: dict[str, str] = {"tdanet-demo": "tdanet-demo.pt", "tfacm-demo": "tfacm-demo.pt"}
# The model `separate`, `serve` and `profile` use when none is given.
DEFAULT_MODEL = "tdanet-demo"
# The causal model `stream` uses when none is given.
DEFAULT_CAUSAL_MODEL = "tfacm-demo"

# The authors' released checkpoints (16 kHz, 2 speakers, trained on LRS2-2Mix).
RELEASED_MODELS: dict[str, str] = {
    "JusperLee/TDANetBest-4ms-LRS2": "TDANet",
    "JusperLee/TDANetBest-2ms-LRS2": "TDANet Large",
}


def load_model(
    source: str | os.PathLike[str] | TDANetConfig | TFACMConfig, **config_overrides: Any
) -> TDANet | TFACM:
    """Build or load a TDANet or a causal TFACM, in eval mode.

    ``source`` is one of:
      * a :class:`TDANetConfig` or a preset name (``tdanet``, ``tdanet-large``,
        ``tdanet-small``, ``tdanet-tiny``) or a :class:`TFACMConfig` or TFACM preset name
        (``tfacm``, ``tfacm-small``, ``tfacm-tiny``): the architecture with fresh random
        weights;
      * a bundled model name (``tdanet-demo``, the default; shipped with the package);
      * a checkpoint file written by this package (its config's ``family`` says which
        network; none means TDANet) or in the authors' release layout;
      * a Hugging Face Hub name such as ``JusperLee/TDANetBest-4ms-LRS2`` (optionally
        ``@revision``), downloaded with ``huggingface_hub`` and cached.

    ``config_overrides`` change fields that do not alter the weights, e.g.
    ``attention="sequence"``.
    """
    if isinstance(source, TDANetConfig):
        return TDANet(source.replace(**config_overrides)).eval()
    if isinstance(source, TFACMConfig):
        return TFACM(source.replace(**config_overrides)).eval()
    text = os.fspath(source)
    if Path(text).suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{text}: an ONNX file runs with onnxruntime, not torch; pass --backend onnxruntime "
            "(in Python: Separator(path, backend='onnxruntime') or tdanet.export.OnnxModel)"
        )
    if text in PRESETS:
        return TDANet(PRESETS[text].replace(**config_overrides)).eval()
    if text in TFACM_PRESETS:
        return TFACM(TFACM_PRESETS[text].replace(**config_overrides)).eval()
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
        f"{text}: no such file, model or hub name; bundled: {DEFAULT_MODEL} (the default), "
        f"{DEFAULT_CAUSAL_MODEL} (the default of stream); released: "
        f"{', '.join(RELEASED_MODELS)}; untrained presets: "
        f"{', '.join([*PRESETS, *TFACM_PRESETS])}"
    )


def untrained_note(name: str | os.PathLike[str]) -> str | None:
    """One line saying that model ``name`` is a preset with random, untrained weights, or
    None for a bundled model, checkpoint or hub name."""
    text = os.fspath(name)
    if text in TFACM_PRESETS:
        return (
            f"{text} is an untrained preset (random weights), so its outputs are not separated "
            f"speech; use the bundled causal {DEFAULT_CAUSAL_MODEL} (the default) or a "
            "checkpoint you trained"
        )
    if text not in PRESETS:
        return None
    return (
        f"{text} is an untrained preset (random weights), so its outputs are not separated "
        f"speech; use the bundled {DEFAULT_MODEL} (the default), a released model such as "
        f"{next(iter(RELEASED_MODELS))}, or a checkpoint you trained"
    )


def require_tdanet(model: TDANet | TFACM, purpose: str) -> TDANet:
    """``model`` if it is a TDANet; otherwise a one-line CheckpointError naming ``purpose``."""
    if isinstance(model, TDANet):
        return model
    raise CheckpointError(
        f"{purpose} works with TDANet models only, and this is a causal "
        f"{type(model).__name__} model; run it with `tdanet stream` or tdanet.streaming"
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


def hub_reachable(endpoint: str, timeout: float = HUB_CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub ``endpoint`` (a URL) opens within ``timeout`` s.

    Behind a proxy (``HTTPS_PROXY`` and the like) the answer is always True: only the HTTP
    client can tell whether the proxy reaches the hub.
    """
    if any(os.environ.get(key) for key in PROXY_VARIABLES):
        return True
    url = urlsplit(endpoint)
    if url.hostname is None:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except (OSError, UnicodeError):
        return False


def download_from_hub(name: str) -> Path:
    """Fetch (or find in the local cache) the checkpoint of hub repository ``name[@revision]``."""
    repo_id, _, revision = name.partition("@")
    try:
        import huggingface_hub
        from huggingface_hub import constants as hub_constants
    except ImportError:
        raise CheckpointError(
            f"{name}: loading hub models needs huggingface_hub; run `pip install huggingface_hub` "
            "or pass a local checkpoint file"
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    endpoint = str(hub_constants.ENDPOINT)
    # huggingface_hub retries an unreachable server for about half a minute: look first.
    cache_only = not offline and not hub_reachable(endpoint)
    try:
        return Path(
            huggingface_hub.hf_hub_download(
                repo_id=repo_id,
                filename=HUB_FILENAME,
                revision=revision or None,
                local_files_only=cache_only,
            )
        )
    except Exception as exc:  # network, offline mode, missing repo: all reported the same way
        if offline:
            why = "offline mode (HF_HUB_OFFLINE) is on"
        elif cache_only:
            why = f"{endpoint} cannot be reached"
        else:
            why = type(exc).__name__
        raise CheckpointError(
            f"{name}: could not download {HUB_FILENAME} from the Hugging Face Hub and it is not "
            f"in the local cache ({why}); connect to the internet, or download it elsewhere and "
            "pass the file's path"
        ) from None

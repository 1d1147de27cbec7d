"""Checkpoints as data: this package's format, the authors' release layout, Lightning's.

This package writes ``{"format_version", "config", "state_dict", "metadata"}``; the release
layout is ``{"model_name", "state_dict", "model_args"}`` plus, as the authors' ``serialize()``
writes it, ``infos`` with the software versions; ``tdanet train``'s Lightning checkpoints
(``*.ckpt``) hold the module's ``state_dict`` and the network's config under
``LIGHTNING_CONFIG_KEY``. All are read with ``torch.load(weights_only=True)`` and only the
globals in ``SAFE_GLOBALS`` allowed, so a file can never run code while it loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.torch_version import TorchVersion

from .atomic import replaced_on_success
from .errors import CheckpointError
from .model import RELEASE_ARGS, TFACM, TDANet, TDANetConfig, TFACMConfig
from .model.attention import sinusoid_table

FORMAT_VERSION = 1
POSITION_TABLE_KEY = "sm.unet.globalatt.attn.pos_enc.pe"
# Where a Lightning checkpoint of ``tdanet train`` keeps the network's config.
LIGHTNING_CONFIG_KEY = "tdanet_config"
# The Lightning module holds the network as ``self.model``.
LIGHTNING_PREFIX = "model."
# The only non-container globals a checkpoint may hold: the release's ``infos`` stores
# ``torch.__version__``, a ``str`` subclass that adds version comparisons and nothing else.
SAFE_GLOBALS: tuple[type, ...] = (TorchVersion,)
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
# A config's ``family`` names the network; files without one (older ones, release files)
# are TDANet.
FAMILIES: tuple[str, ...] = ("tdanet", "tfacm")
ModelConfig = TDANetConfig | TFACMConfig


def save_checkpoint(
    model: TDANet | TFACM,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (its config, and ``state`` or its own weights) to ``path`` atomically
    (temporary file, then rename)."""
    path = Path(path)
    weights = model.state_dict() if state is None else state
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in weights.items()},
        "metadata": dict(metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as temp, open(temp, "xb") as handle:
        torch.save(payload, handle)
    return path


def average_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same names and shapes (summed in float64,
    returned in each weight's own dtype): weight averaging over a run's last epochs."""
    if not states:
        raise ValueError("average_weights: no state dicts to average")
    names = list(states[0])
    if any(list(state) != names for state in states[1:]):
        raise ValueError("average_weights: the state dicts hold different weights")
    mean = {}
    for name in names:
        total = torch.zeros_like(states[0][name], dtype=torch.float64)
        for state in states:
            total += state[name]
        mean[name] = (total / len(states)).to(states[0][name].dtype)
    return mean


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file as plain data; any failure becomes a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt, truncated or unsafe files
        raise CheckpointError(f"{path}: {unreadable_reason(exc)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    return payload


def unreadable_reason(exc: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file, and what to do."""
    text = str(exc).strip()
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe:
        return (
            f"refused: it holds the Python object {unsafe.group(1).rstrip('.')}, which could run "
            "code when loaded, and only tensors, numbers, strings and plain containers are "
            "read; if you trust the file, re-save it without that object (for example "
            "torch.save({'state_dict': ..., 'model_args': ...}))"
        )
    if "weights_only" in text or "Weights only load failed" in text:
        return "refused: it contains pickled code or objects, which are never executed"
    reason = text.splitlines()[0] if text else type(exc).__name__
    return f"not a loadable TDANet checkpoint ({reason[:200]})"


def parse_checkpoint(
    payload: dict[str, Any], source: str = "checkpoint"
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and state_dict from either layout; the release's position table is checked and dropped."""
    if "format_version" in payload:
        version = payload["format_version"]
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format_version {version!r} is not supported "
                f"(this tdanet reads version {FORMAT_VERSION}); upgrade tdanet"
            )
        config_values = payload.get("config")
    elif "model_args" in payload and "state_dict" in payload:
        args = payload["model_args"]
        if not isinstance(args, dict):
            raise CheckpointError(f"{source}: model_args must be a dict")
        extra = sorted(set(args) - set(RELEASE_ARGS))
        if extra:
            raise CheckpointError(
                f"{source}: unknown release model_args {', '.join(map(str, extra))}"
            )
        config_values = dict(args)
    elif "pytorch-lightning_version" in payload:
        if LIGHTNING_CONFIG_KEY not in payload:
            raise CheckpointError(
                f"{source}: a Lightning checkpoint without the network's config (written by an "
                "older tdanet); load best.pt or last.pt from the same folder instead"
            )
        config_values = payload[LIGHTNING_CONFIG_KEY]
        payload = {"state_dict": lightning_model_state(payload.get("state_dict"), source)}
    else:
        raise CheckpointError(
            f"{source}: not a TDANet checkpoint (expected keys format_version/config/state_dict, "
            "the release's model_name/model_args/state_dict, or a tdanet train .ckpt)"
        )
    if not isinstance(config_values, dict):
        raise CheckpointError(f"{source}: checkpoint has no config dict")
    family = config_values.get("family", "tdanet")
    if family not in FAMILIES:
        raise CheckpointError(
            f"{source}: unknown model family {family!r}; this tdanet reads {', '.join(FAMILIES)}"
        )
    config: ModelConfig
    try:
        if family == "tfacm":
            config = TFACMConfig.from_dict(config_values)
        else:
            config = TDANetConfig.from_dict(
                {k: v for k, v in config_values.items() if k != "family"}
            )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid config: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: state_dict must map names to tensors")
    state = dict(state)
    table = state.pop(POSITION_TABLE_KEY, None)
    if table is not None and isinstance(config, TDANetConfig):
        check_position_table(table, config.in_channels, source)
    return config, state


def lightning_model_state(state: Any, source: str) -> dict[str, Any]:
    """The network's weights inside a Lightning module's state_dict (``model.`` prefix removed)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: the Lightning checkpoint has no state_dict")
    return {
        name.removeprefix(LIGHTNING_PREFIX): value
        for name, value in state.items()
        if name.startswith(LIGHTNING_PREFIX)
    }


def check_position_table(table: torch.Tensor, channels: int, source: str) -> None:
    """The release stores its sinusoid table as a buffer; it must be the standard one."""
    if table.dim() != 3 or table.shape[0] != 1 or table.shape[2] != channels:
        raise CheckpointError(
            f"{source}: position table has shape {tuple(table.shape)}, expected (1, P, {channels})"
        )
    expected = sinusoid_table(table.shape[1], channels)
    if not torch.allclose(table[0].float(), expected, atol=1e-4):
        raise CheckpointError(f"{source}: position table is not the standard sinusoid table")


def build_model(
    config: ModelConfig, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> TDANet | TFACM:
    """A TDANet or TFACM (by the config's type) with exactly these weights (strict names and
    shapes, all finite), in eval mode.

    Names, shapes and values are checked against a shapes-only ("meta") model before the
    real one is built, so a config that does not match its weights allocates nothing.
    """
    with torch.device("meta"):
        expected = network(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} weight(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} weight(s) e.g. {unexpected[0]}")
        raise CheckpointError(f"{source}: weights do not match the config ({'; '.join(parts)})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: weight {name} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[name].shape)} for this config"
            )
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: weight {name} is not floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{source}: weight {name} holds NaN or infinite values; the model is broken "
                "(a diverged training run?); use another checkpoint"
            )
    model = network(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def network(config: ModelConfig) -> TDANet | TFACM:
    """A fresh network of the config's family."""
    return TFACM(config) if isinstance(config, TFACMConfig) else TDANet(config)


def load_checkpoint(path: str | os.PathLike[str], **config_overrides: Any) -> TDANet | TFACM:
    """Load a checkpoint of this package (either family) or of the authors' release, in eval mode.

    ``config_overrides`` change fields that do not affect weights (e.g. ``attention``).
    """
    source = str(path)
    config, state = parse_checkpoint(read_checkpoint(path), source)
    if config_overrides:
        try:
            config = config.replace(**config_overrides)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    return build_model(config, state, source)


def average_checkpoints(
    paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> Path:
    """Write to ``output`` one checkpoint whose weights are the mean of ``paths``' (a weight
    soup: say several epochs of one run), with the first file's config and metadata and the
    inputs' names under ``averaged_from``.

    Every input is read and checked before anything is written; all must hold the same
    config, so the mean is the same network with averaged weights.
    """
    if not paths:
        raise CheckpointError("average: no checkpoints given")
    payloads = [read_checkpoint(path) for path in paths]
    parsed = [
        parse_checkpoint(payload, str(path)) for path, payload in zip(paths, payloads, strict=True)
    ]
    config = parsed[0][0]
    for path, (other, _) in zip(paths, parsed, strict=True):
        if other != config:
            raise CheckpointError(
                f"{path}: its config differs from {paths[0]}'s; average checkpoints of one "
                "network only"
            )
    model = build_model(config, average_weights([state for _, state in parsed]), str(paths[0]))
    first = payloads[0].get("metadata", {})
    metadata = dict(first if isinstance(first, dict) else {}, averaged_from=list(map(str, paths)))
    return save_checkpoint(model, output, metadata)


def checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata dict of a checkpoint of this package (empty for release files)."""
    metadata = read_checkpoint(path).get("metadata", {})
    return metadata if isinstance(metadata, dict) else {}

"""tdanet: TDANet speech separation (Li, Yang, Hu, ICLR 2023).

The public names below are imported on first use, so ``import tdanet`` (and the command
line's ``--help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "AudioError": "errors",
    "CheckpointError": "errors",
    "TDANetError": "errors",
    "PRESETS": "model",
    "TDANet": "model",
    "TDANetConfig": "model",
    "load_model": "pretrained",
    "Separator": "separate",
}

__all__ = [
    "PRESETS",
    "AudioError",
    "CheckpointError",
    "Separator",
    "TDANet",
    "TDANetConfig",
    "TDANetError",
    "__version__",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]

if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .errors import AudioError, CheckpointError, TDANetError
    from .model import PRESETS, TDANet, TDANetConfig
    from .pretrained import load_model
    from .separate import Separator


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tdanet' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

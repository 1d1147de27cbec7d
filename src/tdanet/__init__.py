"""tdanet: TDANet speech separation (Li, Yang, Hu, ICLR 2023)."""

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import AudioError, CheckpointError, TDANetError
from .model import PRESETS, TDANet, TDANetConfig
from .pretrained import load_model
from .separate import Separator

__version__ = "0.1.0"

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

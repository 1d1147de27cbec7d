"""The TDANet model package (imports only torch)."""

from .config import PRESETS, RELEASE_ARGS, TDANetConfig, get_preset
from .tdanet import TDANet, as_batch, crop_to_input, pad_to_valid_length

__all__ = [
    "PRESETS",
    "RELEASE_ARGS",
    "TDANet",
    "TDANetConfig",
    "as_batch",
    "crop_to_input",
    "get_preset",
    "pad_to_valid_length",
]

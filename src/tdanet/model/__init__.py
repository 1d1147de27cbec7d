"""The model package: TDANet and the causal TFACM (imports only torch)."""

from .config import PRESETS, RELEASE_ARGS, TDANetConfig, get_preset
from .tdanet import TDANet, as_batch, crop_to_input, pad_to_valid_length
from .tfacm import TFACM, TFACM_PRESETS, TFACMConfig, TFACMState

__all__ = [
    "PRESETS",
    "RELEASE_ARGS",
    "TFACM",
    "TFACM_PRESETS",
    "TDANet",
    "TDANetConfig",
    "TFACMConfig",
    "TFACMState",
    "as_batch",
    "crop_to_input",
    "get_preset",
    "pad_to_valid_length",
]

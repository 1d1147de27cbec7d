"""The default inference path: same weights and outputs as the eager model, less time.

:class:`FastTDANet` (defined in :mod:`tdanet.model.tdanet`) is assembled from the folded
forms each block of the model package defines beside itself; :mod:`tdanet.model.folding`
says what makes them fast.
"""

from __future__ import annotations

from torch import nn

from .model import TDANet
from .model.tdanet import FastTDANet

__all__ = ["FastTDANet", "optimize_for_inference"]


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """The fast module computing ``model``'s output (batch, T) -> (batch, C, T).

    A :class:`TDANet` becomes a :class:`FastTDANet` (the model itself is not modified;
    the result has its ``config``); any other module is returned unchanged.
    """
    if isinstance(model, TDANet):
        return FastTDANet(model)
    return model

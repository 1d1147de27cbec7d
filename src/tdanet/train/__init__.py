"""Training on PyTorch Lightning: recipes, the LightningModule, data and checkpoints.

Importing this package does not import Lightning; :func:`train` does.
"""

from .recipe import Recipe, load_recipe
from .run import TrainResult, train

__all__ = ["Recipe", "TrainResult", "load_recipe", "train"]

"""Callbacks: checkpoints in this package's format (``best.pt``, ``last.pt``), early stopping,
progress bar."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar

from ..checkpoint import save_checkpoint
from ..errors import TrainingError
from ..model import TDANet


class PackageCheckpoint(L.Callback):
    """After each validation, write ``last.pt`` and, when the loss improved, ``best.pt``.

    A validation loss or a weight that is not finite stops the run with a
    :class:`~tdanet.errors.TrainingError` instead of writing a broken checkpoint.

    The files load with :func:`tdanet.load_model`; their metadata holds the epoch, step,
    validation loss and SI-SNRi, and the recipe. The best loss so far is part of the
    Lightning state, so a resumed run keeps comparing against it.
    """

    def __init__(self, directory: Path, recipe: dict[str, Any]) -> None:
        self.directory = directory
        self.recipe = recipe
        self.best = math.inf

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if "val_loss" not in metrics:
            return
        loss = float(metrics["val_loss"])
        if not math.isfinite(loss):
            raise TrainingError(
                f"the validation loss is {loss} at epoch {trainer.current_epoch}; the run stops "
                "without writing a checkpoint: check the validation data, or lower optim.lr"
            )
        model = pl_module.model
        assert isinstance(model, TDANet)
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingError(
                f"the weights hold NaN or Inf at epoch {trainer.current_epoch}; the run stops "
                "without writing a checkpoint: lower optim.lr or optim.grad_clip"
            )
        improved = loss < self.best
        if improved:
            self.best = loss
        if not trainer.is_global_zero:
            return
        metadata = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "val_loss": loss,
            "val_si_snri": float(metrics.get("val_si_snri", math.nan)),
            "recipe": self.recipe,
        }
        save_checkpoint(model, self.directory / "last.pt", metadata)
        if improved:
            save_checkpoint(model, self.directory / "best.pt", metadata)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])


class RecipeEarlyStopping(EarlyStopping):
    """Lightning's early stopping whose patience is always the recipe's.

    Lightning restores the patience saved in the checkpoint; here a resumed run follows the
    recipe it is given, so a run that stopped early continues once its patience is raised.
    """

    @property
    def state_key(self) -> str:
        # Lightning's own key, so checkpoints written with plain EarlyStopping restore here.
        return "EarlyStopping" + repr({"monitor": self.monitor, "mode": self.mode})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without the logger version (our log folders are named)."""

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

"""Callbacks: checkpoints in this package's format (``best.pt``, ``last.pt``), early stopping,
progress bar, a time budget that includes the final validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from ..checkpoint import average_weights, save_checkpoint
from ..errors import TrainingError
from ..model import TFACM, TDANet


class PackageCheckpoint(L.Callback):
    """After each validation, write ``last.pt`` and, when the loss improved, ``best.pt``;
    with ``average_epochs`` > 0 also ``averaged.pt``, the mean of the weights at the last
    ``average_epochs`` validations (fewer at the start of a run); with ``keep_epochs`` also
    ``epoch-N.pt``, a copy of ``last.pt`` that later epochs do not replace.

    A validation loss or a weight that is not finite stops the run with a
    :class:`~tdanet.errors.TrainingError` instead of writing a broken checkpoint.

    The files load with :func:`tdanet.load_model`; their metadata holds the epoch, step,
    validation loss and SI-SNRi (``averaged.pt``: the averaged epochs instead), and the
    recipe. The best loss so far and the weights being averaged are part of the Lightning
    state, so a resumed run keeps comparing and averaging as if it had not stopped.
    """

    def __init__(
        self,
        directory: Path,
        recipe: dict[str, Any],
        average_epochs: int = 0,
        keep_epochs: bool = False,
    ) -> None:
        self.directory = directory
        self.recipe = recipe
        self.best = math.inf
        self.average_epochs = average_epochs
        self.keep_epochs = keep_epochs
        # (epoch, weights) of the last validations, on the process that writes files.
        self.recent: list[tuple[int, dict[str, torch.Tensor]]] = []

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
        assert isinstance(model, (TDANet, TFACM))
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
        if self.keep_epochs:
            save_checkpoint(model, self.directory / f"epoch-{trainer.current_epoch}.pt", metadata)
        if improved:
            save_checkpoint(model, self.directory / "best.pt", metadata)
        if self.average_epochs:
            self.write_average(model, trainer.current_epoch, trainer.global_step)

    def write_average(self, model: TDANet | TFACM, epoch: int, step: int) -> None:
        """Add this epoch's weights to the window and write their mean as ``averaged.pt``."""
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.recent = [*self.recent, (epoch, weights)][-self.average_epochs :]
        metadata = {
            "epoch": epoch,
            "global_step": step,
            "averaged_epochs": [e for e, _ in self.recent],
            "recipe": self.recipe,
        }
        average = average_weights([w for _, w in self.recent])
        save_checkpoint(model, self.directory / "averaged.pt", metadata, state=average)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "recent_epochs": [e for e, _ in self.recent],
            "recent_weights": [w for _, w in self.recent],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
        # Runs saved before averaging existed, or by other ranks, hold no window.
        epochs = state_dict.get("recent_epochs", [])
        weights = state_dict.get("recent_weights", [])
        self.recent = list(zip(epochs, weights, strict=True))


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


class TimeBudget(L.Callback):
    """``trainer.max_time`` that includes the validation run after the time is up.

    Lightning's own limit stops training after the batch that crosses it and then still runs
    a full validation, so a run could overrun by one validation. This stops training as soon
    as the time spent plus the expected validation time reaches the budget. The expected
    time is that of the last full validation, or, before the first one, the one-batch sanity
    check scaled to the validation set. Time spent before a resume is kept in the
    checkpoint, under the key of Lightning's timer so that its saved state carries over.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.spent = 0.0  # seconds of earlier sessions, restored on resume
        self.validation = 0.0  # expected seconds of one full validation
        self._started: float | None = None
        self._validation_started = 0.0

    @property
    def state_key(self) -> str:
        return "Timer"

    def elapsed(self) -> float:
        """Seconds this run has trained so far, earlier sessions included."""
        return self.spent + (0.0 if self._started is None else self.clock() - self._started)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self.clock()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run whose budget is already spent trains no further.
        trainer.should_stop = trainer.should_stop or self.elapsed() >= self.seconds

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_started = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        took = self.clock() - self._validation_started
        if trainer.sanity_checking:
            ran = sum(trainer.num_sanity_val_batches)
            if ran and not self.validation:
                self.validation = took * sum(trainer.num_val_batches) / ran
        else:
            self.validation = took

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        stop = bool(trainer.strategy.broadcast(self.elapsed() + self.validation >= self.seconds))
        if stop and not trainer.should_stop:
            too_long = (
                " (validation alone takes longer than trainer.max_time: lower "
                "data.valid_items or trainer.limit_val_batches)"
                if self.validation >= self.seconds
                else ""
            )
            rank_zero_info(
                f"Time limit: stopping after {self.elapsed():.0f} s of {self.seconds:.0f} s, "
                f"leaving {self.validation:.0f} s for the final validation{too_long}."
            )
        trainer.should_stop = trainer.should_stop or stop

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {"train": self.elapsed()}, "validation_seconds": self.validation}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.spent = float(state_dict.get("time_elapsed", {}).get("train", 0.0))
        self.validation = float(state_dict.get("validation_seconds", 0.0))


def parse_max_time(text: str) -> float:
    """``DD:HH:MM:SS`` (as Lightning reads ``max_time``) in seconds; ValueError if malformed."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"expected DD:HH:MM:SS, e.g. 00:01:30:00, got {text!r}")
    days, hours, minutes, seconds = (int(part) for part in parts)
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)

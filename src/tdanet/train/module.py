"""The LightningModule: PIT negative SI-SNR (silent targets: quiet outputs), Adam, learning rate halved on plateaus."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ..checkpoint import LIGHTNING_CONFIG_KEY
from ..errors import TrainingError
from ..losses import pit_separation_loss, pit_si_snr, si_snr
from ..model import TFACM, TDANet
from .recipe import LossSection, OptimSection

Batch = tuple[torch.Tensor, torch.Tensor, list[str]]


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed for one training step of one process (dropout, drop-path)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class SeparationModule(L.LightningModule):
    """Trains a :class:`TDANet` or a causal :class:`TFACM` on (mixture (B, T), sources (B, C, T), names) batches."""

    def __init__(
        self, model: TDANet | TFACM, optim: OptimSection, seed: int, loss: LossSection | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.seed = seed
        self.loss_config = loss or LossSection()

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, C, T)."""
        return self.model(mixture)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The network's config makes the .ckpt loadable by load_model and model.init_from.
        checkpoint[LIGHTNING_CONFIG_KEY] = self.model.config.to_dict()

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Random masks depend only on (seed, rank, step): a resumed run draws the same ones.
        torch.manual_seed(step_seed(self.seed, self.global_rank, self.global_step))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        mixture, sources, _ = batch
        # Scores in float32 even under mixed precision (sums of squares overflow in fp16).
        loss = pit_separation_loss(
            self.model(mixture).float(), sources, mixture, self.loss_config.pause_weight
        )
        if not bool(torch.isfinite(loss)):
            raise TrainingError(
                f"the training loss is {float(loss.detach())} at step {self.global_step} (batch "
                f"{', '.join(batch[2])}); the run stops before any weight becomes NaN: check "
                "that data, or lower optim.lr"
            )
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=mixture.shape[0],
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        mixture, sources, _ = batch
        score, _ = pit_si_snr(self.model(mixture).float(), sources)
        baseline = si_snr(mixture.unsqueeze(1).expand_as(sources), sources).mean(-1)
        size = mixture.shape[0]
        self.log("val_loss", -score.mean(), prog_bar=True, batch_size=size, sync_dist=True)
        self.log(
            "val_si_snri",
            (score - baseline).mean(),
            prog_bar=True,
            batch_size=size,
            sync_dist=True,
        )

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.optim.plateau_factor,
            patience=self.optim.plateau_patience,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"},
        }

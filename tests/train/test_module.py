from __future__ import annotations

import pytest
import torch

from tdanet.losses import pit_separation_loss
from tdanet.model import PRESETS, TDANet
from tdanet.train.module import SeparationModule
from tdanet.train.recipe import LossSection, OptimSection


def test_the_recipes_pause_weight_reaches_the_training_loss() -> None:
    torch.manual_seed(0)
    model = TDANet(PRESETS["tdanet-tiny"]).eval()
    first, second = torch.randn(1, 4096), torch.randn(1, 4096)
    first[:, 2048:] = 0.0  # the first voice pauses while the second talks
    sources = torch.stack([first, second], dim=1)
    batch = (sources.sum(1), sources, ["pause"])
    losses = {}
    for weight in (0.0, 0.5):
        module = SeparationModule(model, OptimSection(), seed=0, loss=LossSection(weight))
        module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
        losses[weight] = module.training_step(batch, 0).item()
    with torch.no_grad():
        estimates = model(batch[0])
    expected = pit_separation_loss(estimates, sources, batch[0], pause_weight=0.5).item()
    assert losses[0.5] == pytest.approx(expected, abs=1e-4)
    assert losses[0.5] < losses[0.0]  # the pause term adds a non-negative quietness score

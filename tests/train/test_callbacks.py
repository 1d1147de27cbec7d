from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping

from tdanet.train.callbacks import RecipeEarlyStopping


def test_early_stopping_keeps_the_recipes_patience_on_resume() -> None:
    stopped = EarlyStopping(monitor="val_loss", mode="min", patience=2)
    stopped.wait_count = 2
    resumed = RecipeEarlyStopping(monitor="val_loss", mode="min", patience=30)
    # Same key: the state that Lightning saved for its own callback is restored here.
    assert resumed.state_key == stopped.state_key
    resumed.load_state_dict(stopped.state_dict())
    assert resumed.patience == 30
    assert resumed.wait_count == 2

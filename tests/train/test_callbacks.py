from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import EarlyStopping

from tdanet.train.callbacks import RecipeEarlyStopping, TimeBudget, parse_max_time


def test_early_stopping_keeps_the_recipes_patience_on_resume() -> None:
    stopped = EarlyStopping(monitor="val_loss", mode="min", patience=2)
    stopped.wait_count = 2
    resumed = RecipeEarlyStopping(monitor="val_loss", mode="min", patience=30)
    # Same key: the state that Lightning saved for its own callback is restored here.
    assert resumed.state_key == stopped.state_key
    resumed.load_state_dict(stopped.state_dict())
    assert resumed.patience == 30
    assert resumed.wait_count == 2


class FakeStrategy:
    def broadcast(self, value: bool) -> bool:
        return value


class FakeTrainer:
    def __init__(self) -> None:
        self.should_stop = False
        self.sanity_checking = False
        self.strategy = FakeStrategy()
        self.num_sanity_val_batches = [1]
        self.num_val_batches = [24]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_keeps_room_for_the_final_validation() -> None:
    clock, trainer = Clock(), FakeTrainer()
    budget = TimeBudget(90.0, clock=clock)
    budget.on_fit_start(trainer, None)  # type: ignore[arg-type]
    # A one-batch sanity validation of 2 s foretells 48 s for the 24 batches.
    trainer.sanity_checking = True
    budget.on_validation_start(trainer, None)  # type: ignore[arg-type]
    clock.now += 2.0
    budget.on_validation_end(trainer, None)  # type: ignore[arg-type]
    trainer.sanity_checking = False
    assert budget.validation == 48.0
    clock.now += 39.0  # 41 s spent: 41 + 48 < 90, training goes on
    budget.on_train_batch_end(trainer)  # type: ignore[arg-type]
    assert not trainer.should_stop
    clock.now += 1.0  # 42 + 48 >= 90: stop now, so the validation ends by the limit
    budget.on_train_batch_end(trainer)  # type: ignore[arg-type]
    assert trainer.should_stop
    # A measured full validation replaces the estimate.
    budget.on_validation_start(trainer, None)  # type: ignore[arg-type]
    clock.now += 30.0
    budget.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert budget.validation == 30.0


def test_time_budget_resumes_with_the_time_already_spent() -> None:
    lightning_timer_state = {"time_elapsed": {"train": 80.0, "sanity_check": 0.0}}
    clock, trainer = Clock(), FakeTrainer()
    budget = TimeBudget(90.0, clock=clock)
    assert budget.state_key == "Timer"  # Lightning's key: its saved state carries over
    budget.load_state_dict(lightning_timer_state)
    budget.on_fit_start(trainer, None)  # type: ignore[arg-type]
    clock.now += 5.0
    assert budget.state_dict()["time_elapsed"]["train"] == 85.0
    clock.now += 5.0
    budget.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert trainer.should_stop


def test_max_time_is_read_like_lightning() -> None:
    assert parse_max_time("00:01:35:00") == 95 * 60
    assert parse_max_time(" 01:00:00:30 ") == 86400 + 30
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        parse_max_time("90s")

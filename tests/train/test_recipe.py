from __future__ import annotations

from pathlib import Path

import pytest

from tdanet.errors import ConfigError
from tdanet.train.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path: Path) -> None:
    recipe = load_recipe(path, ["data.root=/data"])
    assert recipe.data.root == "/data"
    assert recipe.optim.grad_clip == 5.0


def test_overrides_are_typed_and_nested() -> None:
    recipe = load_recipe(
        RECIPES / "small-cpu.yaml",
        ["trainer.max_epochs=2", "data.root=/x", "data.speed_perturb=[0.9, 1.1]", "optim.lr=2e-4"],
    )
    assert recipe.trainer.max_epochs == 2
    assert recipe.data.speed_perturb == (0.9, 1.1)
    assert recipe.optim.lr == pytest.approx(2e-4)
    assert recipe.to_dict()["data"]["speed_perturb"] == [0.9, 1.1]
    named = load_recipe(
        RECIPES / "small-cpu.yaml", ["data.root=/x", "data.held_out_speakers=[a, b*, c]"]
    )
    assert named.data.held_out_speakers == ("a", "b*", "c")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.nope=1", "data.nope: unknown recipe key"),
        ("bogus.key=1", "bogus: unknown recipe key"),
        ("trainer.max_epochs=two", "trainer.max_epochs: expected int"),
        ("data.gain=louder", "data.gain: 'louder' is not one of"),
        ("data.segment=-1", "data.segment: must be positive"),
        ("data.speech_lufs=[1]", "data.speech_lufs: expected a list of 2"),
        ("noequals", "section.key=value"),
        ("data.held_out_speakers=a", "data.held_out_speakers: expected a list"),
        ("data.train_only_speakers=[1]", "data.train_only_speakers: expected str"),
    ],
)
def test_bad_recipes_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_recipe(RECIPES / "small-cpu.yaml", ["data.root=/x", override])


def test_missing_root_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root: not set"):
        load_recipe(RECIPES / "small-cpu.yaml")
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("overrides", "strategy"),
    [
        (["trainer.devices=1"], "auto"),
        (["trainer.devices=2"], "ddp_find_unused_parameters_true"),
        (["trainer.devices=0,1"], "ddp_find_unused_parameters_true"),
        (["trainer.devices=1", "trainer.num_nodes=2"], "ddp_find_unused_parameters_true"),
        (["trainer.devices=2", "trainer.strategy=ddp_spawn"], "ddp_spawn"),
    ],
)
def test_several_processes_get_ddp_with_unused_parameters(
    overrides: list[str], strategy: str
) -> None:
    from tdanet.train.run import trainer_strategy

    recipe = load_recipe(RECIPES / "small-cpu.yaml", ["data.root=/x", *overrides])
    assert trainer_strategy(recipe) == strategy

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdanet import load_model
from tdanet.checkpoint import (
    average_weights,
    checkpoint_metadata,
    read_checkpoint,
    save_checkpoint,
)
from tdanet.errors import ConfigError, DataError
from tdanet.model import TFACM, TDANet
from tdanet.train import load_recipe, train
from tdanet.train.run import initial_model

from ..synthetic_speech import write_speaker_corpus

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "small-cpu.yaml"


def tiny_overrides(corpus: Path, output: Path, epochs: int) -> list[str]:
    return [
        f"data.root={corpus}",
        f"output_dir={output}",
        "model.preset=tdanet-tiny",
        "model.config={}",
        "data.sample_rate=8000",
        "data.segment=0.5",
        "data.valid_segment=0.5",
        "data.batch_size=2",
        "data.train_items=4",
        "data.valid_items=2",
        "data.valid_speakers=2",
        "data.test_speakers=2",
        f"trainer.max_epochs={epochs}",
        "trainer.progress_bar=false",
        "trainer.loggers=[csv]",
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speaker_corpus(tmp_path_factory.mktemp("corpus") / "speakers", speakers=6)


def test_resume_continues_exactly(corpus: Path, tmp_path: Path) -> None:
    straight = train(load_recipe(RECIPE, tiny_overrides(corpus, tmp_path / "a", 2)))
    train(load_recipe(RECIPE, tiny_overrides(corpus, tmp_path / "b", 1)))
    resumed = train(load_recipe(RECIPE, tiny_overrides(corpus, tmp_path / "b", 2)), resume="auto")
    a = read_checkpoint(straight.last)
    b = read_checkpoint(resumed.last)
    assert a["metadata"]["epoch"] == b["metadata"]["epoch"] == 1
    assert a["metadata"]["global_step"] == b["metadata"]["global_step"] == 4
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    # The run's files: package checkpoints load as models, the recipe and splits are kept.
    assert load_model(straight.best).config.num_blocks == 2
    assert checkpoint_metadata(straight.best)["recipe"]["data"]["root"] == str(corpus)
    assert (straight.output_dir / "splits.json").is_file()
    assert (straight.output_dir / "logs" / "csv" / "metrics.csv").is_file()
    assert (resumed.output_dir / "logs" / "csv-1" / "metrics.csv").is_file()
    # Lightning's own checkpoint is plain data and loads as the same network.
    lightning_file = resumed.output_dir / "checkpoints" / "resume.ckpt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(lightning_file)) == []
    from_lightning = load_model(lightning_file).state_dict()
    for name, tensor in b["state_dict"].items():
        assert torch.equal(tensor, from_lightning[name]), name
    # Without --resume, an existing run is never overwritten.
    with pytest.raises(ConfigError, match="previous run"):
        train(load_recipe(RECIPE, tiny_overrides(corpus, tmp_path / "b", 2)))


def test_averaged_and_kept_epochs_span_resumes(corpus: Path, tmp_path: Path) -> None:
    def run(epochs: int, resume: str | None) -> dict[str, torch.Tensor]:
        overrides = [
            *tiny_overrides(corpus, tmp_path, epochs),
            "optim.average_epochs=2",
            "optim.keep_epochs=true",
        ]
        result = train(load_recipe(RECIPE, overrides), resume=resume)
        return read_checkpoint(result.last)["state_dict"]

    run(1, None)
    epoch1 = run(2, "auto")
    epoch2 = run(3, "auto")
    # A window of two: epochs 1 and 2, the first of them trained before the last resume.
    averaged = read_checkpoint(tmp_path / "checkpoints" / "averaged.pt")
    assert averaged["metadata"]["averaged_epochs"] == [1, 2]
    expected = average_weights([epoch1, epoch2])
    assert any(not torch.equal(epoch1[n], epoch2[n]) for n in expected)
    for name, tensor in averaged["state_dict"].items():
        assert torch.equal(tensor, expected[name]), name
    assert load_model(tmp_path / "checkpoints" / "averaged.pt").config.num_blocks == 2
    # Each epoch's weights stay, whichever sitting trained it.
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch-*.pt"))
    assert kept == ["epoch-0.pt", "epoch-1.pt", "epoch-2.pt"]
    for epoch, weights in ((1, epoch1), (2, epoch2)):
        state = read_checkpoint(tmp_path / "checkpoints" / f"epoch-{epoch}.pt")["state_dict"]
        assert all(torch.equal(state[n], weights[n]) for n in weights)


def test_average_epochs_must_not_be_negative(corpus: Path, tmp_path: Path) -> None:
    overrides = [*tiny_overrides(corpus, tmp_path, 1), "optim.average_epochs=-1"]
    with pytest.raises(ConfigError, match="optim.average_epochs"):
        load_recipe(RECIPE, overrides)


def test_fine_tuning_starts_from_the_given_weights(corpus: Path, tmp_path: Path) -> None:
    start = load_model("tdanet-tiny", sample_rate=8000)
    source = save_checkpoint(start, tmp_path / "start.pt")
    overrides = [*tiny_overrides(corpus, tmp_path / "ft", 1), f"model.init_from={source}"]
    overrides.append("trainer.limit_train_batches=1")
    overrides.append("optim.lr=1e-6")
    result = train(load_recipe(RECIPE, overrides))
    tuned = read_checkpoint(result.last)["state_dict"]
    first = start.state_dict()
    close = [torch.allclose(tuned[k], first[k], atol=1e-4) for k in tuned]
    assert all(close)
    assert not all(torch.equal(tuned[k], first[k]) for k in tuned)


def test_fine_tuning_from_a_lightning_checkpoint(corpus: Path, tmp_path: Path) -> None:
    first = train(load_recipe(RECIPE, [*tiny_overrides(corpus, tmp_path / "a", 1)]))
    lightning_file = first.output_dir / "checkpoints" / "resume.ckpt"
    overrides = [*tiny_overrides(corpus, tmp_path / "ft", 1), f"model.init_from={lightning_file}"]
    overrides += ["trainer.limit_train_batches=1", "optim.lr=1e-6"]
    tuned = read_checkpoint(train(load_recipe(RECIPE, overrides)).last)["state_dict"]
    start = read_checkpoint(first.last)["state_dict"]
    assert all(torch.allclose(tuned[k], start[k], atol=1e-4) for k in tuned)


def test_a_causal_tfacm_trains_with_the_same_recipe_machinery(corpus: Path, tmp_path: Path) -> None:
    overrides = [*tiny_overrides(corpus, tmp_path / "causal", 1), "model.preset=tfacm-tiny"]
    result = train(load_recipe(RECIPE, overrides))
    model = load_model(result.best)
    assert isinstance(model, TFACM) and model.config.sample_rate == 8000
    trained = read_checkpoint(result.last)["state_dict"]
    fresh = load_model("tfacm-tiny", sample_rate=8000).state_dict()
    assert trained.keys() == fresh.keys()
    lightning_file = result.output_dir / "checkpoints" / "resume.ckpt"
    assert isinstance(load_model(lightning_file), TFACM)


def test_fine_tuning_rejects_a_model_for_another_rate(corpus: Path, tmp_path: Path) -> None:
    source = save_checkpoint(load_model("tdanet-tiny"), tmp_path / "16k.pt")
    overrides = [*tiny_overrides(corpus, tmp_path / "x", 1), f"model.init_from={source}"]
    with pytest.raises(ConfigError, match="sample_rate=16000 but data.sample_rate=8000"):
        train(load_recipe(RECIPE, overrides))


def test_model_errors_come_before_the_data_is_read(tmp_path: Path) -> None:
    overrides = [*tiny_overrides(tmp_path / "no-corpus", tmp_path / "run", 1), "model.preset=nope"]
    with pytest.raises(ConfigError, match="model.preset: unknown preset 'nope'"):
        train(load_recipe(RECIPE, overrides))


def test_too_few_speakers_fails_before_training(tmp_path: Path) -> None:
    small = write_speaker_corpus(tmp_path / "few", speakers=4, utterances=1)
    with pytest.raises(DataError, match="4 speakers is too few"):
        train(load_recipe(RECIPE, tiny_overrides(small, tmp_path / "run", 1)))
    assert not (tmp_path / "run").exists()


def test_paper_recipe_trains_on_a_generated_librimix(tmp_path: Path) -> None:
    from ..data.test_layouts import librimix

    root = librimix(tmp_path / "Libri2Mix", noise=False)
    recipe = load_recipe(
        RECIPE.parent / "libri2mix.yaml",
        [
            f"data.root={root}",
            f"output_dir={tmp_path / 'run'}",
            "model.preset=tdanet-tiny",
            "model.config={}",
            "data.train_split=train-360",
            "data.segment=0.5",
            "data.valid_segment=null",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.progress_bar=false",
            "trainer.loggers=[]",
        ],
    )
    result = train(recipe)
    metadata = checkpoint_metadata(result.best)
    assert metadata["global_step"] == 3  # 3 mixtures, batch 1
    assert load_model(result.best).config.sample_rate == 8000


@pytest.mark.parametrize("name", ["wham.yaml", "lrs2mix.yaml"])
def test_paper_recipes_read_their_layouts(tmp_path: Path, name: str) -> None:
    from tdanet.train.datamodule import build_training_data

    from ..synthetic_speech import write_split

    recipe = load_recipe(RECIPE.parent / name, [f"data.root={tmp_path}"])
    mix = {"wham.yaml": "mix_both", "lrs2mix.yaml": "mix"}[name]
    for split in ("tr", "cv"):
        write_split(tmp_path / split, mix, rate=recipe.data.sample_rate, seconds=3.5)
    data = build_training_data(recipe.data, recipe.seed)
    mixture, sources, _ = data.train[(0, 0)]  # type: ignore[index]
    assert mixture.shape == (3 * recipe.data.sample_rate,) and sources.shape[0] == 2


def test_fine_tuning_from_a_release_layout_checkpoint(tmp_path: Path) -> None:
    from ..conftest import OFFICIAL_SMALL

    corpus = write_speaker_corpus(tmp_path / "c16", speakers=6, utterances=2, rate=16000)
    overrides = [
        *tiny_overrides(corpus, tmp_path / "run", 1),
        "data.sample_rate=16000",
        f"model.init_from={OFFICIAL_SMALL / 'checkpoint.pth'}",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
    ]
    result = train(load_recipe(RECIPE, overrides))
    assert load_model(result.last).config.num_blocks == 3  # the release file's architecture


def test_fine_tuning_widens_a_checkpoint_to_the_recipes_in_channels(
    corpus: Path, tmp_path: Path
) -> None:
    start = load_model("tdanet-tiny", sample_rate=8000, dropout=0.0, drop_path=0.0)
    source = save_checkpoint(start, tmp_path / "narrow.pt")
    overrides = [*tiny_overrides(corpus, tmp_path / "w", 1), f"model.init_from={source}"]
    wide = initial_model(load_recipe(RECIPE, [*overrides, "model.config.in_channels=64"]))
    assert isinstance(wide, TDANet) and wide.config.in_channels == 64
    mixture = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        change = (wide.eval()(mixture) - start(mixture)).norm() / start(mixture).norm()
    assert change < 0.01
    with pytest.raises(ConfigError, match="in_channels: in_channels 48 must be a multiple"):
        initial_model(load_recipe(RECIPE, [*overrides, "model.config.in_channels=48"]))

"""``train(recipe)``: check the data, build the model, run Lightning, leave checkpoints.

An output folder holds ``recipe.yaml`` (the resolved recipe), ``splits.json`` (speakers
per split, for dynamic mixing), ``checkpoints/{best,last}.pt`` (this package's format),
``checkpoints/resume.ckpt`` (Lightning's full state: optimizer, scheduler, epoch, loop and
callback state) and ``logs/`` (CSV and TensorBoard).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..checkpoint import ModelConfig, network, read_checkpoint
from ..errors import CheckpointError, ConfigError
from ..model import PRESETS, TFACM, TFACM_PRESETS, TDANet
from ..model.widen import widen_in_channels
from ..pretrained import load_model
from .recipe import Recipe

LOG = logging.getLogger(__name__)
RESUME_FILE = "resume"
# The top level's LA module gets no gradient (docs/architecture.md), so DDP must allow it.
DDP_STRATEGY = "ddp_find_unused_parameters_true"
# Loggers Lightning's rank-zero messages (its "💡 Tip" advertisements among them) go through.
TIP_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


@dataclass
class TrainResult:
    """Where a run left its files, its best validation loss, the trained network, and one
    line per data file left out as unusable."""

    output_dir: Path
    best: Path
    last: Path
    best_val_loss: float
    global_zero: bool
    model: TDANet | TFACM
    global_step: int
    skipped: list[str] = field(default_factory=list)


def initial_model(recipe: Recipe) -> TDANet | TFACM:
    """The network to train, of either family: a preset (random weights) or ``init_from``
    weights to fine-tune."""
    section, data = recipe.model, recipe.data
    fixed = {"sample_rate": data.sample_rate, "num_sources": data.num_sources}
    for key, value in fixed.items():
        if key in section.config and section.config[key] != value:
            raise ConfigError(
                f"model.config.{key}: {section.config[key]} contradicts data.{key}={value}"
            )
    if section.init_from is not None:
        overrides = dict(section.config)
        width = overrides.pop("in_channels", None)
        try:
            model = load_model(section.init_from, **overrides)
        except CheckpointError as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
        if width is not None and width != getattr(model.config, "in_channels", None):
            if not isinstance(model, TDANet):
                raise ConfigError("model.config.in_channels: only a TDANet can be widened")
            try:
                model = widen_in_channels(model, width, seed=recipe.seed)
            except ValueError as exc:
                raise ConfigError(f"model.config.in_channels: {exc}") from None
        for key, value in fixed.items():
            if getattr(model.config, key) != value:
                raise ConfigError(
                    f"model.init_from: {section.init_from} has {key}={getattr(model.config, key)} "
                    f"but data.{key}={value}; fine-tune on data that matches the model"
                )
        return model.train()
    presets: dict[str, ModelConfig] = {**PRESETS, **TFACM_PRESETS}
    if section.preset not in presets:
        raise ConfigError(
            f"model.preset: unknown preset {section.preset!r}; choose one of {', '.join(presets)}"
        )
    try:
        config = presets[section.preset].replace(**{**section.config, **fixed})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.config: {exc}") from None
    return network(config).train()


def device_count(devices: int | str, accelerator: str) -> int:
    """How many devices per node Lightning will use for a ``devices`` setting."""
    if isinstance(devices, int):
        return devices
    text = devices.strip()
    if text in ("auto", "-1"):
        import torch

        if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return torch.cuda.device_count()
        return 1
    if "," in text or text.startswith("["):
        return len([part for part in text.strip("[]").split(",") if part.strip()])
    return int(text) if text.isdigit() else 1


def trainer_strategy(recipe: Recipe) -> str:
    """``auto`` becomes DDP with unused parameters allowed when several processes train."""
    trainer = recipe.trainer
    several = trainer.num_nodes > 1 or device_count(trainer.devices, trainer.accelerator) > 1
    if trainer.strategy == "auto" and several:
        return DDP_STRATEGY
    return trainer.strategy


def resume_path(recipe: Recipe, resume: str | Path | None) -> Path | None:
    """The Lightning checkpoint to resume from (``auto``: the run's own), checked to exist."""
    if resume is None:
        return None
    path = (
        Path(recipe.output_dir) / "checkpoints" / f"{RESUME_FILE}.ckpt"
        if str(resume) == "auto"
        else Path(resume)
    )
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to resume from")
    return path


def train(recipe: Recipe, resume: str | Path | None = None) -> TrainResult:
    """Train as the recipe says; data and config errors are raised before training starts."""
    try:
        import lightning as L
    except ImportError:
        raise ConfigError(
            "training needs PyTorch Lightning; run `pip install 'tdanet[train]'`"
        ) from None
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.utilities import rank_zero_only

    from .callbacks import (
        PackageCheckpoint,
        ProgressBar,
        RecipeEarlyStopping,
        TimeBudget,
        parse_max_time,
    )
    from .datamodule import SeparationDataModule, build_training_data
    from .module import SeparationModule

    output = Path(recipe.output_dir).expanduser()
    checkpoints = output / "checkpoints"
    ckpt_path = resume_path(recipe, resume)
    if ckpt_path is None and (checkpoints / f"{RESUME_FILE}.ckpt").exists():
        raise ConfigError(
            f"{output}: holds a previous run; pass --resume to continue it or choose another "
            "output_dir"
        )
    unknown = sorted(set(recipe.trainer.loggers) - {"csv", "tensorboard"})
    if unknown:
        raise ConfigError(f"trainer.loggers: unknown logger {unknown[0]!r}; use csv, tensorboard")
    options = recipe.trainer
    budget = None
    if options.max_time is not None:
        try:
            budget = TimeBudget(parse_max_time(options.max_time))
        except ValueError as exc:
            raise ConfigError(f"trainer.max_time: {exc}") from None
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    # The model first: its errors come at once, not after every data file is decoded.
    model = initial_model(recipe)
    data = build_training_data(recipe.data, recipe.seed)
    for line in data.skipped:
        LOG.warning("skipped: %s", line)
    module = SeparationModule(model, recipe.optim, recipe.seed, recipe.loss)
    if ckpt_path is not None:
        check_resume_file(ckpt_path, module)
    rank_zero_only(write_run_files)(output, recipe, data.speaker_splits)

    package_checkpoint = PackageCheckpoint(
        checkpoints, recipe.to_dict(), recipe.optim.average_epochs, recipe.optim.keep_epochs
    )
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=checkpoints,
            filename=RESUME_FILE,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
        package_checkpoint,
        RecipeEarlyStopping(
            monitor="val_loss", mode="min", patience=recipe.optim.early_stop_patience
        ),
    ]
    loggers: list[Any] = []
    if "csv" in recipe.trainer.loggers:
        loggers.append(CSVLogger(output, name="logs", version=log_version(output, "csv")))
    if "tensorboard" in recipe.trainer.loggers:
        version = log_version(output, "tensorboard")
        loggers.append(TensorBoardLogger(output, name="logs", version=version))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if recipe.trainer.progress_bar:
        callbacks.append(ProgressBar())
    if budget is not None:
        callbacks.append(budget)
    hide_lightning_tips()
    trainer = L.Trainer(
        accelerator=options.accelerator,
        devices=options.devices,
        num_nodes=options.num_nodes,
        strategy=trainer_strategy(recipe),
        precision=options.precision,  # type: ignore[arg-type]
        max_epochs=options.max_epochs,
        # TimeBudget replaces Lightning's max_time, which overran by a final validation.
        max_time=None,
        limit_train_batches=options.limit_train_batches,
        limit_val_batches=options.limit_val_batches,
        log_every_n_steps=options.log_every_n_steps,
        enable_progress_bar=options.progress_bar,
        # The time budget times a one-batch sanity validation to foresee the first full one.
        num_sanity_val_steps=(
            max(1, options.num_sanity_val_steps)
            if budget is not None
            else options.num_sanity_val_steps
        ),
        gradient_clip_val=recipe.optim.grad_clip,
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=loggers or False,
        use_distributed_sampler=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module,
        datamodule=SeparationDataModule(data, recipe.data, recipe.seed),
        ckpt_path=ckpt_path,
        weights_only=True,
    )
    return TrainResult(
        output,
        checkpoints / "best.pt",
        checkpoints / "last.pt",
        package_checkpoint.best,
        trainer.is_global_zero,
        module.model,
        trainer.global_step,
        data.skipped,
    )


def check_resume_file(path: Path, module: Any) -> None:
    """Refuse in one line a resume file that is empty, truncated, unsafe or not the Lightning
    state of a run with this model (Lightning itself raises raw EOFError, KeyError, ...)."""
    import torch

    try:
        state = read_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigError(
            f"{exc}; pass the resume.ckpt of an earlier run (in its checkpoints/ folder)"
        ) from None
    if not {"pytorch-lightning_version", "loops"} <= set(state):
        model_file = bool({"format_version", "model_args"} & set(state))
        hint = (
            "it holds model weights only; start from them with model.init_from=PATH"
            if model_file
            else "pass the resume.ckpt of an earlier run (in its checkpoints/ folder)"
        )
        raise ConfigError(f"{path}: not a training checkpoint written by tdanet train; {hint}")
    weights = state.get("state_dict")
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = (
        {name: tuple(t.shape) for name, t in weights.items() if isinstance(t, torch.Tensor)}
        if isinstance(weights, dict)
        else {}
    )
    if found != expected:
        raise ConfigError(
            f"{path}: this training checkpoint is for another model configuration than the "
            "recipe's; resume with the recipe of that run (its recipe.yaml)"
        )


def hide_lightning_tips() -> None:
    """Drop Lightning's "💡 Tip" lines, which advertise its cloud services."""
    for name in TIP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def log_version(output: Path, kind: str) -> str:
    """``csv``, then ``csv-1``, ``csv-2`` for resumed runs: Lightning would erase old logs."""
    if not (output / "logs" / kind).exists():
        return kind
    count = 1
    while (output / "logs" / f"{kind}-{count}").exists():
        count += 1
    return f"{kind}-{count}"


def write_run_files(
    output: Path, recipe: Recipe, speaker_splits: dict[str, list[str]] | None
) -> None:
    """The resolved recipe and the speaker splits, next to the checkpoints."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    if speaker_splits is not None:
        (output / "splits.json").write_text(json.dumps(speaker_splits, indent=2) + "\n")

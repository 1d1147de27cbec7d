"""Training recipes: a YAML file plus ``section.key=value`` overrides, checked against types.

Every section is a dataclass; unknown keys, wrong types and bad values raise
:class:`~tdanet.errors.ConfigError` naming the key, before any data is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ..errors import ConfigError

DataKind = Literal["speakers", "librimix", "wham", "lrs2mix"]


@dataclass(frozen=True)
class ModelSection:
    """Which network to train.

    ``preset`` names the architecture; ``config`` overrides its fields (e.g.
    ``attention: sequence``). ``init_from`` (a checkpoint file, bundled name or hub name)
    fine-tunes from those weights instead of starting from random ones; its architecture
    is then used, with ``config`` applied to the fields that do not change the weights,
    except that ``in_channels`` a multiple of a TDANet's widens its U-block keeping what it
    computes (:func:`tdanet.model.widen.widen_in_channels`).
    """

    preset: str = "tdanet-small"
    config: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass(frozen=True)
class DataSection:
    """Where the mixtures come from.

    ``kind``: ``speakers`` (dynamic mixing of a speaker folder or CSV manifest at ``root``,
    speaker-disjoint splits drawn from the recipe seed), or a pre-mixed layout
    (``librimix``, ``wham``, ``lrs2mix``) at ``root``. ``segment``: training window in
    seconds; ``valid_segment``: validation window, or null for whole utterances (then
    validation runs one utterance per batch).
    """

    kind: DataKind = "speakers"
    root: str | None = None
    sample_rate: int = 16000
    num_sources: int = 2
    segment: float = 3.0
    valid_segment: float | None = None
    batch_size: int = 1
    num_workers: int = 0
    # Pre-mixed layouts.
    task: Literal["clean", "noisy"] = "clean"
    length_mode: Literal["min", "max"] = "min"
    train_split: str | None = None
    valid_split: str | None = None
    # Dynamic mixing (kind: speakers).
    valid_speakers: float = 0.1
    test_speakers: float = 0.1
    train_items: int = 1000
    valid_items: int = 100
    gain: Literal["loudness", "snr"] = "loudness"
    speech_lufs: tuple[float, float] = (-33.0, -25.0)
    noise_lufs: tuple[float, float] = (-38.0, -30.0)
    snr_db: tuple[float, float] = (-5.0, 5.0)
    noise_snr_db: tuple[float, float] = (0.0, 10.0)
    noise_root: str | None = None
    speed_perturb: tuple[float, float] | None = None
    speaker_weighting: Literal["uniform", "sqrt_duration", "duration"] = "sqrt_duration"
    # Speakers (names or shell patterns) always in the test split (then test_speakers: 0),
    # and those only ever trained on (synthetic voices: validate and test on real ones).
    held_out_speakers: tuple[str, ...] = ()
    train_only_speakers: tuple[str, ...] = ()
    # Augmentation of dynamic mixing (tdanet.data.mixing.MixingConfig), training split only.
    lone: float = 0.0
    fill: float = 0.0
    turns: float = 0.0
    eq_prob: float = 0.0
    eq_db: float = 6.0
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.6)
    room_count: int = 256
    noise_prob: float = 1.0


@dataclass(frozen=True)
class OptimSection:
    """Adam, halving the rate after ``plateau_patience`` epochs without a better validation
    loss, stopping after ``early_stop_patience``; gradients clipped to L2 norm ``grad_clip``.
    ``average_epochs`` > 0 also writes ``averaged.pt``, the mean of the weights at that many
    last validations (0: off); ``keep_epochs`` keeps each epoch's weights as ``epoch-N.pt``
    (for weight means across epochs or runs, ``tdanet average``)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 15
    early_stop_patience: int = 30
    grad_clip: float | None = 5.0
    average_epochs: int = 0
    keep_epochs: bool = False


@dataclass(frozen=True)
class LossSection:
    """The training loss (:func:`tdanet.losses.pit_separation_loss`): ``pause_weight`` times
    how quiet an output stays where its voice pauses is added to its SI-SNR (0: plain PIT
    SI-SNR, with silent targets scored by quietness)."""

    pause_weight: float = 0.0


@dataclass(frozen=True)
class TrainerSection:
    """Passed to Lightning's Trainer. ``strategy: auto`` picks DDP (allowing unused
    parameters, see docs/architecture.md) when more than one device or node is used."""

    max_epochs: int = 500
    max_time: str | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    log_every_n_steps: int = 50
    progress_bar: bool = True
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    num_sanity_val_steps: int = 0


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe (see recipes/*.yaml)."""

    name: str = "tdanet"
    seed: int = 0
    output_dir: str = "runs/tdanet"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples), as YAML or a checkpoint's metadata holds it."""
        return plain(dataclasses.asdict(self))


def plain(value: Any) -> Any:
    """Tuples become lists, recursively, so the result is YAML- and weights_only-safe."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def check_value(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to the type ``hint`` (int -> float, list -> tuple), or ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return check_value(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a valid {describe(hint)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(check_value(v, args[0], key) for v in value)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(check_value(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [check_value(v, args[0], key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string; accept what Python reads as a number.
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {describe(hint)}, got {value!r}")


def describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def build_section(cls: type, values: Any, prefix: str) -> Any:
    """A section dataclass from a mapping; unknown keys and wrong types are errors."""
    where = prefix or "recipe"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown recipe key; "
            f"known keys in {where}: {', '.join(known)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_section(typing.cast(type, hint), value, key)
        else:
            kwargs[name] = check_value(value, hint, key)
    return cls(**kwargs)


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set ``a.b=value`` in a nested mapping (value parsed as YAML: numbers, lists, null)."""
    path, sep, text = override.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"{override!r}: overrides look like section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"{override!r}: the value is not valid YAML") from None
    keys = path.strip().split(".")
    node = values
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or start from defaults when ``path`` is None), apply overrides, check."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of sections")
        values = loaded or {}
    for override in overrides:
        apply_override(values, override)
    recipe: Recipe = build_section(Recipe, values, "")
    check_recipe(recipe)
    return recipe


def check_recipe(recipe: Recipe) -> None:
    """Value checks that types alone do not express."""
    data, optim = recipe.data, recipe.optim
    positives = {
        "data.sample_rate": data.sample_rate,
        "data.num_sources": data.num_sources,
        "data.segment": data.segment,
        "data.batch_size": data.batch_size,
        "data.train_items": data.train_items,
        "data.valid_items": data.valid_items,
        "optim.lr": optim.lr,
        "trainer.max_epochs": recipe.trainer.max_epochs,
    }
    for key, value in positives.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if data.num_sources < 2:
        raise ConfigError(f"data.num_sources: separation needs at least 2, got {data.num_sources}")
    if data.root is None:
        raise ConfigError("data.root: not set; pass data.root=/path/to/data")
    if data.num_workers < 0:
        raise ConfigError(f"data.num_workers: must be >= 0, got {data.num_workers}")
    if optim.average_epochs < 0:
        raise ConfigError(
            f"optim.average_epochs: must be >= 0 (0: no averaged.pt), got {optim.average_epochs}"
        )
    if not 0 < optim.plateau_factor < 1:
        raise ConfigError(f"optim.plateau_factor: must be in (0, 1), got {optim.plateau_factor}")

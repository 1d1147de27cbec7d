"""Training and validation data for a recipe, built and checked before training starts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..audio import find_unusable
from ..data.layouts import DEFAULT_SPLITS, SeparationFolderDataset, layout_dataset
from ..data.mixing import DynamicMixDataset, MixingConfig, MixtureDrawer
from ..data.sampling import EpochSampler
from ..data.sources import Utterance, index_noise, index_sources, split_speakers
from ..errors import DataError
from .recipe import DataSection

Item = tuple[torch.Tensor, torch.Tensor, str]
# Streams keep the random draws of the splits of one seed apart.
TRAIN_STREAM, VALID_STREAM = 0, 1


@dataclass
class TrainingData:
    """The checked datasets of a recipe and, for dynamic mixing, its speaker splits."""

    train: Dataset[Item]
    valid: Dataset[Item]
    speaker_splits: dict[str, list[str]] | None = None
    # One line per file left out because it is unreadable, truncated or holds NaN/Inf.
    skipped: list[str] = field(default_factory=list)


def mixing_config(data: DataSection, segment: float | None, augment: bool) -> MixingConfig:
    """The dynamic-mixing settings of a data section (its fields named as in
    :class:`MixingConfig`), with the given window length; without ``augment`` (validation)
    the windows get no EQ, no room, no turns and always every voice (SI-SNRi needs each
    target)."""
    shared = {
        item.name: getattr(data, item.name)
        for item in fields(MixingConfig)
        if hasattr(data, item.name)
    }
    shared["segment"] = segment
    if not augment:
        shared.update(eq_prob=0.0, reverb_prob=0.0, lone=0.0, turns=0.0)
    return MixingConfig(**shared)


def split_noise(noises: list[Utterance], seed: int) -> dict[str, list[Utterance]]:
    """Noise files split 80/10/10 (at least one held out each) when there are 3 or more."""
    if len(noises) < 3:
        return {"train": noises, "valid": noises, "test": noises}
    order = np.random.default_rng([seed, 15485863]).permutation(len(noises))
    held = max(1, round(0.1 * len(noises)))
    picked = [noises[i] for i in order]
    return {"valid": picked[:held], "test": picked[held : 2 * held], "train": picked[2 * held :]}


def usable_utterances(utterances: list[Utterance], skipped: list[str]) -> list[Utterance]:
    """The utterances whose whole file decodes to finite samples; the others go to ``skipped``."""
    problems = find_unusable([u.path for u in utterances])
    skipped.extend(problems.values())
    return [u for u in utterances if u.path not in problems]


def drop_unusable_items(dataset: SeparationFolderDataset, skipped: list[str]) -> None:
    """Remove the mixtures of which any file (mixture or source) is unusable."""
    files = {name: dataset.item_files(name) for name, _ in dataset.items}
    problems = find_unusable(path for paths in files.values() for path in paths)
    skipped.extend(problems.values())
    dataset.drop({name for name, paths in files.items() if any(p in problems for p in paths)})


def speaker_split_sources(
    data: DataSection, seed: int, skipped: list[str]
) -> tuple[dict[str, list[Utterance]], dict[str, list[str]], dict[str, list[Utterance]] | None]:
    """Utterances per split, speakers per split, and noise per split (or None).

    Files that do not decode to finite samples are left out, each with a line in ``skipped``.
    """
    assert data.root is not None
    utterances = usable_utterances(index_sources(data.root), skipped)
    if not utterances:
        raise DataError(f"{data.root}: no usable recordings are left")
    speakers = sorted({u.speaker for u in utterances})
    splits = split_speakers(
        speakers,
        data.valid_speakers,
        data.test_speakers,
        seed,
        data.num_sources,
        held_out=data.held_out_speakers,
        train_only=data.train_only_speakers,
    )
    split_of = {speaker: name for name, members in splits.items() for speaker in members}
    by_split: dict[str, list[Utterance]] = {name: [] for name in splits}
    for utterance in utterances:
        if utterance.speaker in split_of:
            by_split[split_of[utterance.speaker]].append(utterance)
    noise = None
    if data.noise_root is not None:
        noises = usable_utterances(index_noise(Path(data.noise_root).expanduser()), skipped)
        if not noises:
            raise DataError(f"{data.noise_root}: no usable noise recordings are left")
        noise = split_noise(noises, seed)
    return by_split, splits, noise


def build_training_data(data: DataSection, seed: int) -> TrainingData:
    """Index and check the recipe's data; every data error is raised here.

    Every file is decoded once: files that are unreadable, truncated or hold NaN/Inf are
    left out (with their mixtures), each listed in :attr:`TrainingData.skipped`.
    """
    assert data.root is not None
    skipped: list[str] = []
    if data.kind == "speakers":
        by_split, splits, noise = speaker_split_sources(data, seed, skipped)

        def mixed(split: str, segment: float | None, items: int, stream: int) -> DynamicMixDataset:
            # Training draws new augmented mixtures every epoch; validation a fixed, dry set.
            training = split == "train"
            drawer = MixtureDrawer(
                by_split[split],
                mixing_config(data, segment, augment=training),
                None if noise is None else noise[split],
            )
            return DynamicMixDataset(drawer, items, seed, stream, fixed=not training)

        train = mixed("train", data.segment, data.train_items, TRAIN_STREAM)
        valid = mixed("valid", data.valid_segment, data.valid_items, VALID_STREAM)
        return TrainingData(train, valid, splits, skipped)
    root = Path(data.root).expanduser()
    defaults = DEFAULT_SPLITS[data.kind]
    common: dict[str, Any] = {
        "num_sources": data.num_sources,
        "sample_rate": data.sample_rate,
        "task": data.task,
        "length_mode": data.length_mode,
        "seed": seed,
    }
    train_set = layout_dataset(
        data.kind, root, data.train_split or defaults["train"], segment=data.segment, **common
    )
    valid_set = layout_dataset(
        data.kind, root, data.valid_split or defaults["valid"], segment=data.valid_segment, **common
    )
    for dataset in (train_set, valid_set):
        drop_unusable_items(dataset, skipped)
    return TrainingData(train_set, valid_set, skipped=skipped)


def collate(items: list[Item]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack items of equal length: mixtures (B, T), sources (B, C, T), names."""
    mixtures, sources, names = zip(*items, strict=True)
    return torch.stack(mixtures), torch.stack(sources), list(names)


class SeparationDataModule(L.LightningDataModule):
    """Loaders over prepared :class:`TrainingData`, sharded by process rank."""

    def __init__(self, data: TrainingData, section: DataSection, seed: int) -> None:
        super().__init__()
        self.data, self.section, self.seed = data, section, seed

    def loader(self, dataset: Dataset[Item], shuffle: bool, batch_size: int) -> DataLoader[Any]:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = EpochSampler(len(dataset), self.seed, shuffle, rank, world)  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.section.num_workers,
            collate_fn=collate,
            drop_last=shuffle,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self.loader(self.data.train, True, self.section.batch_size)

    def val_dataloader(self) -> DataLoader[Any]:
        # Whole utterances differ in length, so they go one per batch.
        size = self.section.batch_size if self.section.valid_segment is not None else 1
        return self.loader(self.data.valid, False, size)

"""Pre-mixed datasets in their published folder layouts.

* LibriMix (Libri2Mix, Libri3Mix): ``ROOT/wav8k|wav16k/min|max/<split>/{mix_clean,
  mix_both, s1, s2, s3, noise}`` with ``ROOT/wav*/min|max/metadata/mixture_<split>_<mix>.csv``;
  splits ``train-360``, ``train-100``, ``dev``, ``test``.
* WHAM! / WSJ0-2mix: ``ROOT/tr|cv|tt/{mix_clean, mix_both, s1, s2, noise}``.
* LRS2-2Mix: ``ROOT/tr|cv|tt/{mix, s1, s2}``.

A split folder holds one mixture folder and one folder per source with files of the same
names, lengths and sample rate; all of that is checked when the dataset is built.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import audio_info, is_audio_file, read_mono
from ..errors import DataError
from .mixing import item_key

LayoutKind = Literal["librimix", "wham", "lrs2mix"]
LAYOUT_KINDS: tuple[str, ...] = ("librimix", "wham", "lrs2mix")
# Mixture folder per layout and task: "clean" (speech only) or "noisy" (speech + noise).
MIXTURE_FOLDERS: dict[str, dict[str, str]] = {
    "librimix": {"clean": "mix_clean", "noisy": "mix_both"},
    "wham": {"clean": "mix_clean", "noisy": "mix_both"},
    "lrs2mix": {"clean": "mix"},
}
DEFAULT_SPLITS: dict[str, dict[str, str]] = {
    "librimix": {"train": "train-360", "valid": "dev", "test": "test"},
    "wham": {"train": "tr", "valid": "cv", "test": "tt"},
    "lrs2mix": {"train": "tr", "valid": "cv", "test": "tt"},
}


def mixture_folder(kind: str, task: str) -> str:
    """Name of the mixture folder of a layout for a task ("clean" or "noisy")."""
    folders = MIXTURE_FOLDERS[kind]
    if task not in folders:
        raise DataError(
            f"the {kind} layout has no {task!r} mixtures; choose {', '.join(map(repr, folders))}"
        )
    return folders[task]


def split_folder(
    kind: str, root: Path, split: str, sample_rate: int, length_mode: str = "min"
) -> Path:
    """The folder of one split of a layout (LibriMix adds ``wav<k>k/<min|max>``)."""
    if kind == "librimix":
        if sample_rate % 1000:
            raise DataError(f"LibriMix exists at 8 and 16 kHz, not {sample_rate} Hz")
        return root / f"wav{sample_rate // 1000}k" / length_mode / split
    return root / split


def metadata_ids(split_dir: Path, split: str, mix_folder: str) -> list[str] | None:
    """Mixture IDs from LibriMix's ``metadata/mixture_<split>_<mix>.csv``, if it exists."""
    path = split_dir.parent / "metadata" / f"mixture_{split}_{mix_folder}.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "mixture_ID" not in (reader.fieldnames or ()):
            raise DataError(f"{path}: LibriMix metadata needs a mixture_ID column")
        return [row["mixture_ID"] for row in reader]


class SeparationFolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor, str]]):
    """Mixtures and their sources from one split folder.

    With ``segment`` (seconds) every item is a random window of that length (utterances
    shorter than it are skipped), drawn from (seed, epoch, index); without, whole utterances.
    Items are (mixture (T,), sources (C, T), name).
    """

    def __init__(
        self,
        split_dir: Path,
        mix_folder: str,
        num_sources: int,
        sample_rate: int,
        segment: float | None = None,
        seed: int = 0,
        ids: list[str] | None = None,
    ) -> None:
        self.split_dir, self.sample_rate, self.seed = split_dir, sample_rate, seed
        self.mix_dir = split_dir / mix_folder
        self.source_dirs = [split_dir / f"s{k + 1}" for k in range(num_sources)]
        for folder in [self.mix_dir, *self.source_dirs]:
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: missing folder (expected {split_dir}/{{{mix_folder},s1,...}})"
                )
        if ids is None:
            names = sorted(p.name for p in self.mix_dir.iterdir() if is_audio_file(p))
        else:
            names = [f"{i}.wav" for i in ids]
        if not names:
            raise DataError(f"{self.mix_dir}: no mixtures found")
        self.segment_samples = None if segment is None else round(segment * sample_rate)
        self.items: list[tuple[str, int]] = []
        for name in names:
            frames = self.check_item(name)
            if self.segment_samples is None or frames >= self.segment_samples:
                self.items.append((name, frames))
        if not self.items:
            raise DataError(
                f"{self.mix_dir}: every mixture is shorter than the {segment} s training segment; "
                "lower data.segment"
            )

    def check_item(self, name: str) -> int:
        """Frames of a mixture after checking its sources exist with equal length and rate."""
        mix_path = self.mix_dir / name
        if not mix_path.is_file():
            raise DataError(f"{mix_path}: listed in the metadata but missing")
        mix_info = audio_info(mix_path)
        frames, rate = mix_info.frames, mix_info.sample_rate
        if rate != self.sample_rate:
            raise DataError(
                f"{mix_path}: sample rate {rate} Hz, but the model or recipe uses "
                f"{self.sample_rate} Hz; resample the data or use a matching model/data.sample_rate"
            )
        for folder in self.source_dirs:
            path = folder / name
            if not path.is_file():
                raise DataError(f"{path}: missing source for mixture {mix_path.name}")
            src_info = audio_info(path)
            src_frames, src_rate = src_info.frames, src_info.sample_rate
            if src_rate != rate:
                raise DataError(
                    f"{path}: sample rate {src_rate} Hz differs from its mixture's {rate} Hz"
                )
            if src_frames != frames:
                raise DataError(f"{path}: {src_frames} samples but its mixture has {frames}")
        return frames

    def item_files(self, name: str) -> list[Path]:
        """The mixture file and the source files of mixture ``name``."""
        return [self.mix_dir / name, *(folder / name for folder in self.source_dirs)]

    def drop(self, names: set[str]) -> None:
        """Remove these mixtures (e.g. with unusable audio); a :class:`DataError` if none is left."""
        self.items = [item for item in self.items if item[0] not in names]
        if not self.items:
            raise DataError(f"{self.mix_dir}: no usable mixtures are left")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str]:
        epoch, index = item_key(key)
        name, frames = self.items[index]
        start, stop = 0, None
        if self.segment_samples is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, frames - self.segment_samples + 1))
            stop = start + self.segment_samples
        mixture, _ = read_mono(self.mix_dir / name, start, stop)
        sources = np.stack([read_mono(d / name, start, stop)[0] for d in self.source_dirs])
        return torch.from_numpy(mixture), torch.from_numpy(sources), Path(name).stem


def layout_dataset(
    kind: str,
    root: Path,
    split: str,
    num_sources: int,
    sample_rate: int,
    task: str = "clean",
    length_mode: str = "min",
    segment: float | None = None,
    seed: int = 0,
) -> SeparationFolderDataset:
    """One split of a published layout, checked (see the module docstring)."""
    if kind not in LAYOUT_KINDS:
        raise DataError(f"unknown dataset layout {kind!r}; choose one of {', '.join(LAYOUT_KINDS)}")
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    if kind == "lrs2mix" and num_sources != 2:
        raise DataError(f"LRS2-2Mix has 2 sources, not {num_sources}")
    folder = split_folder(kind, root, split, sample_rate, length_mode)
    if not folder.is_dir():
        raise DataError(f"{folder}: missing split folder for the {kind} layout")
    mix = mixture_folder(kind, task)
    ids = metadata_ids(folder, split, mix) if kind == "librimix" else None
    return SeparationFolderDataset(folder, mix, num_sources, sample_rate, segment, seed, ids)


def detect_mixture_folder(split_dir: Path) -> str:
    """The mixture folder inside a split folder: mix_clean, mix, or mix_both (in that order)."""
    for name in ("mix_clean", "mix", "mix_both"):
        if (split_dir / name).is_dir():
            return name
    raise DataError(f"{split_dir}: no mixture folder (mix_clean, mix_both or mix) found")


def count_source_folders(split_dir: Path) -> int:
    """How many consecutive source folders s1, s2, ... a split folder holds."""
    count = 0
    while (split_dir / f"s{count + 1}").is_dir():
        count += 1
    return count

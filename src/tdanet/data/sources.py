"""Single-speaker recordings grouped by speaker, and speaker-disjoint splits.

A source index is built from either
  * a folder with one sub-folder per speaker, audio anywhere below it (the LibriSpeech
    layout ``speaker/chapter/utt.flac`` works, so does ``speaker/utt.wav``), or
  * a CSV manifest with a header and at least the columns ``path`` and ``speaker``
    (relative paths are relative to the CSV's folder).
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import audio_info, is_audio_file
from ..errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    """One single-speaker recording."""

    path: Path
    speaker: str
    frames: int
    sample_rate: int

    @classmethod
    def from_file(cls, path: Path, speaker: str) -> Utterance:
        """Length and rate from the file's header."""
        info = audio_info(path)
        return cls(path, speaker, info.frames, info.sample_rate)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def index_speaker_folder(root: Path) -> list[Utterance]:
    """Every audio file below ``root/<speaker>/``, labelled with its speaker folder's name."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of speaker recordings")
    utterances = []
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if speaker_dir.name.startswith("."):
            continue
        for path in sorted(p for p in speaker_dir.rglob("*") if p.is_file() and is_audio_file(p)):
            utterances.append(Utterance.from_file(path, speaker_dir.name))
    if not utterances:
        raise DataError(
            f"{root}: no audio found in speaker sub-folders (expected {root}/<speaker>/.../*.flac)"
        )
    return utterances


def index_manifest(manifest: Path) -> list[Utterance]:
    """Utterances listed in a CSV with ``path`` and ``speaker`` columns."""
    if not manifest.is_file():
        raise DataError(f"{manifest}: no such manifest file")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "speaker"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(
                f"{manifest}: manifest needs a header with columns path,speaker "
                f"(missing {', '.join(sorted(missing))})"
            )
        rows = list(reader)
    utterances = []
    for line, row in enumerate(rows, start=2):
        if not row["path"] or not row["speaker"]:
            raise DataError(f"{manifest}:{line}: empty path or speaker")
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise DataError(f"{manifest}:{line}: {path}: no such audio file")
        utterances.append(Utterance.from_file(path, row["speaker"]))
    if not utterances:
        raise DataError(f"{manifest}: the manifest lists no recordings")
    return utterances


def index_sources(source: str | Path) -> list[Utterance]:
    """A speaker folder or a ``.csv`` manifest, whichever ``source`` is."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv":
        return index_manifest(path)
    return index_speaker_folder(path)


def index_noise(root: Path) -> list[Utterance]:
    """Every audio file below ``root`` (noise needs no speaker labels)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such noise folder")
    noises = [
        Utterance.from_file(p, "noise")
        for p in sorted(root.rglob("*"))
        if p.is_file() and is_audio_file(p)
    ]
    if not noises:
        raise DataError(f"{root}: the noise folder holds no audio files")
    return noises


def group_by_speaker(utterances: list[Utterance]) -> dict[str, list[Utterance]]:
    """Speaker -> their utterances, speakers in sorted order."""
    groups: dict[str, list[Utterance]] = {}
    for utt in utterances:
        groups.setdefault(utt.speaker, []).append(utt)
    return dict(sorted(groups.items()))


def held_out_count(value: float, total: int) -> int:
    """Speakers for a held-out split: an int is a count, a float in (0, 1) a fraction."""
    if isinstance(value, float) and 0 < value < 1:
        return max(1, round(value * total))
    return int(value)


def split_speakers(
    speakers: list[str],
    valid: float,
    test: float,
    seed: int,
    num_sources: int,
    held_out: Iterable[str] = (),
    train_only: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Speaker-disjoint train/valid/test lists, drawn reproducibly from ``seed``.

    ``valid``/``test`` are counts (int) or fractions (float in (0, 1)) of the speakers that
    may be held out. Speakers matching a ``held_out`` pattern (``fnmatch``) form the test
    split (``test`` must then be 0); those matching ``train_only`` are never held out. Each
    split must hold at least ``num_sources`` speakers, since a mixture needs that many voices.
    """
    held_patterns, train_patterns = list(held_out), list(train_only)
    fixed_test = sorted(s for s in speakers if matches(s, held_patterns))
    if held_patterns and test:
        raise DataError("test_speakers must be 0 when held_out_speakers names the test split")
    if held_patterns and not fixed_test:
        raise DataError(f"held_out_speakers {held_patterns} match no speaker; check the names")
    always_train = sorted(s for s in speakers if matches(s, train_patterns))
    clash = sorted(set(fixed_test) & set(always_train))
    if clash:
        raise DataError(f"speaker {clash[0]} is both held out and train-only; fix the patterns")
    candidates = sorted(set(speakers) - set(fixed_test) - set(always_train))
    total = len(candidates) + len(fixed_test)
    n_valid = held_out_count(valid, total)
    n_test = len(fixed_test) if held_patterns else held_out_count(test, total)
    n_train = len(speakers) - n_valid - n_test
    if min(n_train, n_valid, n_test) < num_sources or n_valid + n_test - len(fixed_test) > len(
        candidates
    ):
        raise DataError(
            f"{len(speakers)} speakers is too few for {num_sources}-speaker mixtures with "
            f"speaker-disjoint splits (train {n_train}, valid {n_valid}, test {n_test}; each "
            f"needs at least {num_sources}); add speakers or hold out fewer (valid_speakers, "
            "test_speakers)"
        )
    order = np.random.default_rng([seed, 7919]).permutation(candidates)
    chosen = [str(s) for s in order]
    drawn_test = 0 if held_patterns else n_test
    return {
        "train": sorted(chosen[n_valid + drawn_test :] + always_train),
        "valid": sorted(chosen[:n_valid]),
        "test": sorted(fixed_test or chosen[n_valid : n_valid + drawn_test]),
    }


def matches(speaker: str, patterns: list[str]) -> bool:
    """Whether ``speaker`` matches any shell pattern (``kokoro-*``) or name in ``patterns``."""
    return any(fnmatch.fnmatchcase(speaker, pattern) for pattern in patterns)

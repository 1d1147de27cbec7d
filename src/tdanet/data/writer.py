"""``tdanet mix``: a fixed, seeded set of mixtures written to disk in the LibriMix layout.

``OUT/wav<k>k/<min|max>/<split>/{mix_clean, s1..sN}`` (plus ``mix_both`` and ``noise``
when a noise folder is given) for the splits ``train``, ``dev`` and ``test``, and
``OUT/wav<k>k/<min|max>/metadata/mixture_<split>_<mix>.csv`` with LibriMix's columns
(``mixture_ID, mixture_path, source_1_path, ..., [noise_path,] length``), plus
``<split>_sources.csv`` (speaker, file, start, speed, gain of every source) and
``OUT/splits.json`` (speakers per split). Speakers are split as ``tdanet train`` splits
them for the same seed and held-out sizes, so the test set holds the speakers a run on
the same folder never trained on.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import staging_directory
from ..audio import write_audio
from ..errors import DataError
from .mixing import MixingConfig, MixtureDrawer
from .sources import Utterance, index_noise, index_sources, split_speakers

# On-disk split names (LibriMix's) for the speaker splits.
DISK_SPLITS = {"train": "train", "valid": "dev", "test": "test"}
# Seeds streams distinct from training's on-the-fly draws.
STREAMS = {"train": 10, "valid": 11, "test": 12}


def rate_folder(sample_rate: int) -> str:
    """LibriMix's folder name for a sample rate: 8000 -> wav8k."""
    if sample_rate % 1000:
        raise DataError(
            f"the LibriMix layout names rates in kHz; {sample_rate} Hz is not whole kHz"
        )
    return f"wav{sample_rate // 1000}k"


def write_split(
    drawer: MixtureDrawer,
    count: int,
    split_dir: Path,
    final_split_dir: Path,
    rng_key: list[int],
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Draw and write ``count`` mixtures; returns the mixture rows and the source rows."""
    num_sources = drawer.config.num_sources
    rate = drawer.config.sample_rate
    mixtures, sources = [], []
    for index in range(count):
        drawn = drawer.draw(np.random.default_rng([*rng_key, index]))
        stems = [Path(s["path"]).stem for s in drawn.info["sources"]]
        mixture_id = f"{index:05d}_" + "_".join(stems)
        name = f"{mixture_id}.wav"
        row: dict[str, object] = {"mixture_ID": mixture_id}
        clean = drawn.sources.sum(0)
        write_audio(split_dir / "mix_clean" / name, clean, rate, subtype="FLOAT")
        row["mixture_path"] = str(final_split_dir / "mix_clean" / name)
        for k in range(num_sources):
            write_audio(split_dir / f"s{k + 1}" / name, drawn.sources[k], rate, subtype="FLOAT")
            row[f"source_{k + 1}_path"] = str(final_split_dir / f"s{k + 1}" / name)
        if drawn.noise is not None:
            write_audio(split_dir / "noise" / name, drawn.noise, rate, subtype="FLOAT")
            write_audio(split_dir / "mix_both" / name, drawn.mixture, rate, subtype="FLOAT")
            row["noise_path"] = str(final_split_dir / "noise" / name)
        row["length"] = int(drawn.info["length"])
        mixtures.append(row)
        for k, item in enumerate(drawn.info["sources"]):
            sources.append({"mixture_ID": mixture_id, "source": k + 1, **item})
        if progress is not None:
            progress(split_dir.name, index + 1, count)
    return mixtures, sources


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_mixtures(
    source: str | Path,
    out: Path,
    counts: dict[str, int],
    config: MixingConfig,
    seed: int = 0,
    valid_speakers: float = 0.1,
    test_speakers: float = 0.1,
    noise_root: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Write the splits in ``counts`` (keys train/valid/test) under ``out``; returns the
    LibriMix-style folder ``out/wav<k>k/<mode>``. ``out`` must not exist; it appears only
    when everything is written."""
    if out.exists():
        raise DataError(f"{out}: already exists; choose a new output folder")
    out = out.expanduser().resolve()
    unknown = sorted(set(counts) - set(DISK_SPLITS))
    if unknown or not any(counts.values()):
        raise DataError("mix: give positive counts for some of train, valid, test")
    utterances = index_sources(source)
    speakers = sorted({u.speaker for u in utterances})
    splits = split_speakers(speakers, valid_speakers, test_speakers, seed, config.num_sources)
    noises: list[Utterance] | None = None if noise_root is None else index_noise(noise_root)
    layout = Path(rate_folder(config.sample_rate)) / config.mode
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(out)
    try:
        for split, count in counts.items():
            if count <= 0:
                continue
            members = set(splits[split])
            drawer = MixtureDrawer([u for u in utterances if u.speaker in members], config, noises)
            disk = DISK_SPLITS[split]
            mixtures, sources = write_split(
                drawer,
                count,
                staging / layout / disk,
                out / layout / disk,
                [seed, STREAMS[split]],
                progress,
            )
            metadata = staging / layout / "metadata"
            write_csv(
                metadata / f"mixture_{disk}_mix_clean.csv",
                [{k: v for k, v in row.items() if k != "noise_path"} for row in mixtures],
            )
            if noises:
                both = [
                    {
                        **row,
                        "mixture_path": str(row["mixture_path"]).replace(
                            "/mix_clean/", "/mix_both/"
                        ),
                    }
                    for row in mixtures
                ]
                write_csv(metadata / f"mixture_{disk}_mix_both.csv", both)
            write_csv(metadata / f"{disk}_sources.csv", sources)
        (staging / "splits.json").write_text(json.dumps(splits, indent=2) + "\n")
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / layout

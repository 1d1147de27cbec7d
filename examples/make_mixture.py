"""Rebuild examples/mixture.wav and its two references from a `tdanet corpus` folder.

    python examples/make_mixture.py data/corpus examples

Two held-out voices of the bundled model (`data.held_out_speakers` of
recipes/tdanet-demo.yaml), chosen by a rule fixed before any model was scored on them: the two
held-out voices with the most speech among the GPL-licensed sources (so the files can be
shared under one licence), `tuxpaint-el` and `tuxpaint-da`, and of each the first clip of at
least 3 s in sorted path order. Each is normalised to -25 LUFS, both are cropped to the
shorter (so the voices overlap throughout), summed, and scaled down together if the mix would
clip. Written as 16-bit PCM WAV at 16 kHz.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf

SAMPLE_RATE = 16000
SOURCES = (
    "tuxpaint-el/animals-birds/quetzal.flac",
    "tuxpaint-da/space-planets/2_venus.flac",
)
LOUDNESS_LUFS = -25.0
PEAK = 0.9


def load_normalised(path: Path) -> np.ndarray:
    """A corpus clip at ``LOUDNESS_LUFS``: (T,) float64."""
    audio, rate = sf.read(str(path), dtype="float64")
    if rate != SAMPLE_RATE or audio.ndim != 1:
        raise SystemExit(f"{path}: expected 16 kHz mono (a `tdanet corpus` file)")
    loudness = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(audio)
    return np.asarray(audio * 10 ** ((LOUDNESS_LUFS - loudness) / 20))


def make_mixture(corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mixture (T,), references (2, T)): the sum of the two voices, cropped to the shorter."""
    voices = [load_normalised(corpus / name) for name in SOURCES]
    length = min(v.size for v in voices)
    references = np.stack([v[:length] for v in voices])
    mixture = references.sum(axis=0)
    scale = min(1.0, PEAK / float(np.max(np.abs(mixture))))
    return mixture * scale, references * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder written by `tdanet corpus`")
    parser.add_argument("out", type=Path, help="folder for mixture.wav, mixture_s1/_s2.wav")
    args = parser.parse_args()
    mixture, references = make_mixture(args.corpus)
    args.out.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.out / "mixture.wav"), mixture, SAMPLE_RATE, subtype="PCM_16")
    for index, reference in enumerate(references, start=1):
        sf.write(str(args.out / f"mixture_s{index}.wav"), reference, SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {args.out}/mixture.wav ({mixture.size / SAMPLE_RATE:.2f} s) and 2 references")


if __name__ == "__main__":
    main()

"""Small generated audio datasets for data/training tests: speaker folders and mixed layouts.

Each "speaker" is a harmonic voice with its own pitch and vibrato, so mixtures of two are
separable and SI-SNR behaves as on speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def voice(speaker: int, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A (T,) float32 harmonic tone with speaker-specific pitch and a syllable-like envelope."""
    rng = np.random.default_rng([speaker, seed])
    t = np.arange(int(seconds * rate)) / rate
    pitch = (90 + 37 * speaker) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.3 + 0.7 * np.sin(2 * np.pi * rng.uniform(2, 4) * t) ** 2
    return np.asarray(0.1 * tone * envelope, dtype=np.float32)


def write_speaker_corpus(
    root: Path, speakers: int = 6, utterances: int = 3, rate: int = 8000, seconds: float = 1.5
) -> Path:
    """ROOT/spkNN/chapter/spkNN-UUU.flac, the LibriSpeech-like layout."""
    for s in range(speakers):
        for u in range(utterances):
            path = root / f"spk{s:02d}" / "1" / f"spk{s:02d}-{u:03d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(s, seconds + 0.25 * u, rate, u), rate)
    return root


def write_split(
    split_dir: Path,
    mix_folder: str,
    count: int = 3,
    sources: int = 2,
    rate: int = 8000,
    seconds: float = 1.0,
    noise: bool = False,
) -> list[str]:
    """One split folder with mixtures (sum of sources) and s1..sN (and noise) of equal length."""
    names = []
    for i in range(count):
        name = f"utt{i:03d}.wav"
        signals = [voice(k + i, seconds + 0.1 * i, rate, i) for k in range(sources)]
        mixture = np.sum(signals, axis=0)
        for k, signal in enumerate(signals):
            (split_dir / f"s{k + 1}").mkdir(parents=True, exist_ok=True)
            sf.write(split_dir / f"s{k + 1}" / name, signal, rate)
        if noise:
            hiss = 0.01 * np.random.default_rng(i).standard_normal(mixture.shape[0])
            (split_dir / "noise").mkdir(parents=True, exist_ok=True)
            sf.write(split_dir / "noise" / name, hiss.astype(np.float32), rate)
            mixture = mixture + hiss
        (split_dir / mix_folder).mkdir(parents=True, exist_ok=True)
        sf.write(split_dir / mix_folder / name, mixture.astype(np.float32), rate)
        names.append(name)
    return names

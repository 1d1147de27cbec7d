from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet.data.layouts import layout_dataset
from tdanet.errors import DataError

from ..synthetic_speech import write_split


def librimix(root: Path, sources: int = 2, rate: int = 8000, noise: bool = True) -> Path:
    """A tiny Libri{N}Mix: wav8k/min/{train-360,dev,test} with mix_clean, mix_both, s*, noise."""
    base = root / f"wav{rate // 1000}k" / "min"
    for split in ("train-360", "dev", "test"):
        names = write_split(base / split, "mix_clean", sources=sources, rate=rate)
        if noise:
            write_split(base / split, "mix_both", sources=sources, rate=rate, noise=True)
        metadata = base / "metadata" / f"mixture_{split}_mix_clean.csv"
        metadata.parent.mkdir(parents=True, exist_ok=True)
        with metadata.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["mixture_ID", "mixture_path", "length"])
            for name in names:
                writer.writerow([Path(name).stem, f"/elsewhere/{name}", 0])
    return root


@pytest.mark.parametrize("sources", [2, 3])
def test_librimix_whole_utterances_and_segments(tmp_path: Path, sources: int) -> None:
    root = librimix(tmp_path / f"Libri{sources}Mix", sources=sources)
    test = layout_dataset("librimix", root, "test", sources, 8000)
    assert len(test) == 3
    mixture, refs, name = test[2]
    assert refs.shape == (sources, mixture.shape[0]) and mixture.shape[0] == 8000 + 2 * 800
    assert torch.allclose(refs.sum(0), mixture, atol=1e-3)  # 16-bit files
    assert name == "utt002"
    train = layout_dataset("librimix", root, "train-360", sources, 8000, segment=0.5, seed=3)
    a, b = train[(0, 1)], train[(1, 1)]
    assert a[0].shape == (4000,) and a[1].shape == (sources, 4000)
    assert torch.equal(a[0], train[(0, 1)][0])  # the same key is the same window
    assert not torch.equal(a[0], b[0])  # another epoch, another window


def test_librimix_metadata_lists_the_mixtures(tmp_path: Path) -> None:
    root = librimix(tmp_path / "Libri2Mix", noise=False)
    csv_path = root / "wav8k/min/metadata/mixture_test_mix_clean.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines[:2]) + "\n")  # keep one mixture
    assert len(layout_dataset("librimix", root, "test", 2, 8000)) == 1


def test_wham_noisy_task_reads_mix_both(tmp_path: Path) -> None:
    root = tmp_path / "wham"
    for split in ("tr", "cv", "tt"):
        write_split(root / split, "mix_clean")
        write_split(root / split, "mix_both", noise=True)
    clean = layout_dataset("wham", root, "tt", 2, 8000, task="clean")
    noisy = layout_dataset("wham", root, "tt", 2, 8000, task="noisy")
    assert clean.mix_dir.name == "mix_clean" and noisy.mix_dir.name == "mix_both"
    mix, refs, _ = noisy[0]
    assert not torch.allclose(refs.sum(0), mix, atol=1e-4)  # noise is in the mixture


def test_lrs2mix_layout(tmp_path: Path) -> None:
    root = tmp_path / "lrs2"
    write_split(root / "tt", "mix", rate=16000)
    data = layout_dataset("lrs2mix", root, "tt", 2, 16000)
    assert len(data) == 3 and data[0][1].shape[0] == 2
    with pytest.raises(DataError, match="no 'noisy' mixtures"):
        layout_dataset("lrs2mix", root, "tt", 2, 16000, task="noisy")


def test_layout_errors_are_caught_up_front(tmp_path: Path) -> None:
    root = tmp_path / "wham"
    write_split(root / "tt", "mix_clean")
    with pytest.raises(DataError, match="missing split folder"):
        layout_dataset("wham", root, "cv", 2, 8000)
    with pytest.raises(DataError, match="shorter than the 5.0 s training segment"):
        layout_dataset("wham", root, "tt", 2, 8000, segment=5.0)
    with pytest.raises(DataError, match="sample rate 8000 Hz, but the model or recipe uses 16000"):
        layout_dataset("wham", root, "tt", 2, 16000)
    with pytest.raises(DataError, match=r"s3: missing folder"):
        layout_dataset("wham", root, "tt", 3, 8000)
    sf.write(root / "tt" / "s2" / "utt001.wav", np.zeros(100, dtype=np.float32), 8000)
    with pytest.raises(DataError, match="utt001.wav: 100 samples but its mixture has"):
        layout_dataset("wham", root, "tt", 2, 8000)
    sf.write(root / "tt" / "s2" / "utt001.wav", np.zeros(8800, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="differs from its mixture's 8000 Hz"):
        layout_dataset("wham", root, "tt", 2, 8000)
    (root / "tt" / "s2" / "utt001.wav").unlink()
    with pytest.raises(DataError, match="missing source for mixture utt001.wav"):
        layout_dataset("wham", root, "tt", 2, 8000)
    with pytest.raises(DataError, match="no such dataset folder"):
        layout_dataset("wham", tmp_path / "nope", "tt", 2, 8000)

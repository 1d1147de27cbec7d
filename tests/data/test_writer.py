from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.data.mixing import MixingConfig
from tdanet.data.writer import write_mixtures
from tdanet.errors import DataError

from ..synthetic_speech import write_speaker_corpus


def test_same_seed_same_mixtures_other_seed_others(tmp_path: Path) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=9, utterances=2)
    config = MixingConfig(sample_rate=8000, segment=None, num_sources=3, mode="max")
    counts = {"test": 2}
    outputs = [
        write_mixtures(
            corpus, tmp_path / name, counts, config, seed=seed, valid_speakers=3, test_speakers=3
        )
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    sources = [(out / "metadata" / "test_sources.csv").read_text() for out in outputs]
    assert sources[0] == sources[1] != sources[2]
    files = sorted(p.name for p in (outputs[0] / "test" / "s3").iterdir())
    assert len(files) == 2
    # Compare samples, not bytes: float WAVs carry a time stamp in their PEAK chunk.
    first, _ = sf.read(outputs[0] / "test" / "mix_clean" / files[0])
    second, _ = sf.read(outputs[1] / "test" / "mix_clean" / files[0])
    assert np.array_equal(first, second)


def test_nothing_is_left_behind_on_error(tmp_path: Path) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=3, utterances=1)
    with pytest.raises(DataError, match="too few"):
        write_mixtures(corpus, tmp_path / "out", {"test": 1}, MixingConfig(sample_rate=8000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]

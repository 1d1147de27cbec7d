from __future__ import annotations

from pathlib import Path

import pytest

from tdanet.data.sources import index_manifest, index_sources, split_speakers
from tdanet.errors import AudioReadError, DataError

from ..synthetic_speech import write_speaker_corpus


def test_speaker_folder_and_manifest_index_the_same(tmp_path: Path) -> None:
    root = write_speaker_corpus(tmp_path / "corpus", speakers=3, utterances=2)
    from_folder = index_sources(root)
    assert {u.speaker for u in from_folder} == {"spk00", "spk01", "spk02"}
    assert len(from_folder) == 6 and from_folder[0].sample_rate == 8000
    manifest = tmp_path / "list.csv"
    rows = [f"{u.path.relative_to(tmp_path)},{u.speaker}" for u in from_folder]
    manifest.write_text("path,speaker\n" + "\n".join(rows) + "\n")
    from_csv = index_manifest(manifest)
    assert [(u.path, u.speaker, u.frames) for u in from_csv] == [
        (u.path, u.speaker, u.frames) for u in from_folder
    ]


def test_bad_sources_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        index_sources(tmp_path / "missing")
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    with pytest.raises(DataError, match="no audio found"):
        index_sources(tmp_path / "empty")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\nx.wav,a\n")
    with pytest.raises(DataError, match="missing path, speaker"):
        index_sources(bad)
    bad.write_text("path,speaker\nx.wav,a\n")
    with pytest.raises(DataError, match=r"bad.csv:2: .*x.wav: no such audio file"):
        index_sources(bad)
    broken = tmp_path / "broken" / "spk" / "a.wav"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not audio")
    with pytest.raises(AudioReadError, match="a.wav: not a readable audio file"):
        index_sources(tmp_path / "broken")


def test_splits_are_disjoint_seeded_and_sized() -> None:
    speakers = [f"s{i}" for i in range(20)]
    splits = split_speakers(speakers, 0.1, 3, seed=1, num_sources=2)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [15, 2, 3]
    assert sorted(s for members in splits.values() for s in members) == sorted(speakers)
    assert split_speakers(speakers, 0.1, 3, seed=1, num_sources=2) == splits
    assert split_speakers(speakers, 0.1, 3, seed=2, num_sources=2) != splits
    with pytest.raises(DataError, match="5 speakers is too few for 2-speaker mixtures"):
        split_speakers(speakers[:5], 2, 2, seed=0, num_sources=2)


def test_named_held_out_and_train_only_speakers() -> None:
    speakers = [f"real-{i:02d}" for i in range(12)] + [f"kokoro-{i}" for i in range(5)]
    splits = split_speakers(
        speakers, 3, 0, seed=4, num_sources=2, held_out=["real-0[0-2]"], train_only=["kokoro-*"]
    )
    assert splits["test"] == ["real-00", "real-01", "real-02"]
    assert len(splits["valid"]) == 3 and not any(s.startswith("kokoro") for s in splits["valid"])
    assert {f"kokoro-{i}" for i in range(5)} <= set(splits["train"])
    assert sorted(s for members in splits.values() for s in members) == sorted(speakers)
    with pytest.raises(DataError, match="test_speakers must be 0"):
        split_speakers(speakers, 3, 2, seed=4, num_sources=2, held_out=["real-00"])
    with pytest.raises(DataError, match="match no speaker"):
        split_speakers(speakers, 3, 0, seed=4, num_sources=2, held_out=["nobody"])
    with pytest.raises(DataError, match="both held out and train-only"):
        split_speakers(
            speakers, 3, 0, seed=4, num_sources=2, held_out=["kokoro-1"], train_only=["kokoro-*"]
        )

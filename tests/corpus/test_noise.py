from __future__ import annotations

import csv
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.corpus.noise import AMBIENT_PACKAGE, AMBIENT_ZIP, build_noise_corpus
from tdanet.data.sources import index_noise
from tdanet.errors import CorpusError

from .cli import run_corpus


def fake_0ad(root: Path) -> Path:
    """An unpacked ``0ad-data`` whose ``public.zip`` holds two ambient clips, a too-short one
    and files that are not ambience."""
    rng = np.random.default_rng(0)
    clips = root / "clips"
    clips.mkdir(parents=True)
    for name, seconds in (("rain_1", 2.0), ("wind_2", 1.5), ("click", 0.2), ("horn", 2.0)):
        sf.write(clips / f"{name}.ogg", 0.1 * rng.standard_normal(int(seconds * 22050)), 22050)
    archive = root / "pkg" / AMBIENT_ZIP
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(clips / "rain_1.ogg", "audio/ambient/weather/rain_1.ogg")
        zipped.write(clips / "wind_2.ogg", "audio/ambient/weather/wind_2.ogg")
        zipped.write(clips / "click.ogg", "audio/ambient/ui/click.ogg")
        zipped.write(clips / "horn.ogg", "audio/music/horn.ogg")
        zipped.writestr("audio/ambient/weather/rain.xml", "<sound/>")
    return root / "pkg"


def test_ambient_clips_become_a_noise_folder(tmp_path: Path, monkeypatch) -> None:
    # Without ffmpeg the G.722 music is skipped, so only the 0 A.D. package is fetched.
    monkeypatch.setattr("tdanet.corpus.noise.find_ffmpeg", lambda: None)
    package = fake_0ad(tmp_path / "src")
    fetched = []

    def fetch(name: str) -> Path:
        fetched.append(name)
        return package

    rows = build_noise_corpus(tmp_path / "noise", tmp_path / "cache", fetch)
    assert fetched == [AMBIENT_PACKAGE]
    assert sorted(r["file"] for r in rows) == [
        "0ad/weather/rain_1.flac",
        "0ad/weather/wind_2.flac",
    ]
    info = sf.info(str(tmp_path / "noise" / "0ad/weather/rain_1.flac"))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(2.0, abs=0.01)
    listed = list(csv.DictReader((tmp_path / "noise" / "noise.csv").read_text().splitlines()))
    assert [r["licence"] for r in listed] == ["CC-BY-SA-3.0"] * 2
    assert len(index_noise(tmp_path / "noise")) == 2
    assert not list(tmp_path.glob(".noise*"))  # no staging folder left


def test_existing_folder_and_missing_archive_are_errors(tmp_path: Path) -> None:
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "mine.flac").write_bytes(b"")
    with pytest.raises(CorpusError, match="already exists"):
        build_noise_corpus(tmp_path / "noise", tmp_path / "cache", lambda name: tmp_path)
    with pytest.raises(CorpusError, match="no usr/share/games/0ad"):
        build_noise_corpus(tmp_path / "new", tmp_path / "cache", lambda name: tmp_path)
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*"))


def test_cli_needs_a_target_and_refuses_occupied_folders(tmp_path: Path) -> None:
    def corpus(*args: str) -> subprocess.CompletedProcess[str]:
        return run_corpus(tmp_path / "c", *args)

    nothing = corpus()
    assert nothing.returncode == 1 and "pass --out DIR" in nothing.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    # The speech folder is new, but nothing is built because the noise folder is taken.
    result = corpus("--out", str(tmp_path / "speech"), "--noise-out", str(taken))
    assert result.returncode == 1 and "taken: already exists" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "speech").exists() and (taken / "mine.txt").read_text() == "keep"

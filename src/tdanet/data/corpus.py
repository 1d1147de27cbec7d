"""A speaker-labelled demo corpus built from speech that Debian packages ship.

Real single-speaker human recordings (game dialogue, spoken letters and words, phone
prompts) and, optionally, synthetic voices are fetched with ``apt-get download`` (no root
install), unpacked with ``dpkg -x`` into a cache, and converted to the LibriSpeech-like
layout the training data reader expects::

    OUT/<speaker>/<chapter>/<utterance>.flac      16 kHz mono, silence trimmed
    OUT/speakers.csv                               speaker,package,licence,synthetic,...

Speaker ids are descriptive and stable (``fillets-m``, ``klettres-fr``, ``asterisk-june``,
``flite-slt``). The whole corpus is written under a temporary name and renamed when done.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic import staging_directory
from ..errors import CorpusError

SAMPLE_RATE = 16000
# Clips recorded below 16 kHz lack the upper band the model must learn to separate.
MIN_NATIVE_RATE = 16000


@dataclass(frozen=True)
class Recording:
    """One single-speaker recording found in an unpacked package (or synthesised)."""

    path: Path
    speaker: str
    chapter: str
    name: str


@dataclass(frozen=True)
class Source:
    """A family of recordings: which packages hold it and how it is labelled."""

    name: str
    packages: tuple[str, ...]
    licence: str
    synthetic: bool
    description: str


SOURCES: dict[str, Source] = {
    "fillets": Source(
        "fillets",
        ("fillets-ng-data-cs",),
        "GPL-2+",
        False,
        "Czech acted game dialogue (Fish Fillets NG); main voices m and v, minor characters",
    ),
    "klettres": Source(
        "klettres",
        ("klettres-data",),
        "GPL-2+",
        False,
        "letters and syllables spoken in about 20 languages, one voice per language",
    ),
    "ktuberling": Source(
        "ktuberling",
        ("ktuberling-data",),
        "GPL-2+",
        False,
        "single words in about 25 languages, one voice set per language",
    ),
    "asterisk": Source(
        "asterisk",
        tuple(f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it")),
        "CC-BY-SA-3.0",
        False,
        "telephone prompts (G.722 wideband): Allison (en, es), June (fr), Carlo (it)",
    ),
    "tuxpaint": Source(
        "tuxpaint",
        ("tuxpaint-stamps-default",),
        "GPL-2",
        False,
        "spoken Tux Paint stamp descriptions, one reader per language (ro, es, ru, fr, bg, ...)",
    ),
    "festvox-ru": Source(
        "festvox-ru",
        ("festvox-ru",),
        "festvox-ru licence (BSD-like)",
        False,
        "read Russian sentences: the recordings of the msu_ru_nsh Festival voice, one male",
    ),
    "flite": Source(
        "flite",
        ("flite", "libflite1"),
        "flite licence (BSD-like)",
        True,
        "synthetic English voices of the flite synthesiser: kal16, awb, rms, slt",
    ),
}
DEFAULT_SOURCES: tuple[str, ...] = tuple(SOURCES)


# --- labelling: where each package keeps its recordings and who speaks them -------------

# Fish Fillets' two protagonists (the small and the big fish) voice most lines of every level.
FILLETS_MAIN_VOICES = frozenset({"m", "v"})


def fillets_speaker(level: str, stem: str) -> str:
    """Speaker id of a Fish Fillets line ``<level>/cs/<stem>.ogg``.

    Lines are named ``<prefix>-<speaker>-<line>``; the two protagonists ``m`` and ``v`` keep
    one id across levels. Other character codes (``x``, ``1``...) are reused by different
    characters in different levels, so they are scoped to their level. Two-field names are
    ``<speaker>-<line>`` or ``<line>-<speaker>`` (whichever field is a protagonist), and a
    one-field name (``help3``) is its level's narrator.
    """
    fields = stem.lower().split("-")
    if len(fields) >= 3:
        code = fields[1]
    elif len(fields) == 2:
        code = fields[1] if fields[1] in FILLETS_MAIN_VOICES else fields[0]
    else:
        code = re.sub(r"\d+$", "", fields[0]) or fields[0]
    if code in FILLETS_MAIN_VOICES:
        return f"fillets-{code}"
    return f"fillets-{level.lower()}-{code}"


def find_fillets(root: Path) -> list[Recording]:
    """Recordings of an unpacked fillets-ng-data-cs: ``.../sound/<level>/cs/*.ogg``."""
    found = []
    for path in sorted(root.glob("usr/share/games/fillets-ng/sound/*/cs/*.ogg")):
        level = path.parent.parent.name
        found.append(Recording(path, fillets_speaker(level, path.stem), level, path.stem))
    return found


def language_id(code: str) -> str:
    """A locale folder name as a speaker-id suffix: ``en_GB`` -> ``en-gb``, ``sr@latin`` -> ``sr``.

    Script variants of one locale (``sr@latin``, ``sr@ijekavian``) are the same recordings.
    """
    return code.split("@")[0].lower().replace("_", "-")


def find_klettres(root: Path) -> list[Recording]:
    """Recordings of an unpacked klettres-data: ``.../klettres/<lang>/{alpha,syllab}/*.ogg``."""
    found = []
    for path in sorted(root.glob("usr/share/klettres/*/*/*.ogg")):
        lang, chapter = path.parent.parent.name, path.parent.name
        found.append(Recording(path, f"klettres-{language_id(lang)}", chapter, path.stem))
    return found


def find_ktuberling(root: Path) -> list[Recording]:
    """Recordings of an unpacked ktuberling-data: ``.../ktuberling/sounds/<lang>/*``."""
    found = []
    for path in sorted(root.glob("usr/share/ktuberling/sounds/*/*")):
        if path.suffix.lower() not in {".ogg", ".wav", ".opus", ".flac"}:
            continue
        lang = path.parent.name
        found.append(Recording(path, f"ktuberling-{language_id(lang)}", "words", path.stem))
    return found


# Signalling tones and silence files shipped among the prompts: not speech.
ASTERISK_NOT_SPEECH = re.compile(r"beep|tone|silence", re.IGNORECASE)


def find_asterisk(root: Path) -> list[Recording]:
    """Prompts of an unpacked asterisk-core-sounds-*-g722: ``sounds/<loc>_<sex>_<Name>/...``.

    The voice folder (``en_US_f_Allison``) names the speaker; one speaker recorded several
    languages (Allison: en and es), so the language goes into the chapter, not the speaker.
    """
    found = []
    for voice in sorted(root.glob("usr/share/asterisk/sounds/*_*_*")):
        lang, _, name = voice.name.split("_", 2)
        name = name.split("_")[-1]
        for path in sorted(voice.rglob("*.g722")):
            relative = path.relative_to(voice)
            if ASTERISK_NOT_SPEECH.search(str(relative)):
                continue
            folder = relative.parent.name or "prompts"
            found.append(Recording(path, f"asterisk-{name.lower()}", f"{lang}-{folder}", path.stem))
    return found


# ``<stamp>_desc_<lang>.ogg`` (one file is ``..._desc_da.ogg.ogg``, a few are ``.wav``);
# ``<stamp>_desc.ogg`` has no language, so no known reader, and ``<stamp>.ogg`` is a sound effect.
TUXPAINT_DESCRIPTION = re.compile(
    r"^(?P<stamp>.+)_desc_(?P<lang>[a-z]{2,3}(?:_[A-Z]{2})?)(?:\.ogg)?\.(?:ogg|wav)$"
)


def find_tuxpaint(root: Path) -> list[Recording]:
    """Stamp descriptions of an unpacked tuxpaint-stamps-default:
    ``.../tuxpaint/stamps/<category>/.../<stamp>_desc_<lang>.ogg``, one speaker per language.
    """
    stamps = root / "usr/share/tuxpaint/stamps"
    found = []
    for path in sorted(stamps.rglob("*_desc_*")):
        match = TUXPAINT_DESCRIPTION.match(path.name)
        if match is None or not path.is_file():
            continue
        chapter = "-".join(path.parent.relative_to(stamps).parts) or "stamps"
        speaker = f"tuxpaint-{language_id(match['lang'])}"
        found.append(Recording(path, speaker, chapter, match["stamp"]))
    return found


def find_festvox_ru(root: Path) -> list[Recording]:
    """The read sentences of an unpacked festvox-ru: ``.../msu_ru_nsh_clunits/wav/ru_*.wav``."""
    voice = root / "usr/share/festival/voices/russian/msu_ru_nsh_clunits"
    return [
        Recording(path, "festvox-ru-nsh", "sentences", path.stem)
        for path in sorted(voice.glob("wav/ru_*.wav"))
    ]


FINDERS: dict[str, Callable[[Path], list[Recording]]] = {
    "fillets": find_fillets,
    "klettres": find_klettres,
    "ktuberling": find_ktuberling,
    "asterisk": find_asterisk,
    "tuxpaint": find_tuxpaint,
    "festvox-ru": find_festvox_ru,
}


# --- synthetic voices --------------------------------------------------------------------

FLITE_VOICES: tuple[str, ...] = ("kal16", "awb", "rms", "slt")

_SUBJECTS = (
    "the old farmer",
    "my sister",
    "a tired driver",
    "the young teacher",
    "our neighbour",
    "the captain",
    "a quiet student",
    "the baker",
    "his uncle",
    "the small child",
    "a famous singer",
    "the night nurse",
    "every visitor",
    "the new manager",
)
_VERBS = (
    "carried",
    "painted",
    "found",
    "sold",
    "opened",
    "repaired",
    "described",
    "forgot",
    "borrowed",
    "cleaned",
    "ordered",
    "measured",
    "delivered",
    "hid",
)
_OBJECTS = (
    "a heavy basket",
    "the wooden door",
    "seven green apples",
    "an old map",
    "the broken radio",
    "a letter from Paris",
    "the silver key",
    "two warm blankets",
    "a bottle of milk",
    "the yellow bicycle",
    "a box of candles",
    "the kitchen table",
    "her brother's coat",
)
_PLACES = (
    "near the river",
    "before the storm",
    "at the market",
    "after lunch",
    "in the garden",
    "behind the station",
    "on Monday morning",
    "during the concert",
    "under the bridge",
    "at the end of the street",
    "late last night",
    "in the morning light",
)


def tts_sentences(count: int, seed: int) -> list[str]:
    """``count`` varied English sentences, the same for the same seed."""
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(count):
        words = [str(rng.choice(part)) for part in (_SUBJECTS, _VERBS, _OBJECTS, _PLACES)]
        if rng.random() < 0.4:
            words += ["and then", str(rng.choice(_VERBS)), str(rng.choice(_OBJECTS))]
        sentence = " ".join(words)
        sentences.append(sentence[0].upper() + sentence[1:] + ("?" if rng.random() < 0.15 else "."))
    return sentences


def flite_command(roots: list[Path]) -> tuple[list[str], dict[str, str]]:
    """The flite executable unpacked under one of ``roots`` (flite and libflite1 packages)
    and the environment that finds its libraries without installing them."""
    exes = [root / "usr" / "bin" / "flite" for root in roots if (root / "usr/bin/flite").is_file()]
    if not exes:
        raise CorpusError(f"{roots[0]}: no usr/bin/flite in the unpacked flite package")
    libs = [str(p) for root in roots for p in sorted(root.glob("usr/lib/*")) if p.is_dir()]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(
        os.pathsep
    )
    return [str(exes[0])], env


def synthesize_flite(
    roots: list[Path],
    workdir: Path,
    voices: Iterable[str] = FLITE_VOICES,
    count: int = 120,
    seed: int = 0,
) -> list[Recording]:
    """Speak ``count`` sentences with each flite voice into ``workdir``: one speaker per voice."""
    command, env = flite_command(roots)
    found = []
    for index, voice in enumerate(voices):
        folder = workdir / f"flite-{voice}"
        folder.mkdir(parents=True, exist_ok=True)
        for number, text in enumerate(tts_sentences(count, seed=seed * 1000 + index)):
            path = folder / f"{number:04d}.wav"
            result = subprocess.run(
                [*command, "-voice", voice, "-t", text, "-o", str(path)],
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0 or not path.is_file():
                why = (result.stderr.strip().splitlines() or ["no output file"])[-1]
                raise CorpusError(f"flite voice {voice}: synthesis failed ({why[:160]})")
            found.append(Recording(path, f"flite-{voice}", "sentences", path.stem))
    return found


# --- fetching packages --------------------------------------------------------------------


def run_tool(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an external tool; a missing executable becomes a one-line CorpusError."""
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise CorpusError(
            f"{command[0]}: not found; the corpus builder needs a Debian-based system "
            "(apt-get and dpkg)"
        ) from None


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output, for one-line errors."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"


def download_package(package: str, debs: Path) -> Path:
    """``apt-get download`` one package into ``debs`` (once; cached), retrying once after
    ``apt-get update`` (stale or missing package lists). Returns the ``.deb`` path."""
    debs.mkdir(parents=True, exist_ok=True)
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    result = run_tool(["apt-get", "download", package], cwd=debs)
    if result.returncode != 0:
        update = run_tool(["apt-get", "update"])
        if update.returncode == 0:
            result = run_tool(["apt-get", "download", package], cwd=debs)
        if result.returncode != 0:
            raise CorpusError(
                f"{package}: apt-get download failed ({last_line(result.stderr)}); run "
                "`apt-get update` as root, check the network, or leave this source out "
                "with --sources"
            )
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if not cached:
        raise CorpusError(f"{package}: apt-get download reported success but wrote no .deb")
    return cached[-1]


def extract_package(deb: Path, dest: Path) -> Path:
    """``dpkg -x`` a package into ``dest`` (once; an unfinished extraction is redone)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_directory(dest)
    try:
        result = run_tool(["dpkg", "-x", str(deb), str(tmp)])
        if result.returncode != 0:
            raise CorpusError(f"{deb}: dpkg -x failed ({last_line(result.stderr)})")
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def apt_fetcher(cache: Path) -> Callable[[str], Path]:
    """A function package-name -> unpacked folder, downloading into ``cache`` as needed."""

    def fetch(package: str) -> Path:
        return extract_package(
            download_package(package, cache / "debs"), cache / "unpacked" / package
        )

    return fetch


def find_ffmpeg() -> str | None:
    """An ffmpeg executable: on PATH, else the one the imageio-ffmpeg wheel ships, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


# --- conversion ---------------------------------------------------------------------------


def decode_g722(path: Path, ffmpeg: str) -> tuple[np.ndarray, int]:
    """A raw G.722 file decoded by ffmpeg: ((T,) float32, 16000)."""
    result = subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "g722",
            "-i",
            str(path),
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-",
        ],
        capture_output=True,
    )
    if result.returncode != 0:
        raise CorpusError(
            f"{path}: ffmpeg could not decode it ({last_line(result.stderr.decode())})"
        )
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32), SAMPLE_RATE


def trim_silence(
    signal: np.ndarray,
    sample_rate: int,
    threshold_db: float = 40.0,
    floor_db: float = -60.0,
    pad: float = 0.1,
) -> np.ndarray:
    """Cut leading and trailing silence: (T,) -> (T',), T' <= T (empty if all silent).

    A 20 ms frame (10 ms hop) is speech if its RMS is within ``threshold_db`` of the loudest
    frame and above ``floor_db`` dBFS; ``pad`` seconds are kept around the speech.
    """
    frame, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    if signal.size < frame:
        return signal[:0]
    starts = np.arange(0, signal.size - frame + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(signal, frame)[starts]
    level = 10 * np.log10(np.mean(windows.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero((level > level.max() - threshold_db) & (level > floor_db))
    if active.size == 0:
        return signal[:0]
    keep = int(pad * sample_rate)
    begin = max(0, int(starts[active[0]]) - keep)
    end = min(signal.size, int(starts[active[-1]]) + frame + keep)
    return signal[begin:end]


def load_recording(path: Path, ffmpeg: str | None) -> tuple[np.ndarray, int]:
    """A recording as ((T,) float32 mono, native sample rate); G.722 goes through ffmpeg."""
    if path.suffix.lower() == ".g722":
        if ffmpeg is None:
            raise CorpusError(f"{path}: decoding G.722 needs ffmpeg")
        return decode_g722(path, ffmpeg)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise CorpusError(f"{path}: cannot read audio ({last_line(str(exc))})") from None
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(T,) at ``rate_in`` -> (T * rate_out / rate_in,) float32 (soxr, high quality)."""
    if rate_in == rate_out:
        return signal
    import soxr

    return np.asarray(soxr.resample(signal, rate_in, rate_out), dtype=np.float32)


def convert(signal: np.ndarray, rate: int, min_seconds: float) -> np.ndarray | None:
    """Native-rate mono (T,) -> 16 kHz, trimmed, peak <= 0.99 (T',); None if too short."""
    audio = trim_silence(resample(signal, rate, SAMPLE_RATE), SAMPLE_RATE)
    if audio.size < min_seconds * SAMPLE_RATE:
        return None
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    return np.asarray(audio, dtype=np.float32)


def safe_name(name: str) -> str:
    """A file/folder-name-safe ASCII form of ``name``; non-ASCII names keep a short hash."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")
    if clean != name:
        clean = f"{clean}-{hashlib.sha1(name.encode()).hexdigest()[:6]}".strip("-")
    return clean


@dataclass
class SpeakerSummary:
    """One row of ``speakers.csv``."""

    speaker: str
    source: str
    licence: str
    synthetic: bool
    packages: set[str] = field(default_factory=set)
    seconds: float = 0.0
    files: int = 0


SPEAKERS_CSV_FIELDS = ("speaker", "source", "package", "licence", "synthetic", "minutes", "files")


def write_speakers_csv(path: Path, summaries: Iterable[SpeakerSummary]) -> None:
    """``speakers.csv``: one row per speaker, minutes of trimmed audio, file count."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPEAKERS_CSV_FIELDS)
        for s in summaries:
            writer.writerow(
                [
                    s.speaker,
                    s.source,
                    " ".join(sorted(s.packages)),
                    s.licence,
                    "yes" if s.synthetic else "no",
                    f"{s.seconds / 60:.2f}",
                    s.files,
                ]
            )


def read_speakers_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a corpus's ``speakers.csv`` as dicts."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def collect_recordings(
    sources: Iterable[str],
    fetch: Callable[[str], Path],
    workdir: Path,
    ffmpeg: str | None,
    log: Callable[[str], None],
    tts_count: int = 120,
) -> list[tuple[Source, str, Recording]]:
    """Fetch each source's packages; (source, package, recording) for every recording found
    (TTS is synthesised into ``workdir``)."""
    found: list[tuple[Source, str, Recording]] = []
    for name in sources:
        source = SOURCES[name]
        if name == "asterisk" and ffmpeg is None:
            log(
                "skipping asterisk: decoding G.722 needs ffmpeg (install it, or "
                "`pip install imageio-ffmpeg`)"
            )
            continue
        roots = {package: fetch(package) for package in source.packages}
        if name == "flite":
            recordings = [
                (source.packages[0], r)
                for r in synthesize_flite(list(roots.values()), workdir / "flite", count=tts_count)
            ]
        else:
            recordings = [(pkg, r) for pkg, root in roots.items() for r in FINDERS[name](root)]
        log(f"{name}: {len(recordings)} recordings from {', '.join(source.packages)}")
        found.extend((source, pkg, r) for pkg, r in recordings)
    return found


def build_corpus(
    out: Path,
    cache: Path,
    sources: Iterable[str] = DEFAULT_SOURCES,
    *,
    fetch: Callable[[str], Path] | None = None,
    ffmpeg: str | None = None,
    min_clip_seconds: float = 0.5,
    min_speaker_seconds: float = 10.0,
    tts_count: int = 120,
    log: Callable[[str], None] = print,
) -> list[SpeakerSummary]:
    """Build ``out/<speaker>/<chapter>/<utt>.flac`` + ``out/speakers.csv``; return the rows.

    ``fetch`` maps a Debian package name to its unpacked folder (default: ``apt-get
    download`` + ``dpkg -x`` into ``cache``). Clips recorded below 16 kHz, silent or shorter
    than ``min_clip_seconds`` after trimming, and exact duplicates are dropped, then speakers
    with less than ``min_speaker_seconds`` in all. ``out`` must not exist yet (or be empty).
    """
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise CorpusError(
            f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(
            f"{out}: already exists and is not empty; remove it or pass another --out"
        )
    fetch = fetch or apt_fetcher(cache)
    if ffmpeg is None and "asterisk" in sources:
        ffmpeg = find_ffmpeg()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = staging_directory(out)
    try:
        workdir = partial / ".work"
        recordings = collect_recordings(sources, fetch, workdir, ffmpeg, log, tts_count)
        summaries = write_recordings(recordings, partial, ffmpeg, min_clip_seconds, log)
        kept = drop_small_speakers(summaries, partial, min_speaker_seconds, log)
        if not kept:
            raise CorpusError("no speaker has enough audio; nothing to write")
        shutil.rmtree(workdir, ignore_errors=True)
        write_speakers_csv(partial / "speakers.csv", kept)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return kept


def write_recordings(
    recordings: list[tuple[Source, str, Recording]],
    out: Path,
    ffmpeg: str | None,
    min_clip_seconds: float,
    log: Callable[[str], None],
) -> dict[str, SpeakerSummary]:
    """Convert and write every recording under ``out``; per-speaker totals."""
    summaries: dict[str, SpeakerSummary] = {}
    seen: set[str] = set()
    used: set[Path] = set()
    dropped = {"narrowband": 0, "short": 0, "duplicate": 0}
    for source, package, rec in sorted(
        recordings, key=lambda item: (item[2].speaker, item[2].chapter, item[2].name)
    ):
        signal, rate = load_recording(rec.path, ffmpeg)
        if rate < MIN_NATIVE_RATE:
            dropped["narrowband"] += 1
            continue
        digest = hashlib.sha1(signal.tobytes()).hexdigest()
        if digest in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(digest)
        audio = convert(signal, rate, min_clip_seconds)
        if audio is None:
            dropped["short"] += 1
            continue
        folder = out / safe_name(rec.speaker) / safe_name(rec.chapter)
        target = folder / f"{safe_name(rec.name)}.flac"
        suffix = 2
        while target in used:
            target = folder / f"{safe_name(rec.name)}-{suffix}.flac"
            suffix += 1
        used.add(target)
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), audio, SAMPLE_RATE, subtype="PCM_16")
        summary = summaries.setdefault(
            rec.speaker, SpeakerSummary(rec.speaker, source.name, source.licence, source.synthetic)
        )
        summary.packages.add(package)
        summary.seconds += audio.size / SAMPLE_RATE
        summary.files += 1
    log(
        f"converted {sum(s.files for s in summaries.values())} clips; dropped "
        + ", ".join(f"{n} {why}" for why, n in dropped.items())
    )
    return summaries


def drop_small_speakers(
    summaries: dict[str, SpeakerSummary],
    out: Path,
    min_seconds: float,
    log: Callable[[str], None],
) -> list[SpeakerSummary]:
    """Remove speakers with under ``min_seconds`` of audio (folders too); the rest, sorted."""
    kept = []
    for speaker, summary in sorted(summaries.items()):
        if summary.seconds < min_seconds:
            shutil.rmtree(out / safe_name(speaker), ignore_errors=True)
            continue
        kept.append(summary)
    if len(kept) < len(summaries):
        log(f"dropped {len(summaries) - len(kept)} speakers with under {min_seconds:g} s of audio")
    return kept

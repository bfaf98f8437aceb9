"""Language families of the languages in the task data, for in-family / out-of-family averages.

The seed paper splits its gains into languages in English's family ("enf") and outside it
("noenf"). Families here are top-level genealogical families (Glottolog); Nigerian Pidgin
is an English-lexified creole and is kept apart as its own group rather than counted as
Indo-European, since its grammar is not inherited from English.
"""

from __future__ import annotations

_FAMILIES: dict[str, list[str]] = {
    "Indo-European": (
        "af bg bn cs da de el en es fa fr gu hi hr it lt lv mr nl no pa pl pt ro ru sk sl sq "
        "sr sv uk ur"
    ).split(),
    "Dravidian": ["kn", "ml", "ta", "te"],
    "Afro-Asiatic": ["am", "ar", "ha", "hau", "he", "mt", "so"],
    "Turkic": ["az", "kk", "ky", "tr", "tt", "ug", "uz"],
    "Uralic": ["et", "fi", "hu"],
    "Sino-Tibetan": ["my", "zh"],
    "Japonic": ["ja"],
    "Koreanic": ["ko"],
    "Austronesian": ["id", "jv", "ms", "tl"],
    "Austroasiatic": ["vi"],
    "Kra-Dai": ["th"],
    "Atlantic-Congo": ["ibo", "ig", "kin", "rw", "sw", "swa", "wo", "yo", "yor"],
    "Kartvelian": ["ka"],
    "Basque": ["eu"],
    "Quechuan": ["qu"],
    "English-lexified creole": ["pcm"],
}
FAMILY: dict[str, str] = {lang: fam for fam, langs in _FAMILIES.items() for lang in langs}


def family(lang: str) -> str | None:
    """The family of an ISO code, or None when the table does not know it."""
    return FAMILY.get(lang)


def same_family(lang: str, source: str) -> bool | None:
    """True inside the source's family, False outside, None when either is unknown."""
    a, b = family(lang), family(source)
    return None if a is None or b is None else a == b

"""Reading line-aligned parallel text (XTREME's Tatoeba sets) into TextPair, and Tatoeba codes.

Tatoeba files are `tatoeba.xxx-eng.xxx` and `tatoeba.xxx-eng.eng`, line i of one translating
line i of the other, with ISO 639-3 codes (`cmn`, `pes`, `swh`, `zsm` …) where the rest of
the data uses ISO 639-1; `tatoeba_code` maps between them so users can say `zh` or `cmn`.
"""

from __future__ import annotations

import re
from pathlib import Path

from probe.data.sources.records import TextPair
from probe.data.sources.text import read_lines
from probe.errors import DataError, unknown_name

# The 112 languages of XTREME's Tatoeba test sets (LASER v1), all paired with English.
TATOEBA_LANGUAGES: tuple[str, ...] = tuple(
    """
    afr amh ang ara arq arz ast awa aze bel ben ber bos bre bul cat cbk ceb ces cha cmn cor
    csb cym dan deu dsb dtp ell epo est eus fao fin fra fry gla gle glg gsw heb hin hrv hsb
    hun hye ido ile ina ind isl ita jav jpn kab kat kaz khm kor kur kzj lat lfn lit lvs mal
    mar max mhr mkd mon nds nld nno nob nov oci orv pam pes pms pol por ron rus slk slv spa
    sqi srp swe swg swh tam tat tel tgl tha tuk tur tzl uig ukr urd uzb vie war wuu xho yid
    yue zsm
    """.split()
)

# ISO 639-1 -> Tatoeba's ISO 639-3 code, for every 639-1 language used elsewhere in the data
# (UD, XTREME UD-POS/PAN-X/XNLI/PAWS-X) that has a Tatoeba set. Macrolanguages map to the
# variety Tatoeba uses: zh -> cmn (Mandarin), fa -> pes, sw -> swh, ms -> zsm, lv -> lvs.
ISO639_1_TO_TATOEBA: dict[str, str] = {
    "af": "afr", "am": "amh", "ar": "ara", "az": "aze", "be": "bel", "bg": "bul", "bn": "ben",
    "bs": "bos", "ca": "cat", "cs": "ces", "cy": "cym", "da": "dan", "de": "deu", "el": "ell",
    "en": "eng", "eo": "epo", "es": "spa", "et": "est", "eu": "eus", "fa": "pes", "fi": "fin",
    "fr": "fra", "fy": "fry", "ga": "gle", "gd": "gla", "gl": "glg", "he": "heb", "hi": "hin",
    "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind", "is": "isl", "it": "ita", "ja": "jpn",
    "jv": "jav", "ka": "kat", "kk": "kaz", "km": "khm", "ko": "kor", "ku": "kur", "la": "lat",
    "lt": "lit", "lv": "lvs", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "zsm",
    "nb": "nob", "nl": "nld", "nn": "nno", "oc": "oci", "pl": "pol", "pt": "por", "ro": "ron",
    "ru": "rus", "sk": "slk", "sl": "slv", "sq": "sqi", "sr": "srp", "sv": "swe", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tk": "tuk", "tl": "tgl", "tr": "tur", "tt": "tat",
    "ug": "uig", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "xh": "xho", "yi": "yid",
    "zh": "cmn",
}  # fmt: skip

_TATOEBA_FILE = re.compile(r"tatoeba\.([a-z]{3})-eng\.eng")


def read_parallel(path_x: Path, path_eng: Path) -> list[TextPair]:
    """Pair line i of `path_x` (text_a) with line i of `path_eng` (text_b); label None.

    Differing line counts mean the alignment is broken, so they are a DataError naming both
    files rather than a silent truncation; it points at the longer file's first line without
    a translation, a line that exists. `pair_id` is `<file name of path_x>:<line>`.
    """
    path_x, path_eng = Path(path_x), Path(path_eng)
    lines_x, lines_eng = read_lines(path_x), read_lines(path_eng)
    if len(lines_x) != len(lines_eng):
        (longer, n_long), (shorter, n_short) = sorted(
            [(path_x, len(lines_x)), (path_eng, len(lines_eng))], key=lambda f: -f[1]
        )
        raise DataError(
            longer,
            n_short + 1,
            f"has {n_long} lines but its translation {shorter} has {n_short}; line i of one "
            "file must translate line i of the other",
        )
    pairs: list[TextPair] = []
    for lineno, (x, eng) in enumerate(zip(lines_x, lines_eng, strict=True), 1):
        for path, text in ((path_x, x), (path_eng, eng)):
            if not text.strip():
                raise DataError(path, lineno, "empty line; expected one sentence per line")
        pairs.append(TextPair(f"{path_x.name}:{lineno}", x, eng))
    if not pairs:
        raise DataError(path_x, None, "no lines found; expected one sentence per line")
    return pairs


def tatoeba_code(lang: str) -> str:
    """Tatoeba's 3-letter code for a 2- or 3-letter code (`zh` -> `cmn`, `deu` -> `deu`)."""
    if lang in TATOEBA_LANGUAGES or lang == "eng":
        return lang
    if lang in ISO639_1_TO_TATOEBA:
        return ISO639_1_TO_TATOEBA[lang]
    raise unknown_name("Tatoeba language", lang, [*TATOEBA_LANGUAGES, *sorted(ISO639_1_TO_TATOEBA)])


def tatoeba_languages(data_dir: Path) -> list[str]:
    """The 3-letter codes with a Tatoeba pair under `data_dir` (searched recursively)."""
    return sorted({m.group(1) for p in Path(data_dir).rglob("tatoeba.*-eng.eng")
                   if (m := _TATOEBA_FILE.fullmatch(p.name))})  # fmt: skip


def tatoeba_paths(data_dir: Path, lang: str) -> tuple[Path, Path]:
    """The (`xxx`, `eng`) files of one language under `data_dir` or `data_dir/tatoeba`."""
    code = tatoeba_code(lang)
    name = f"tatoeba.{code}-eng"
    for folder in (Path(data_dir), Path(data_dir) / "tatoeba", Path(data_dir) / "tatoeba" / code):
        if (folder / f"{name}.{code}").is_file():
            return folder / f"{name}.{code}", folder / f"{name}.eng"
    raise DataError(
        Path(data_dir) / "tatoeba" / f"{name}.{code}",
        None,
        f"no Tatoeba file for {lang!r} ({code}); is --data-dir the data root?",
    )

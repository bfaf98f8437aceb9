"""Every Universal Dependencies treebank under `<data>/ud`, and which of them a task reads.

UD ships one folder per treebank (`UD_Czech-PDT/cs_pdt-ud-train.conllu`); the language is
the file prefix before `_` (`cs`), the treebank's name the prefix before `-ud-` (`cs_pdt`).
The index is built by one scan of the folder (kept per data directory while its listing is
unchanged), so a new treebank is usable by copying it in: no table in the code names them.

A language maps to its treebanks; a `TreebankRule` says which of them a task admits
(`pos`: every non-PUD treebank; `pos-gum`: those named `*_gum`, ...) and which it reads
by default:

    the admitted treebank with a train split (the largest train file if several),
    else the largest admitted treebank (all its files together).

`--treebank cs_pdt` picks a language's treebank instead; `en_ewt+en_gum` concatenates
several, split by split (XTREME's way of pooling a language's treebanks).

A split may ship in parts (`cs_pdt-ud-train-c.conllu`, `cs_pdt-ud-train-ca.conllu`, ...;
`de_hdt-ud-train-a-1.conllu`): the parts are one split, read in sorted file-name order.
Some treebanks ship without their text (every FORM `_`: en_esl, ja_bccwj, fr_ftb, ...): the
default never picks one, and naming one is refused, since there are no words to encode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from probe.errors import ProbeError

_FILE = re.compile(
    r"(?P<name>(?P<lang>[a-z]{2,3})_[a-z0-9]+)-ud-(?P<split>train|dev|test)(-[a-z0-9-]+)?\.conllu"
)
_PEEK_BYTES = 1 << 16  # enough for the first sentences: a formless treebank has none anywhere


@dataclass(frozen=True)
class Treebank:
    """One treebank folder: its name (`en_ewt`), language (`en`), the file(s) of each split
    (parts in sorted order) and whether it has word forms (False: every FORM is `_`)."""

    name: str
    lang: str
    files: Mapping[str, tuple[Path, ...]]
    forms: bool = True

    @property
    def corpus(self) -> str:
        """The part after the language (`ewt`, `gum`, `pud`)."""
        return self.name.partition("_")[2]

    def size(self, split: str | None = None) -> int:
        """Bytes of one split's files (0 if absent), or of all its files."""
        splits = [split] if split is not None else list(self.files)
        return sum(p.stat().st_size for s in splits for p in self.files.get(s, ()))


@dataclass(frozen=True)
class UDIndex:
    """Every treebank found under one `ud/` folder, by name and by language."""

    root: Path
    treebanks: Mapping[str, Treebank]

    def of_language(self, lang: str) -> list[Treebank]:
        return [tb for tb in self.treebanks.values() if tb.lang == lang]

    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({tb.lang for tb in self.treebanks.values()}))


def ud_index(data_dir: Path) -> UDIndex:
    """The index of `<data_dir>/ud`, rebuilt only when a treebank folder's listing changes."""
    root = data_dir / "ud"
    if not root.is_dir():
        return UDIndex(root, {})
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(root.iterdir()) if p.is_dir())
    return _scan(root.resolve(), stamp)


@lru_cache(maxsize=16)
def _scan(root: Path, stamp: tuple[tuple[str, int], ...]) -> UDIndex:
    found: dict[str, dict[str, list[Path]]] = {}
    for folder, _ in stamp:
        for path in sorted((root / folder).iterdir()):
            m = _FILE.fullmatch(path.name)
            if m is None or not path.is_file():
                continue
            parts = found.setdefault(m.group("name"), {}).setdefault(m.group("split"), [])
            if parts and parts[0].parent != path.parent:
                raise ProbeError(
                    f"treebank {m.group('name')!r} is in two folders: {parts[0].parent} "
                    f"and {path.parent}"
                )
            parts.append(path)
    out = {}
    for name, splits in found.items():
        files = {split: tuple(sorted(parts)) for split, parts in splits.items()}
        first = min(p for parts in files.values() for p in parts)
        out[name] = Treebank(name, name.partition("_")[0], files, has_forms(first))
    return UDIndex(root, out)


def has_forms(path: Path) -> bool:
    """Whether a CoNLL-U file's first sentences have any word form other than `_` (UD
    treebanks distributed without their text have none)."""
    with path.open("rb") as f:
        head = f.read(_PEEK_BYTES)
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == _PEEK_BYTES:
        lines = lines[:-1]  # cut mid-line
    words = [
        cols[1] for cols in (line.split("\t") for line in lines)
        if len(cols) == 10 and cols[0].isdigit()
    ]  # fmt: skip
    return not words or any(w != "_" for w in words)


@dataclass(frozen=True)
class TreebankRule:
    """Which treebanks a UD task admits: those whose corpus is `corpus` (`gum` for
    `pos-gum`), or with `corpus` None every treebank except the `exclude`d corpora."""

    corpus: str | None = None
    exclude: tuple[str, ...] = ("pud",)
    # (split, corpus): that split is read from the language's *_<corpus> treebank instead
    # (`pos-pud-transfer`: test from PUD, train/dev from the default treebank); --treebank
    # picks apply to the other splits only.
    split_corpus: tuple[tuple[str, str], ...] = ()

    def for_split(
        self, index: UDIndex, lang: str, split: str, picks: Mapping[str, tuple[str, ...]]
    ) -> tuple[Treebank, ...]:
        """The treebanks one split of one language reads: `split_corpus`'s, else `select`."""
        corpus = dict(self.split_corpus).get(split)
        if corpus is None:
            return self.select(index, lang, picks)
        found = tuple(tb for tb in index.of_language(lang)
                      if tb.corpus == corpus and tb.forms and split in tb.files)  # fmt: skip
        if not found:
            raise ProbeError(
                f"no *_{corpus} treebank of language {lang!r} with a {split} split under "
                f"{index.root}; found: {_names(index.of_language(lang))}"
            )
        return found

    def admits(self, tb: Treebank) -> bool:
        if self.corpus is not None:
            return tb.corpus == self.corpus
        return tb.corpus not in self.exclude

    def describe(self) -> str:
        if self.corpus is not None:
            return f"treebanks named *_{self.corpus}"
        return "every treebank except " + ", ".join(f"*_{c}" for c in self.exclude)

    def default(self, index: UDIndex, lang: str) -> tuple[Treebank, ...]:
        """The module docstring's rule; () when the language has no admitted treebank."""
        admitted = [tb for tb in index.of_language(lang) if self.admits(tb) and tb.forms]
        with_train = [tb for tb in admitted if "train" in tb.files]
        if with_train:
            return (max(with_train, key=lambda tb: (tb.size("train"), tb.name)),)
        if admitted:
            return (max(admitted, key=lambda tb: (tb.size(), tb.name)),)
        return ()

    def languages(self, index: UDIndex) -> dict[str, frozenset[str]]:
        """{language: splits of its default treebank} for every language with one (with
        `split_corpus`: those splits where the language has that corpus instead)."""
        swapped = dict(self.split_corpus)
        out = {}
        for lang in index.languages():
            chosen = self.default(index, lang)
            splits = {s for tb in chosen for s in tb.files if s not in swapped}
            splits |= {s for s, corpus in swapped.items() for tb in index.of_language(lang)
                       if tb.corpus == corpus and tb.forms and s in tb.files}  # fmt: skip
            if splits:
                out[lang] = frozenset(splits)
        return out

    def select(
        self, index: UDIndex, lang: str, picks: Mapping[str, tuple[str, ...]]
    ) -> tuple[Treebank, ...]:
        """The treebanks one language reads: the `--treebank` pick, else the default."""
        if lang not in picks:
            chosen = self.default(index, lang)
            bare = [tb.name for tb in index.of_language(lang) if self.admits(tb)]
            if not chosen and bare:
                raise ProbeError(no_forms(", ".join(sorted(bare))))
            if not chosen:
                raise ProbeError(
                    f"no treebank of language {lang!r} under {index.root} is one of "
                    f"{self.describe()}; found: {_names(index.of_language(lang))}"
                )
            return chosen
        out = []
        for name in picks[lang]:
            tb = index.treebanks.get(name)
            if tb is None:
                raise ProbeError(
                    f"--treebank {name}: no such treebank under {index.root}; {lang!r} has: "
                    f"{_names(index.of_language(lang))}"
                )
            if not self.admits(tb):
                raise ProbeError(f"--treebank {name}: this task reads {self.describe()}")
            if not tb.forms:
                raise ProbeError(no_forms(name))
            out.append(tb)
        return tuple(out)


def no_forms(name: str) -> str:
    """The refusal of a treebank without word forms (local files or the hub)."""
    return (
        f"treebank {name} has no word forms (every FORM is '_': UD distributes its text "
        "separately), so there is nothing to encode; pick another with --treebank"
    )


def _names(treebanks: Iterable[Treebank]) -> str:
    return ", ".join(sorted(tb.name for tb in treebanks)) or "none"


def parse_picks(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`("en_ewt+en_gum", "cs_pdt")` as {language: treebank names}; every name of one item
    must be of one language, and a language may be picked once."""
    picks: dict[str, tuple[str, ...]] = {}
    for item in items:
        names = tuple(dict.fromkeys(n.strip() for n in item.split("+") if n.strip()))
        if not names:
            continue
        for name in names:
            if not re.fullmatch(r"[a-z]{2,3}_[a-z0-9]+", name):
                raise ProbeError(
                    f"--treebank {name!r}: expected a UD treebank name like cs_pdt "
                    "(language, underscore, corpus)"
                )
        langs = {n.partition("_")[0] for n in names}
        if len(langs) > 1:
            raise ProbeError(
                f"--treebank {item}: the treebanks joined by '+' must be of one language "
                f"(found {', '.join(sorted(langs))}); separate languages with ','"
            )
        lang = langs.pop()
        if lang in picks:
            raise ProbeError(f"--treebank picks language {lang!r} twice; join with '+' instead")
        picks[lang] = names
    return picks

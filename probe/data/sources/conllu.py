"""Reading Universal Dependencies CoNLL-U files into TaggedSentence (word forms and UPOS).

A small hand-written parser rather than the `conllu` package: it needs only columns 1, 2
and 4, reports every malformed line by number (the package does not), and parses EWT's
12.5k training sentences in a fraction of a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from probe.data.sources.records import TaggedSentence
from probe.data.sources.text import excerpt, read_lines
from probe.errors import DataError

N_COLUMNS = 10  # ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC
# ASCII digits only: `str.isdigit` accepts "²" and "١", which `int` then refuses or misreads.
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")

# Genre is not annotated in these treebanks' comments, but their ids encode it.
_EWT_GENRE = re.compile(r"(answers|email|newsgroup|reviews|weblog)-")
_GUM_GENRE = re.compile(r"GUM_([a-z]+)_")
_PUD_GENRE = re.compile(r"([nw])\d{8}$")


def read_conllu(path: Path, allowed_tags: Iterable[str] | None = None) -> list[TaggedSentence]:
    """Read the syntactic words and their UPOS tags of every sentence in a CoNLL-U file.

    Multiword-token lines (`1-2`) and empty nodes (`1.1`) are skipped: UPOS belongs to the
    syntactic words. `sent_id` comes from `# sent_id =`, else `<file name>:<first line>`.
    With `allowed_tags`, a UPOS outside the set is a DataError naming its line.
    """
    return [sent for sent, _ in read_conllu_with_meta(path, allowed_tags)]


def read_conllu_with_meta(
    path: Path, allowed_tags: Iterable[str] | None = None
) -> list[tuple[TaggedSentence, dict[str, str]]]:
    """Like `read_conllu`, each sentence paired with its `# key = value` comments.

    `newdoc id` is carried forward to every sentence of the document (the file states it
    only on the first), so grouping by document or genre needs no second pass.
    """
    path = Path(path)
    allowed = frozenset(allowed_tags) if allowed_tags is not None else None
    out: list[tuple[TaggedSentence, dict[str, str]]] = []
    words: list[str] = []
    tags: list[str] = []
    meta: dict[str, str] = {}
    newdoc: str | None = None
    start = 0  # first line of the sentence being read; 0 between sentences

    def flush(lineno: int) -> None:
        if not words:
            if meta:
                raise DataError(path, lineno, "expected word lines after the comments above")
            return
        if newdoc is not None:
            meta.setdefault("newdoc id", newdoc)
        sent_id = meta.get("sent_id") or f"{path.name}:{start}"
        out.append((TaggedSentence(sent_id, tuple(words), tuple(tags)), dict(meta)))

    lines = read_lines(path)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            flush(lineno)
            words.clear()
            tags.clear()
            meta.clear()
            start = 0
            continue
        start = start or lineno
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip(), value.strip()
            if key == "newdoc id":
                newdoc = value
            elif key == "newdoc":  # `# newdoc` without an id starts an anonymous document
                newdoc = None
            if key:
                meta[key] = value
            continue
        cols = line.split("\t")
        if len(cols) != N_COLUMNS:
            raise DataError(
                path,
                lineno,
                f"expected {N_COLUMNS} TAB-separated columns (ID FORM LEMMA UPOS ...), "
                f"found {len(cols)}",
            )
        word_id, form, upos = cols[0], cols[1], cols[3]
        if not _WORD_ID.fullmatch(word_id):
            if _RANGE_ID.fullmatch(word_id) or _EMPTY_ID.fullmatch(word_id):
                continue  # multiword token or empty node: UPOS belongs to the words
            raise DataError(
                path,
                lineno,
                f"word ID {excerpt(word_id)} is not an integer >= 1, a range like 1-2 or a "
                "decimal like 1.1",
            )
        # Compared as text: `int` refuses numerals over 4300 digits, and the ID is canonical.
        if word_id != str(len(words) + 1):
            raise DataError(
                path,
                lineno,
                f"word ID {excerpt(word_id)} out of sequence: expected {len(words) + 1}",
            )
        if not form.strip():  # a word the tokenizer would drop: nothing to take features of
            raise DataError(path, lineno, "empty word form in column 2")
        if not upos or upos == "_":
            raise DataError(path, lineno, f"word {excerpt(form)} has no UPOS tag in column 4")
        if allowed is not None and upos not in allowed:
            labels = ", ".join(sorted(allowed))
            raise DataError(
                path, lineno, f"UPOS {excerpt(upos)} is not in the label set ({labels})"
            )
        words.append(form)
        tags.append(upos)

    flush(len(lines))  # the last sentence may lack its trailing blank line
    if not out:
        raise DataError(path, None, "no sentences found; expected CoNLL-U word lines")
    return out


def genre_of(meta: dict[str, str]) -> str | None:
    """The genre of a sentence: `# genre = …` if given, else read off EWT, GUM or PUD ids.

    EWT (`weblog-…`, `email-…`), GUM (`GUM_academic_…`) and PUD (`n…` news, `w…` wiki)
    encode the genre in document or sentence ids; other treebanks give None.
    """
    if meta.get("genre"):
        return meta["genre"]
    for key in ("newdoc id", "sent_id"):
        ident = meta.get(key, "")
        if m := _EWT_GENRE.match(ident):
            return m.group(1)
        if m := _GUM_GENRE.match(ident):
            return m.group(1)
        if m := _PUD_GENRE.match(ident):
            return {"n": "news", "w": "wiki"}[m.group(1)]
    return None

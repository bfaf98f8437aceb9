"""Reading sentence-pair TSV files (XTREME's XNLI and PAWS-X, PAWS-X HF dumps) into TextPair.

Layouts, as found in the real files:
- XTREME `dev-xx.tsv`: `text_a<TAB>text_b<TAB>label`; XTREME `test-xx.tsv`: the same without
  the label column (labels hidden), read with label None.
- PAWS-X dumps of the HF parquet files: header `id sentence1 sentence2 label`; the id column
  becomes `pair_id` (the ids align rows across languages).
Fields are CSV-quoted where they contain a quote (`"Die ""IPA"" besteht …"`); each field is
unquoted on its own line, so a stray quote can never swallow the lines after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from probe.data.sources.records import TextPair
from probe.data.sources.text import excerpt, fix_mojibake, read_lines
from probe.errors import DataError

log = logging.getLogger(__name__)

Layout = Literal["xnli", "pawsx"]
LABELS: dict[str, tuple[str, ...]] = {
    "xnli": ("entailment", "neutral", "contradiction"),
    "pawsx": ("0", "1"),
}
HF_HEADER = ("id", "sentence1", "sentence2", "label")
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def read_pair_tsv(path: Path, layout: Layout) -> list[TextPair]:
    """Read one XNLI or PAWS-X TSV file; rows without a label column get label None.

    A file is labelled or not as a whole: a row whose column count differs from the first
    row's is a DataError, as is a label outside the layout's set or an empty text.
    """
    path = Path(path)
    if layout not in LABELS:
        raise ValueError(f"unknown pair layout {layout!r}; expected one of {sorted(LABELS)}")
    labels = LABELS[layout]
    lines = read_lines(path)
    while lines and not lines[-1].strip():  # blank lines at the end are harmless
        lines.pop()
    has_header = bool(lines) and tuple(lines[0].split("\t")) == HF_HEADER
    first = 2 if has_header else 1
    n_cols = len(HF_HEADER) if has_header else None
    pairs: list[TextPair] = []
    fixed = 0
    for lineno, line in enumerate(lines[first - 1 :], first):
        if not line.strip():
            raise DataError(path, lineno, "blank line; expected one sentence pair per line")
        fields = [_unquote(f) for f in line.split("\t")]
        if n_cols is None:
            if len(fields) not in (2, 3):
                raise DataError(
                    path,
                    lineno,
                    f"expected 3 TAB-separated columns (text, text, label) or 2 (unlabelled), "
                    f"found {len(fields)}",
                )
            n_cols = len(fields)
        elif len(fields) != n_cols:
            raise DataError(
                path,
                lineno,
                f"expected {n_cols} TAB-separated columns like the first row, found {len(fields)}",
            )
        if has_header:
            pair_id, text_a, text_b, label = fields
        else:
            pair_id, (text_a, text_b), label = f"{path.name}:{lineno}", fields[:2], None
            if n_cols == 3:
                label = fields[2]
        if not text_a.strip() or not text_b.strip():
            raise DataError(path, lineno, "empty sentence; expected two non-empty texts")
        if label is not None and label not in labels:
            raise DataError(
                path,
                lineno,
                f"label {excerpt(label)} is not a {layout} label ({', '.join(labels)})",
            )
        a, b = fix_mojibake(text_a), fix_mojibake(text_b)
        fixed += (a != text_a) + (b != text_b)
        pairs.append(TextPair(pair_id, a, b, label))
    if not pairs:
        raise DataError(path, None, "no sentence pairs found")
    if fixed:
        log.info("%s: repaired double-encoded UTF-8 in %d texts", path, fixed)
    return pairs


def require_labels(pairs: Sequence[TextPair], path: Path | str) -> None:
    """Refuse to score on unlabelled pairs, saying which file lacks labels and what to do."""
    missing = sum(p.label is None for p in pairs)
    if missing:
        raise DataError(
            path,
            None,
            f"{missing} of {len(pairs)} pairs have no label (XTREME hides test labels for XNLI "
            "and PAWS-X); evaluate on a labelled split such as dev, or on the labelled "
            "PAWS-X test dumps",
        )


def attach_labels(
    pairs: Sequence[TextPair], labels_path: Path, column: str = "label"
) -> list[TextPair]:
    """Give unlabelled pairs the labels of a row-aligned TSV with a header row.

    Why: XTREME's English XNLI test file has no labels, but `xnli/_myxnli/my.genre.test.tsv`
    (header `genre label sentence1_en …`) lists them in the same row order. A different row
    count is a DataError naming both files.
    """
    labels_path = Path(labels_path)
    lines = read_lines(labels_path)
    if not lines:  # no line 1 to point at
        raise DataError(
            labels_path, None, f"is empty; expected a header row with a {column!r} column"
        )
    header = lines[0].split("\t")
    if column not in header:
        raise DataError(labels_path, 1, f"expected a header row with a {column!r} column")
    index = header.index(column)
    rows = [line.split("\t") for line in lines[1:]]
    if len(rows) != len(pairs):
        raise DataError(
            labels_path,
            None,
            f"has {len(rows)} label rows but {len(pairs)} pairs were given; row i must label "
            "pair i",
        )
    out: list[TextPair] = []
    for lineno, (pair, row) in enumerate(zip(pairs, rows, strict=True), 2):
        if len(row) <= index or not row[index].strip():
            raise DataError(labels_path, lineno, f"no value in the {column!r} column")
        out.append(TextPair(pair.pair_id, pair.text_a, pair.text_b, row[index].strip()))
    return out


def attach_genres(pairs: Sequence[TextPair], genres_path: Path) -> list[TextPair]:
    """Prefix each pair's id with its genre, `<genre>/<id>`, from a row-aligned TSV with a
    `genre` column (XNLI's `_myxnli/my.genre.<split>.tsv`: every language's file of a split
    translates the same rows in the same order).

    Why: XNLI files are stored in genre blocks; random subsets stratify by the genre the ids
    carry (`probe.data.subsets`). A different row count is a DataError naming both files.
    """
    genres = [p.label for p in attach_labels(pairs, genres_path, column="genre")]
    return [
        TextPair(f"{genre}/{pair.pair_id}", pair.text_a, pair.text_b, pair.label)
        for pair, genre in zip(pairs, genres, strict=True)
    ]


def _unquote(field: str) -> str:
    """Undo CSV quoting of one field (`"a ""b"` -> `a "b`); other fields are returned as is."""
    if field.startswith('"') and (m := _QUOTED.fullmatch(field)):
        return m.group(1).replace('""', '"')
    return field

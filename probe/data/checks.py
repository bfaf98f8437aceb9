"""The checks every split's records pass before they are used, local files or the hub.

A word task's sentences have words, and word forms (not a UD treebank shipped without its
text, every FORM `_`); every tag, after the task's `label_map`, is in its label set; a pair
task's labels likewise. A bad tag is reported at its file line when the file can be read.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.ud import no_forms
from probe.errors import DataError

if TYPE_CHECKING:
    from probe.data.tasks import Records, Task


def check_records(task: Task, records: Records, paths: tuple[Path, ...], split: str) -> Records:
    """Every record of a split has words and labels in the task's set (label_map applied)."""
    if not records:
        raise DataError(paths[0], None, f"no {task.level} records in split {split!r}")
    allowed = set(task.labels)
    if task.level == "word":
        words = [w for sent in records for w in sent.words]  # type: ignore[union-attr]
        if words and all(w == "_" for w in words):  # a hub id `hub:.../en_esl:train@...` too
            name = paths[0].name.partition("-ud-")[0].partition(":")[0]
            raise DataError(paths[0], None, f"split {split!r}: {no_forms(name)}")
        fixed: list[TaggedSentence] = []
        for sent in records:
            assert isinstance(sent, TaggedSentence)
            if not sent.words:
                raise DataError(paths[0], None, f"sentence {sent.sent_id!r} has no words")
            tags = tuple(task.label_map.get(t, t) for t in sent.tags)
            for i, tag in enumerate(tags):
                if tag not in allowed:
                    path = _path_of(paths, sent)
                    raise DataError(
                        path, _word_line(path, sent, i) if path.is_file() else None,
                        f"sentence {sent.sent_id!r}, word {sent.words[i]!r}: tag {tag!r} is not "
                        f"in the {task.name} label set ({', '.join(task.labels)})",
                    )  # fmt: skip
            fixed.append(dataclasses.replace(sent, tags=tags) if tags != sent.tags else sent)
        return fixed
    if task.level in ("pair", "pair-tokens"):
        for pair in records:
            assert isinstance(pair, TextPair)
            if pair.label is not None and pair.label not in allowed:
                raise DataError(
                    paths[0],
                    None,
                    f"pair {pair.pair_id!r}: label {pair.label!r} not in {task.labels}",
                )
    return records


def _path_of(paths: tuple[Path, ...], sent: TaggedSentence) -> Path:
    """The file a sentence came from, when its id names it (`file:line`); else the first."""
    head = sent.sent_id.rpartition(":")[0]
    return next((p for p in paths if p.name == head), paths[0])


def _word_line(path: Path, sent: TaggedSentence, word: int) -> int | None:
    """The line of word `word` of `sent` in its CoNLL-U or token-per-line file, or None.

    Only for error messages, so the file is read again only when one is raised. The sentence
    is found by its `file:line` id or its `# sent_id` comment; CoNLL-U multiword-token and
    empty-node lines (`1-2`, `1.1`) are skipped as the reader skips them.
    """
    from probe.data.sources.columns import read_lines

    lines = read_lines(path)
    head, _, number = sent.sent_id.rpartition(":")
    if head == path.name and number.isdigit():
        start = int(number) - 1
    else:
        marks = [
            i for i, line in enumerate(lines)
            if line.startswith("#") and [p.strip() for p in line[1:].partition("=")[::2]]
            == ["sent_id", sent.sent_id]
        ]  # fmt: skip
        if len(marks) != 1:
            return None
        start = marks[0]
    seen = -1
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip():
            if seen >= 0:
                return None
            continue
        cols = line.split("\t")
        if line.startswith("#") or (len(cols) == 10 and re.fullmatch(r"\d+[-.]\d+", cols[0])):
            continue
        seen += 1
        if seen == word:
            return i + 1 if sent.words[word] in line else None
    return None

"""The task registry (TASKS) and the Task type: what a task reads, how it is scored, where it lives.

The built-in tasks are defined in probe.data.catalogue, which the registry imports on its first
lookup; this module keeps the language and data-directory resolution every task shares.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from probe.data.sources.records import TaggedSentence, TextPair
from probe.errors import DataError, ProbeError, unknown_name
from probe.registry import Registry

Level = Literal["word", "pair", "parallel"]
Records = list[TaggedSentence] | list[TextPair]


@dataclass(frozen=True)
class Task:
    """One probing task: what is read, how it is scored, and how it is laid out on disk.

    `locate(data_dir, lang, split)` gives the local file(s) of one split; `read(paths)` turns
    them into records. `train_split` / `dev_split` are read in the source language (a None
    dev split means: hold out part of the training split); `eval_split` in every language.
    """

    name: str
    level: Level
    metric: Literal["accuracy", "entity_f1"]
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    default_source: str
    train_split: str
    dev_split: str | None
    eval_split: str
    locate: Callable[[Path, str, str], tuple[Path, ...]]
    read: Callable[[tuple[Path, ...]], Records]
    description: str
    label_map: dict[str, str] = field(default_factory=dict)  # e.g. MasakhaNER DATE -> O

    def splits_for(self, lang: str, source: str | None = None) -> tuple[str, ...]:
        """The splits a zero-shot run needs in one language: all three for the source."""
        if lang == (source or self.default_source):
            return tuple(
                dict.fromkeys(s for s in (self.train_split, self.dev_split, self.eval_split) if s)
            )
        return (self.eval_split,)

    def check_language(self, lang: str) -> None:
        if lang not in self.languages:
            raise unknown_name(f"language for task {self.name!r}", lang, self.languages)


# The catalogue reads Tatoeba's language table from its reader, so it loads on the first
# lookup rather than here: `import probe.data.tasks` (the Task type) pays for no reader.
TASKS: Registry[Task] = Registry(
    "task", load=lambda: importlib.import_module("probe.data.catalogue")
)


def get_task(name: str) -> Task:
    """Look a task up by name; unknown names fail with the close matches and the full list."""
    return TASKS.get(name)


def default_data_dir(explicit: Path | None = None) -> Path | None:
    """`--data-dir` beats the PROBE_DATA environment variable; None means: use the hub."""
    if explicit is not None:
        return explicit
    env = os.environ.get("PROBE_DATA")
    return Path(env) if env else None


def available_languages(task: Task, data_dir: Path) -> tuple[str, ...]:
    """The task's languages whose evaluation split exists under data_dir (`--langs all`)."""
    return tuple(
        lang for lang in task.languages
        if all(p.is_file() for p in task.locate(data_dir, lang, task.eval_split))
    )  # fmt: skip


def expand_languages(task: Task, langs: Sequence[str], data_dir: Path | None) -> tuple[str, ...]:
    """Resolve `all` and comma lists against the task's languages (and the local data)."""
    wanted: list[str] = []
    for item in langs:
        wanted.extend(x.strip() for x in item.split(",") if x.strip())
    if wanted == ["all"]:
        if data_dir is None:
            return task.languages
        found = available_languages(task, data_dir)
        if not found:
            raise ProbeError(f"no data for task {task.name!r} under {data_dir}")
        return found
    for lang in wanted:
        task.check_language(lang)
    return tuple(dict.fromkeys(wanted))


def local_files(task: Task, data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    """The files of one split, with a clear error when a split is missing."""
    task.check_language(lang)
    paths = task.locate(data_dir, lang, split)
    for path in paths:
        if not path.is_file():
            raise DataError(
                path, None,
                f"missing split {split!r} for task {task.name!r}, language {lang!r} "
                f"(is --data-dir / PROBE_DATA pointing at the data root?)",
            )  # fmt: skip
    return paths


def read_split(task: Task, data_dir: Path, lang: str, split: str) -> Records:
    """Read one split from local files and check every tag against the task's label set."""
    paths = local_files(task, data_dir, lang, split)
    records = task.read(paths)
    if not records:
        raise DataError(paths[0], None, f"no {task.level} records in split {split!r}")
    allowed = set(task.labels)
    if task.level == "word":
        fixed: list[TaggedSentence] = []
        for sent in records:
            assert isinstance(sent, TaggedSentence)
            if not sent.words:
                raise DataError(paths[0], None, f"sentence {sent.sent_id!r} has no words")
            tags = tuple(task.label_map.get(t, t) for t in sent.tags)
            for i, tag in enumerate(tags):
                if tag not in allowed:
                    raise DataError(
                        paths[0], _word_line(paths[0], sent, i),
                        f"sentence {sent.sent_id!r}, word {sent.words[i]!r}: tag {tag!r} is not "
                        f"in the {task.name} label set ({', '.join(task.labels)})",
                    )  # fmt: skip
            fixed.append(
                TaggedSentence(sent.sent_id, sent.words, tags) if tags != sent.tags else sent
            )
        return fixed
    if task.level == "pair":
        for pair in records:
            assert isinstance(pair, TextPair)
            if pair.label is not None and pair.label not in allowed:
                raise DataError(
                    paths[0],
                    None,
                    f"pair {pair.pair_id!r}: label {pair.label!r} not in {task.labels}",
                )
    return records


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

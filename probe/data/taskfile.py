"""A task defined in a small TOML file (`probe --task-file my_task.toml ...`).

A researcher's own data becomes a task like the built-in ones, registered in TASKS under its
name, with no code change:

    name = "my-pos"
    level = "word"                      # word | pair
    format = "conllu"                   # conllu | token-tag | pair-tsv
    separator = "\\t"                    # token-tag: between token and tag (default TAB)
    metric = "accuracy"                 # accuracy | entity_f1
    extra_metrics = ["pos_f1"]          # optional, word level: XTREME's POS F1 beside it
    labels = "from-training-data"       # or a list: ["NOUN", "VERB", ...]
    source = "en"
    root = "data"                       # where the patterns start (default: the file's folder)
    train = "train"                     # the split heads train on (omit: evaluation-only)
    dev = "dev"                         # omit: a seeded hold-out of the training split
    eval = "test"

    [paths]                             # one pattern per split; {lang} and {split} filled in
    train = "{lang}/train.conllu"
    dev = "{lang}/dev.conllu"
    test = "{lang}/test.conllu"

The languages are those the eval pattern finds on disk. Patterns start at `root` (relative
to the task file), not at `--data-dir`: the file says where its data is, so its label set
can be read from the training data when it is registered, the same in every process.

Worker processes (pool workers, torchrun ranks) see the same tasks through the
PROBE_TASK_FILE environment variable (paths joined by os.pathsep), which the `--task-file`
option sets and the registry reads on its first lookup.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probe.data.layout import PathPattern
from probe.data.sources.columns import read_token_tag
from probe.data.sources.conllu import read_conllu
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.sources.text import read_lines
from probe.data.tasks import TASKS, Records, Task
from probe.errors import DataError, ProbeError

ENV = "PROBE_TASK_FILE"
FROM_TRAINING = "from-training-data"
FORMATS = ("conllu", "token-tag", "pair-tsv")
_KEYS = {"name", "level", "format", "separator", "metric", "labels", "source", "root",
         "train", "dev", "eval", "paths", "description", "languages",
         "extra_metrics"}  # fmt: skip

_loaded: dict[Path, Task] = {}  # task files registered in this process, by resolved path


def load_task_file(path: Path) -> Task:
    """Parse and check one task file (nothing is registered)."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProbeError(f"--task-file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"--task-file {path}: not valid TOML ({exc})") from None
    return _task(spec, path)


def register_task_file(path: Path) -> Task:
    """Register the file's task in TASKS; the same file twice is one registration, and a
    name another task holds is refused."""
    where = Path(path).resolve()
    if where in _loaded:
        return _loaded[where]
    task = load_task_file(where)
    if task.name in TASKS:
        raise ProbeError(f"--task-file {path}: a task named {task.name!r} already exists")
    TASKS.register(task.name, task)
    _loaded[where] = task
    return task


def use_task_files(paths: list[Path]) -> None:
    """Register task files here and name them in PROBE_TASK_FILE for child processes."""
    for path in paths:
        register_task_file(path)
    named = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    for path in paths:
        if str(Path(path).resolve()) not in named:
            named.append(str(Path(path).resolve()))
    os.environ[ENV] = os.pathsep.join(named)


def register_env_task_files() -> None:
    """Register the task files PROBE_TASK_FILE names (the registry's load calls this)."""
    for item in os.environ.get(ENV, "").split(os.pathsep):
        if item:
            register_task_file(Path(item))


def _task(spec: dict[str, Any], path: Path) -> Task:
    def fail(message: str) -> ProbeError:
        return ProbeError(f"--task-file {path}: {message}")

    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    for key in ("name", "level", "format", "source", "paths"):
        if key not in spec:
            raise fail(f"missing key {key!r}")
    level, fmt = spec["level"], spec["format"]
    if level not in ("word", "pair"):
        raise fail(f"level must be word or pair, not {level!r}")
    if fmt not in FORMATS:
        raise fail(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if (fmt == "pair-tsv") != (level == "pair"):
        raise fail(f"format {fmt!r} does not hold {level}-level records")
    metric = spec.get("metric", "accuracy")
    if metric not in ("accuracy", "entity_f1") or (metric == "entity_f1" and level != "word"):
        raise fail(f"metric must be accuracy or (word level) entity_f1, not {metric!r}")
    extra = spec.get("extra_metrics", [])
    if (
        not isinstance(extra, list)
        or any(m != "pos_f1" for m in extra)
        or (extra and level != "word")
    ):
        raise fail(f'extra_metrics must be [] or (word level) ["pos_f1"], not {extra!r}')
    train, dev, eval_split = spec.get("train"), spec.get("dev"), spec.get("eval", "test")
    paths = spec["paths"]
    if not isinstance(paths, dict) or not paths:
        raise fail("[paths] must map split names to path patterns")
    patterns = {split: PathPattern(str(p)) for split, p in paths.items()}
    for split in (train, dev, eval_split):
        if split is not None and split not in patterns:
            raise fail(f"split {split!r} has no pattern under [paths]")
    root = (path.parent / spec.get("root", ".")).resolve()
    read = _reader(fmt, spec.get("separator", "\t"))

    def locate(_data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
        if split not in patterns:
            raise ProbeError(f"task {spec['name']!r} has no split {split!r} (see {path})")
        return (patterns[split].path(root, lang, split),)

    labels = spec.get("labels", FROM_TRAINING)
    if labels == FROM_TRAINING:
        if train is None:
            raise fail("labels from the training data need a `train` split")
        labels = _training_labels(read, locate(root, spec["source"], train))
    elif not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise fail(f"labels must be a list of strings or {FROM_TRAINING!r}")
    found = PathPattern(patterns[eval_split].text).found(root)
    return Task(
        name=str(spec["name"]), level=level, metric=metric, labels=tuple(labels),
        languages=tuple(spec.get("languages", found)), default_source=str(spec["source"]),
        train_split=train, dev_split=dev, eval_split=eval_split,
        layout=tuple(p.text for p in patterns.values()), locate=locate, read=read,
        description=str(spec.get("description", f"defined in {path}")), root=root,
        extra_metrics=tuple(dict.fromkeys(extra)),
    )  # fmt: skip


def _reader(fmt: str, separator: str) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        if fmt == "conllu":
            return [s for p in paths for s in read_conllu(p)]
        if fmt == "token-tag":
            return [s for p in paths for s in read_token_tag(p, sep=separator)]
        return [pair for p in paths for pair in read_pairs(p)]

    return read


def read_pairs(path: Path) -> list[TextPair]:
    """`text_a<TAB>text_b<TAB>label` lines (no header, no quoting), one pair per line."""
    pairs = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].strip() or not fields[1].strip():
            raise DataError(path, lineno, "expected 'text_a<TAB>text_b<TAB>label'")
        pairs.append(TextPair(f"{path.name}:{lineno}", fields[0], fields[1], fields[2].strip()))
    return pairs


def _training_labels(
    read: Callable[[tuple[Path, ...]], Records], files: tuple[Path, ...]
) -> list[str]:
    """The sorted label set of the source language's training split."""
    for file in files:
        if not file.is_file():
            raise DataError(file, None, "labels come from the training data, which is missing")
    labels: set[str] = set()
    for record in read(files):
        if isinstance(record, TaggedSentence):
            labels.update(record.tags)
        elif record.label is not None:
            labels.add(record.label)
    if not labels:
        raise DataError(files[0], None, "the training data holds no labels")
    return sorted(labels)

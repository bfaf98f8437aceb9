"""The task registry (TASKS) and the Task type: what a task reads, how it is scored, where it lives.

The built-in tasks are defined in probe.data.catalogue, which the registry imports on its first
lookup (then any task files named by $PROBE_TASK_FILE, probe.data.taskfile); this module keeps
the split and data-directory resolution every task shares. Which languages a data directory
holds is probe.data.discovery; the checks a split's records pass, probe.data.checks.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from probe.data.checks import check_records
from probe.data.layout import PathPattern
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.ud import TreebankRule, parse_picks, ud_index
from probe.errors import DataError, ProbeError
from probe.registry import Registry

# "pair-tokens" is a pair task's token view (`token_view`): every token of the joint encoding
# of a pair is a row of the cache, for heads that need tokens (DLFA on a pair).
Level = Literal["word", "pair", "parallel", "pair-tokens"]
SentencePooling = Literal["mean", "mean-with-specials"]
SENTENCE_POOLINGS: tuple[str, ...] = ("mean", "mean-with-specials")
Records = list[TaggedSentence] | list[TextPair]
Locate = Callable[[Path, str, str], tuple[Path, ...]]
# A pair task's token view is the task named `<name>@tokens` (probe.data.tasks.token_view).
TOKEN_VIEW = "@tokens"
# Tokens a pair keeps in its token view, special tokens included: XTREME's max_seq_length for
# XNLI and PAWS-X, and what bounds the view's storage (docs/cache-format.md). A constant of
# extraction, not a setting: changing it changes cached rows, so it needs an
# EXTRACTOR_VERSION bump (probe.cache.schema), as every such constant does.
PAIR_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Task:
    """One probing task: what is read, how it is scored, and how it is laid out on disk.

    `layout` is the path pattern of its files (`xtreme/panx/{lang}/{split}-{lang}.tsv`): the
    languages of a local directory are found with it. `locate(data_dir, lang, split)` gives
    the file(s) of one split (default: the layout filled in); UD tasks instead pick their
    treebanks by `treebanks` (probe.data.ud). `read(paths)` turns the files into records.

    Splits: `train_split` / `dev_split` are read in the source language (a None dev split
    means: hold out part of the training split), `eval_split` in every language. Only
    `trainable_splits` may ever train or early-stop a head: an evaluation-only task
    (`pos-pud`) has none and `train_split` None. `split_note` states a task's deliberate
    departure from train/dev/test (XNLI here trains on English test).
    """

    name: str
    level: Level
    metric: Literal["accuracy", "entity_f1"]
    labels: tuple[str, ...]
    languages: tuple[str, ...]  # the known catalogue, not a gate on local files
    default_source: str
    train_split: str | None
    dev_split: str | None
    eval_split: str
    layout: str | tuple[str, ...]  # path pattern(s) under the data directory
    read: Callable[[tuple[Path, ...]], Records]
    description: str
    locate: Locate | None = None  # None: the layout filled in (or the UD treebank rule)
    treebanks: TreebankRule | None = None  # UD tasks: which treebanks under ud/ they read
    trainable_splits: tuple[str, ...] | None = None  # None: (train_split, dev_split)
    split_note: str = ""
    root: Path | None = None  # a task file's own data root, used instead of --data-dir
    label_map: dict[str, str] = field(default_factory=dict)  # e.g. MasakhaNER DATE -> O
    # Parallel tasks: which tokens a sentence's vector averages. "mean": its subwords only;
    # "mean-with-specials": every attended token, [CLS]/[SEP] (<s>/</s>) included, as
    # XTREME's Tatoeba retrieval pools (docs/cache-format.md, sentence-level shards).
    sentence_pooling: SentencePooling = "mean"
    # Scored beside `metric` in every row, never the headline: ("pos_f1",) on UPOS tasks,
    # XTREME's seqeval-0.0.12 F1 (names from probe.analysis.metrics.METRICS).
    extra_metrics: tuple[str, ...] = ()
    # Token views of pair tasks: the joint encoding keeps at most this many tokens (special
    # tokens included), cut longest-first as XTREME's pair tasks are; None for other levels.
    token_length: int | None = None
    # Edge probing (`deprel-arc`): a word task whose probed items are (head, dependent) word
    # pairs of the UD tree, each labelled with the dependent's relation; cached as words
    # (the heads in the shard), paired at training time (probe.train.edges).
    edges: bool = False
    # Why one language's records cannot serve the task (a morphological feature its
    # treebank does not annotate), or None: such a language is skipped with that note
    # (probe.extract.plan); for the source language it is an error.
    skip_language: Callable[[Records], str | None] | None = None

    def __post_init__(self) -> None:
        if self.sentence_pooling not in SENTENCE_POOLINGS:
            raise ProbeError(
                f"task {self.name!r}: sentence_pooling must be one of "
                f"{', '.join(SENTENCE_POOLINGS)}, not {self.sentence_pooling!r}"
            )
        if self.sentence_pooling != "mean" and self.level != "parallel":
            raise ProbeError(
                f"task {self.name!r}: sentence_pooling {self.sentence_pooling!r} "
                "needs a parallel task (pairs are encoded jointly)"
            )
        if self.trainable_splits is None:
            own = tuple(s for s in (self.train_split, self.dev_split) if s)
            object.__setattr__(self, "trainable_splits", own)
        for split in (self.train_split, self.dev_split):
            if split is not None and split not in self.may_train:
                raise ProbeError(f"task {self.name!r}: split {split!r} trains but is not trainable")

    @property
    def probe_level(self) -> str:
        """The level of the heads that probe it: "pair" for edge tasks (two word vectors per
        item), else the task's level."""
        return "pair" if self.edges else self.level

    @property
    def patterns(self) -> tuple[PathPattern, ...]:
        layouts = (self.layout,) if isinstance(self.layout, str) else self.layout
        return tuple(PathPattern(text) for text in layouts)

    def where(self, data_dir: Path | None) -> Path | None:
        """Where this task's files are: its own root (a task file), else data_dir."""
        return self.root or data_dir

    @property
    def may_train(self) -> tuple[str, ...]:
        return self.trainable_splits or ()

    @property
    def evaluation_only(self) -> bool:
        return self.train_split is None

    @property
    def run_splits(self) -> tuple[str, ...]:
        """The splits a language that trains heads needs: train, dev and eval, each once."""
        return tuple(dict.fromkeys(s for s in (self.train_split, self.dev_split,
                                               self.eval_split) if s))  # fmt: skip

    @property
    def known_splits(self) -> tuple[str, ...]:
        every = (self.train_split, self.dev_split, self.eval_split, *self.may_train)
        return tuple(dict.fromkeys(s for s in every if s))

    def splits_for(self, lang: str, source: str | None = None) -> tuple[str, ...]:
        """The splits a zero-shot run needs in one language: all three for the source."""
        return self.run_splits if lang == (source or self.default_source) else (self.eval_split,)

    def check_trainable(self, split: str) -> None:
        """Refuse training (or early stopping) on a split the task keeps for evaluation."""
        if split in self.may_train:
            return
        if not self.may_train:
            raise ProbeError(
                f"task {self.name!r} is evaluation-only (its {self.eval_split} sets are "
                "test data): it cannot be trained on; train on another task and evaluate here"
            )
        what = "its evaluation split" if split == self.eval_split else "not a training split"
        raise ProbeError(
            f"task {self.name!r} cannot train on {split!r} ({what}); trainable: "
            f"{', '.join(self.may_train)}"
        )

    def training_split(self) -> str:
        """The split heads train on, or the one-line refusal of an evaluation-only task."""
        if self.train_split is None:
            self.check_trainable(self.eval_split)
        assert self.train_split is not None
        return self.train_split

    def training_on(self, split: str | None) -> Task:
        """This task trained on `split` instead (None: unchanged). Training on the dev split
        makes the dev set a seeded hold-out of it (`probe.train.splits.train_dev`)."""
        if split is None or split == self.train_split:
            return self
        self.check_trainable(split)
        dev = None if split == self.dev_split else self.dev_split
        return dataclasses.replace(self, train_split=split, dev_split=dev)

    def files(
        self, data_dir: Path, lang: str, split: str, treebanks: Sequence[str] = ()
    ) -> tuple[Path, ...]:
        """The file(s) of one split; for UD tasks those of the picked (or default) treebanks,
        concatenated in that order (a split shipped in parts: its parts, sorted)."""
        if self.treebanks is None:
            if treebanks:
                raise ProbeError(f"--treebank: task {self.name!r} reads no UD treebanks")
            if self.locate is not None:
                return self.locate(data_dir, lang, split)
            return (self.patterns[0].path(data_dir, lang, split),)
        chosen = self.treebanks.for_split(ud_index(data_dir), lang, split, parse_picks(treebanks))
        have = tuple(part for tb in chosen for part in tb.files.get(split, ()))
        if have:
            return have
        first = next(iter(chosen[0].files.values()))[0]  # names the missing file
        return (first.parent / f"{chosen[0].name}-ud-{split}.conllu",)

    def treebanks_used(
        self, data_dir: Path, lang: str, treebanks: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """The UD treebank names one language reads (() for other tasks)."""
        if self.treebanks is None:
            return ()
        index, picks = ud_index(data_dir), parse_picks(treebanks)
        if not self.treebanks.split_corpus:
            return tuple(tb.name for tb in self.treebanks.select(index, lang, picks))
        # Splits from different corpora: the eval split's treebank, then, if the language can
        # be a source (its training treebank has the training split), that one too.
        rule = self.treebanks
        names = [tb.name for tb in rule.for_split(index, lang, self.eval_split, picks)]
        for split in (s for s in self.may_train if s != self.eval_split):
            try:
                chosen = rule.for_split(index, lang, split, picks)
            except ProbeError:
                continue
            if self.train_split and any(self.train_split in tb.files for tb in chosen):
                names += [tb.name for tb in chosen]
        return tuple(dict.fromkeys(names))


def _load_tasks() -> None:
    importlib.import_module("probe.data.catalogue")
    from probe.data.taskfile import register_env_task_files

    register_env_task_files()


# The catalogue reads Tatoeba's language table from its reader, so it loads on the first
# lookup rather than here: `import probe.data.tasks` (the Task type) pays for no reader.
TASKS: Registry[Task] = Registry("task", load=_load_tasks)


def get_task(name: str) -> Task:
    """Look a task up by name; unknown names fail with the close matches and the full list.
    `<pair task>@tokens` is that task's token view (`token_view`)."""
    if name.endswith(TOKEN_VIEW):
        return token_view(TASKS.get(name.removesuffix(TOKEN_VIEW)))
    return TASKS.get(name)


def task_names() -> tuple[str, ...]:
    """Every task name `get_task` takes: the registry's, then each pair task's token view."""
    names = TASKS.names()
    views = tuple(f"{n}{TOKEN_VIEW}" for n in names if TASKS.get(n).level == "pair")
    return (*names, *views)


def token_view(task: Task) -> Task:
    """A pair task as token features: the same data, splits, labels and scoring, but every
    token of each pair's joint encoding (`[CLS] a [SEP] b [SEP]`, or the tokenizer's own pair
    template) is a cached row with its segment, instead of each side's pooled vector.

    What a head that reads tokens (DLFA's gate per token, its global branch over the pair)
    trains on. It is its own cache directory (`<task>@tokens`), so the cheap pooled vectors
    of the task stay as they are. A view of a view is the view itself."""
    if task.level == "pair-tokens":
        return task
    if task.level != "pair":
        raise ProbeError(
            f"task {task.name!r} is {task.level}-level: only pair tasks have a token view"
        )
    return dataclasses.replace(task, name=task.name + TOKEN_VIEW, level="pair-tokens",
                               token_length=PAIR_TOKEN_LENGTH)  # fmt: skip


def base_task_name(name: str) -> str:
    """The task a view belongs to (`xnli@tokens` -> `xnli`); other names unchanged."""
    return name.removesuffix(TOKEN_VIEW)


def run_task(name: str, train_split: str | None = None) -> Task:
    """The task as one run uses it: looked up, trained on `train_split` when given."""
    return get_task(name).training_on(train_split)


def default_data_dir(explicit: Path | None = None) -> Path | None:
    """`--data-dir` beats the PROBE_DATA environment variable; None means: use the hub."""
    if explicit is not None:
        return explicit
    env = os.environ.get("PROBE_DATA")
    return Path(env) if env else None


def local_files(
    task: Task, data_dir: Path, lang: str, split: str, treebanks: Sequence[str] = ()
) -> tuple[Path, ...]:
    """The files of one split, with a clear error when a split is missing."""
    paths = task.files(task.where(data_dir) or data_dir, lang, split, treebanks)
    for path in paths:
        if not path.is_file():
            raise DataError(
                path, None,
                f"missing split {split!r} for task {task.name!r}, language {lang!r} "
                f"(is --data-dir / PROBE_DATA pointing at the data root?)",
            )  # fmt: skip
    return paths


def read_split(
    task: Task, data_dir: Path, lang: str, split: str, treebanks: Sequence[str] = ()
) -> Records:
    """Read one split from local files and check every tag against the task's label set."""
    paths = local_files(task, data_dir, lang, split, treebanks)
    return check_records(task, task.read(paths), paths, split)


def training_size(records: Sequence[TaggedSentence] | Sequence[TextPair]) -> int:
    """Words (word tasks) or items a list of records holds: the training size a summary prints."""
    return sum(len(r.words) if isinstance(r, TaggedSentence) else 1 for r in records)


def treebank_settings(
    task: Task, data_dir: Path | None, langs: Sequence[str], treebanks: Sequence[str] = ()
) -> dict[str, list[str]]:
    """{language: UD treebanks read} for settings.json ({} for other tasks)."""
    if task.treebanks is None:
        return {}
    if data_dir is None:
        from probe.data.hub_tasks import hub_treebanks

        return {lang: list(hub_treebanks(task, lang, treebanks)) for lang in langs}
    return {lang: list(task.treebanks_used(data_dir, lang, treebanks)) for lang in langs}

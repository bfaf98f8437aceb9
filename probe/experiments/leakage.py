"""The leakage guard: a run does not score sentences its heads were trained or early-stopped on.

Before any job runs, `Experiment.run()` compares every training and dev split the run uses
(`Experiment.split_use`) with every evaluation split it scores, by the normalised text of
each sentence (or each side of a pair) and by parallel-set ids for translations
(probe.data.overlap), read from the cache's `words` / `text_a` / `text_b` / `sentence_ids`
(or from the files, for the commands that read no cache). The counts go to settings.json
under `leakage` either way; a split over the limit stops the run with one line naming the
splits and counts, unless `--allow-overlap` (`RunOptions.allow_overlap`) is given.

The rule, measured on ../shared/data (docs/guide.md, "Leakage guard"): an evaluation split
leaks when more than MAX_SHARE of its items are copies or translations of training/dev items
whose matched text has at least MIN_CHARS normalised characters. Ordinary data repeats short
lines ("Thank you .", PAN-X's `' '' Honda '' '`): the largest share of long copies in any
default run is 0.31% (PAN-X en train vs en dev: 31 of 10,000; GSD de dev vs test: 3 of 977);
`pos-pud` against XTREME's UD-POS English test is 17.1% (928 of 5,440; 999 copies of any
length).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.cache import SplitReader
from probe.data.overlap import Overlap, SentenceSet, overlap
from probe.data.reading import read_task_split
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError

log = logging.getLogger(__name__)

MIN_CHARS = 40  # normalised characters (no whitespace) of a matched text: ~8 English words
MAX_SHARE = 0.01  # of an evaluation split's items
RULE = (f"an evaluation split leaks when more than {MAX_SHARE:.0%} of its items are copies or "
        f"translations of training/dev items of at least {MIN_CHARS} characters")  # fmt: skip


@dataclass(frozen=True, order=True)
class SplitRef:
    """One split of one language of one task, as the cache and the data name it."""

    task: str
    lang: str
    split: str

    def __str__(self) -> str:
        return f"{self.task}/{self.lang}/{self.split}"


@dataclass(frozen=True)
class SplitUse:
    """What a run trains or early-stops on (`trains`) and what it scores (`evals`)."""

    trains: tuple[SplitRef, ...]
    evals: tuple[SplitRef, ...]

    @classmethod
    def zero_shot(
        cls, task: Task, train_langs: Sequence[str], eval_langs: Sequence[str]
    ) -> SplitUse:
        """The task's train and dev splits in each training language, its evaluation split
        in each scored language (an evaluation-only task trains nothing)."""
        own = tuple(s for s in dict.fromkeys((task.train_split, task.dev_split)) if s)
        trains = tuple(SplitRef(task.name, lang, s) for lang in train_langs for s in own)
        evals = tuple(SplitRef(task.name, lang, task.eval_split) for lang in eval_langs)
        return cls(trains, evals)

    def __add__(self, other: SplitUse) -> SplitUse:
        return SplitUse(tuple(dict.fromkeys((*self.trains, *other.trains))),
                        tuple(dict.fromkeys((*self.evals, *other.evals))))  # fmt: skip


@dataclass(frozen=True)
class Sentences:
    """A split's items as the guard compares them, and whether every item has a label (a
    split with hidden labels is not scored, so it cannot leak)."""

    items: SentenceSet
    labelled: bool


ReadSentences = Callable[[SplitRef], Sentences]


def cache_sentences(root: Path, key: str) -> ReadSentences:
    """Read a split's texts and ids from its cached shards (no data file is read again)."""

    def read(ref: SplitRef) -> Sentences:
        with SplitReader.open(root, key, ref.task, ref.lang, ref.split) as reader:
            ids = reader.strings("sentence_ids")
            labelled = not bool(np.any(reader.labels < 0))
            if get_task(ref.task).level == "word":
                items = SentenceSet.from_words(
                    reader.strings("words"), reader.offsets.tolist(), ids
                )
            else:
                items = SentenceSet.from_pairs(reader.strings("text_a"),
                                               reader.strings("text_b"), ids)  # fmt: skip
        return Sentences(items, labelled)

    return read


def file_sentences(data_dir: Path | None, treebanks: dict[str, tuple[str, ...]]) -> ReadSentences:
    """Read a split from where its task lives (its root, `data_dir`, or the hub:
    `probe.data.reading`), for the commands that read no cache; `treebanks` holds the run's
    `--treebank` picks per task name."""

    def read(ref: SplitRef) -> Sentences:
        task = get_task(ref.task)
        picks = treebanks.get(ref.task, ())
        records = read_task_split(task, data_dir, ref.lang, ref.split, picks).records
        labelled = all(getattr(r, "label", "") is not None for r in records)
        return Sentences(SentenceSet.from_records(records), labelled)

    return read


@dataclass(frozen=True)
class EvalOverlap:
    """One evaluation split against every training split together (`total`) and against
    each one that holds any of its items (`by_train`)."""

    split: SplitRef
    total: Overlap
    by_train: tuple[tuple[SplitRef, Overlap], ...]
    trained_on: bool = False  # the split itself is a training split: leaks whatever its texts

    @property
    def share(self) -> float:
        return self.total.long / self.total.eval_items if self.total.eval_items else 0.0

    @property
    def leaks(self) -> bool:
        return self.trained_on or self.share > MAX_SHARE

    def describe(self) -> str:
        t = self.total
        if self.trained_on:
            return f"{self.split} is trained on and scored"
        sources = ", ".join(f"{ref} {o.long:,}" for ref, o in self.by_train if o.long)
        return (f"{self.split} {t.long:,} of {t.eval_items:,} ({self.share:.1%}: "
                f"{t.long_copies:,} copies, {t.long_translations:,} translations) in "
                f"{sources}")  # fmt: skip


@dataclass(frozen=True)
class LeakageReport:
    """What the guard found for one run, and whether overlap was allowed."""

    trains: tuple[SplitRef, ...]
    evals: tuple[EvalOverlap, ...]
    allowed: bool

    @property
    def leaking(self) -> tuple[EvalOverlap, ...]:
        return tuple(e for e in self.evals if e.leaks)

    @property
    def overlapping(self) -> int:
        """Evaluation items that count against the run (long copies and translations)."""
        return sum(e.total.long for e in self.evals)

    def message(self) -> str:
        """The one line a leaking run stops with."""
        found = "; ".join(e.describe() for e in self.leaking)
        return (
            f"training data overlaps evaluation data ({RULE}): {found}; train on other "
            "data, or pass --allow-overlap to run anyway (the counts go to settings.json)"
        )

    def settings(self) -> dict[str, Any]:
        """settings.json's `leakage`: the rule, the splits compared, every evaluation split
        with any overlap (also short texts, also under the limit) and the total count."""
        return {
            "rule": RULE, "min_chars": MIN_CHARS, "max_share": MAX_SHARE,
            "allowed": self.allowed,
            "overlapping": self.overlapping,
            "leaking": [str(e.split) for e in self.leaking],
            "trains": [str(r) for r in self.trains],
            "evals": [str(e.split) for e in self.evals],
            "found": {
                str(e.split): {**asdict(e.total), "share": round(e.share, 6),
                               "by_train": {str(r): asdict(o) for r, o in e.by_train}}
                for e in self.evals if e.total.copies or e.total.translations
            },
        }  # fmt: skip


def leakage_lines(leakage: Mapping[str, Any] | None) -> str:
    """The summary's leakage lines, from settings.json's `leakage`: every evaluation split
    with any copy or translation of a training/dev item, found (any length) and long (what
    the limit counts); "" when there is none, so a clean run's summary says nothing."""
    found = (leakage or {}).get("found") or {}
    if not found:
        return ""
    leaking = set(leakage.get("leaking", ())) if leakage else set()
    allowed = " (--allow-overlap)" if leakage and leakage.get("allowed") else ""
    lines = [f"leakage guard{allowed}: evaluation items found in training/dev data; long = "
             f">= {MIN_CHARS} characters, the ones the {MAX_SHARE:.0%} limit counts"]  # fmt: skip
    for split, c in found.items():
        any_length = c["copies"] + c["translations"]
        long = c["long_copies"] + c["long_translations"]
        verdict = ", over the limit" if split in leaking else ""
        lines.append(f"  {split}: {any_length:,} of {c['eval_items']:,} found ({c['copies']:,} "
                     f"copies, {c['translations']:,} translations), {long:,} long "
                     f"({c['share']:.2%}{verdict})")  # fmt: skip
    return "\n".join(lines)


def check_leakage(use: SplitUse, read: ReadSentences, allow: bool) -> LeakageReport:
    """Compare every scored evaluation split with the training splits; stop with one line
    when one leaks (unless `allow`: then a warning), else return the counts."""
    trains = tuple(dict.fromkeys(use.trains))
    train_sets = {ref: read(ref).items for ref in trains}
    everything = SentenceSet.union(train_sets.values())
    evals = []
    for ref in dict.fromkeys(use.evals):
        sentences = read(ref)
        if not sentences.labelled:
            continue  # hidden labels: not scored
        per_train = ((r, overlap(s, sentences.items, MIN_CHARS)) for r, s in train_sets.items())
        by_train = tuple((r, o) for r, o in per_train if o.copies or o.translations)
        total = overlap(everything, sentences.items, MIN_CHARS)
        evals.append(EvalOverlap(ref, total, by_train, trained_on=ref in train_sets))
    report = LeakageReport(trains, tuple(evals), allow)
    if report.leaking:
        if not allow:
            raise LeakageError(report.message())
        log.warning("--allow-overlap: %s", report.message())
    return report


class LeakageError(ProbeError):
    """A run would score items it trained on; the message is one line with the counts."""

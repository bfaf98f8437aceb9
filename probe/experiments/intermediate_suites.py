"""Named intermediate-task suites for `probe intermediate --via`: tasks spanning linguistic domains.

A suite is an ordered list of entries, each a linguistic domain and its candidate tasks
(`udpos|pos`): for a given target the first candidate that is not the target, is not
already in the suite and has its default source's training split in the data stands for
the entry; an entry with no such candidate is dropped (logged), so a suite can be shorter
for some targets (suite9 for an XNLI target has eight tasks). `suite9` is ordered so that
its prefixes of 3 and 6 (`--sets 3,6,9`) each span as many domains as they can, and
`suite3` is its first three entries: growing the set grows diversity, not one domain.

Structural distance (`probe structural`) is not here: it is a regression on word pairs,
not a classification task whose labels a shared body and classifier can train on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.data.reading import has_split
from probe.data.tasks import Task, get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteEntry:
    """One slot of a suite: a linguistic domain and the tasks that may fill it, in order."""

    domain: str
    candidates: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.domain} {'|'.join(self.candidates)}"


def _entry(domain: str, candidates: str) -> SuiteEntry:
    return SuiteEntry(domain, tuple(candidates.split("|")))


SUITE9: tuple[SuiteEntry, ...] = (
    _entry("syntax", "udpos|pos"),
    _entry("semantics", "xnli"),
    _entry("entities", "panx|ner"),
    _entry("morphology", "morph-Number"),
    _entry("syntax", "deprel"),
    _entry("semantics", "pawsx|xnli"),
    _entry("morphology", "morph-Case"),
    _entry("syntax", "deprel-arc"),
    _entry("morphology", "morph-Tense"),
)
SUITES: dict[str, tuple[SuiteEntry, ...]] = {"suite3": SUITE9[:3], "suite9": SUITE9}

# The domain of every task some suite names (settings.json records it per stage).
DOMAINS: dict[str, str] = {t: e.domain for s in SUITES.values() for e in s for t in e.candidates}


def task_domain(task: str) -> str | None:
    """The linguistic domain of a task named in a suite (None for any other task)."""
    return DOMAINS.get(task)


def has_training_data(task: Task, data_dir: Path | None) -> bool:
    """The task's default source has its training split where the task lives (its root,
    data_dir, or the hub: `probe.data.reading`)."""
    return has_split(task, data_dir, task.default_source, task.training_split())


def expand_suite(
    name: str, target: Task, data_dir: Path | None, taken: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the suite's tasks for this target, one line per dropped entry saying why).

    `taken`: stage names already chosen before the suite (an earlier --via item), which no
    entry fills again."""
    chosen: list[str] = []
    dropped: list[str] = []
    for entry in SUITES[name]:
        why = []
        for candidate in entry.candidates:
            task = get_task(candidate)
            if candidate == target.name:
                why.append(f"{candidate} is the target")
            elif candidate in chosen or candidate in taken:
                why.append(f"{candidate} is already in the set")
            elif task.evaluation_only or not has_training_data(task, data_dir):
                why.append(f"{candidate} has no {task.default_source} training data")
            else:
                chosen.append(candidate)
                break
        else:
            dropped.append(f"{name}: {entry.text} ({'; '.join(why)})")
    for line in dropped:
        log.warning("--via %s: dropped the entry %s", name, line.partition(": ")[2])
    return tuple(chosen), tuple(dropped)


def suites_table() -> str:
    """`probe intermediate --list-suites`: every suite's entries, in order, with domains."""
    lines = ["suite   #  domain      candidates (the first that is not the target and has data)"]
    for name, entries in SUITES.items():
        for i, entry in enumerate(entries, 1):
            lines.append(f"{name:<7} {i:>2}  {entry.domain:<11} {' | '.join(entry.candidates)}")
    return "\n".join(lines)

"""Named intermediate-task suites for `probe intermediate --via`: tasks spanning linguistic domains.

A suite is an ordered list of entries, each a linguistic domain and its candidate tasks
(`udpos|pos|deprel`): for a given target the first candidate that is not the target, not a
twin of it (`is_twin`: more of the target, not another domain), not already in the suite
and has its default source's training split in the data stands for the entry; an entry
with no such candidate is dropped (logged), so a suite can be shorter for some targets
(suite9 for an XNLI or PAWS-X target has eight tasks). `suite9` is ordered so that its
prefixes of 3 and 6 (`--sets 3,6,9`) each span as many domains as they can, and `suite3`
is the first three stages suite9 resolves to for the target, so suite3 is always suite9's
3-set: growing the set grows diversity, not one domain.

The syntax entries fall back on each other (`udpos|pos|deprel`, `deprel|deprel-arc`,
`deprel-arc|morph-VerbForm`): for a POS target entry 1 skips both POS tasks and takes
deprel, entry 5 then deprel-arc and entry 8 VerbForm (finiteness, a morphosyntactic
feature), so suite9 keeps nine distinct tasks.

Structural distance (`probe structural`) is not here: it is a regression on word pairs,
not a classification task whose labels a shared body and classifier can train on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.data.catalogue import MORPH_PREFIX
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
    _entry("syntax", "udpos|pos|deprel"),
    _entry("semantics", "xnli|pawsx"),
    _entry("entities", "panx|ner"),
    _entry("morphology", "morph-Number"),
    _entry("syntax", "deprel|deprel-arc"),
    _entry("semantics", "pawsx|xnli"),
    _entry("morphology", "morph-Case"),
    _entry("syntax", "deprel-arc|morph-VerbForm"),
    _entry("morphology", "morph-Tense"),
)
# A suite: how many of suite9's resolved stages it takes (suite3: the first three).
SUITES: dict[str, int] = {"suite3": 3, "suite9": len(SUITE9)}

# The domain of every task some suite names (settings.json records it per stage); a task
# in two entries has the first entry's domain.
DOMAINS: dict[str, str] = {}
for _e in SUITE9:
    for _t in _e.candidates:
        DOMAINS.setdefault(_t, _e.domain)


def task_domain(task: str) -> str | None:
    """The linguistic domain of a task named in a suite (None for any other task)."""
    return DOMAINS.get(task)


def is_twin(task: Task, target: Task) -> bool:
    """The task is more of the target under another name (`udpos`, `pos-gsd`,
    `pos-pud-transfer` for `pos`): the same labels, metric and probe level. Two `morph-`
    features that share a label inventory (Poss and Reflex: none/Yes/other) are different
    features of the words, not twins. The target itself is its own twin."""
    if task.name == target.name:
        return True
    if task.name.startswith(MORPH_PREFIX) and target.name.startswith(MORPH_PREFIX):
        return False
    return (task.labels, task.metric, task.probe_level) == (
        target.labels,
        target.metric,
        target.probe_level,
    )


def has_training_data(task: Task, data_dir: Path | None) -> bool:
    """The task's default source has its training split where the task lives (its root,
    data_dir, or the hub: `probe.data.reading`)."""
    return has_split(task, data_dir, task.default_source, task.training_split())


def expand_suite(
    name: str, target: Task, data_dir: Path | None, taken: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the suite's tasks for this target, one line per dropped entry saying why).

    suite9's entries are resolved in order and the suite keeps its first `SUITES[name]`
    (suite3: 3) stages, with the entries dropped on the way. `taken`: stage names chosen
    before the suite (an earlier --via item), which no entry fills again."""
    chosen: list[str] = []
    dropped: list[str] = []
    for entry in SUITE9:
        if len(chosen) == SUITES[name]:
            break
        why = []
        for candidate in entry.candidates:
            task = get_task(candidate)
            if candidate == target.name:
                why.append(f"{candidate} is the target")
            elif is_twin(task, target):
                why.append(f"{candidate} is a twin of the target")
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
    lines = ["suite9 #  domain      candidates (the first that is not the target or its twin, "
             "not in the set yet, and has data)"]  # fmt: skip
    for i, entry in enumerate(SUITE9, 1):
        lines.append(f"{'':<6} {i:>2}  {entry.domain:<11} {' | '.join(entry.candidates)}")
    lines.append("suite3: the first three stages suite9 resolves to for the target")
    return "\n".join(lines)

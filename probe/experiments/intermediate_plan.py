"""Which configurations `probe intermediate` trains: the intermediate tasks, and their sets.

"none" (the target alone), every intermediate task alone, then sets of them trained one
after another ("pos>udpos") or mixed ("pos+udpos"); shared by the cached-feature and the
fine-tuning mode.

An intermediate stage is a task in one or more of its languages (`Stage`): `panx` trains on
the task's default source language, `panx:de` on German, `panx:en+de+fr` on one seeded
sample pooled over the three (one multilingual stage). Everywhere a stage is named by
`Stage.name`, which spells the default source bare (`panx:en` is `panx`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.data.reading import has_split
from probe.data.tasks import TASKS, Task, get_task
from probe.errors import ProbeError
from probe.results.gains import BASELINE
from probe.train.schedules import SCHEDULES, Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One intermediate stage: a registered task trained in `langs` (one language, or several
    pooled into one multilingual stage)."""

    task: str
    langs: tuple[str, ...]

    @property
    def name(self) -> str:
        if self.langs == (get_task(self.task).default_source,):
            return self.task
        return f"{self.task}:{'+'.join(self.langs)}"

    @property
    def multilingual(self) -> bool:
        return len(self.langs) > 1


def parse_stage(text: str) -> Stage:
    """`task`, `task:lang` or `task:l1+l2+...` -> a Stage (the task must be registered; the
    languages are checked against the data when the stage's splits are extracted)."""
    name, sep, langs = text.strip().partition(":")
    task = get_task(name.strip())  # unknown names fail with the close matches
    if not sep:
        return Stage(task.name, (task.default_source,))
    codes = tuple(x.strip() for x in langs.split("+"))
    if not codes or not all(codes):
        raise ProbeError(f"--via {text!r}: expected task:lang or task:lang+lang+... (panx:de)")
    if len(set(codes)) != len(codes):
        raise ProbeError(f"--via {text!r}: a language is listed twice")
    return Stage(task.name, codes)


@dataclass(frozen=True)
class Configuration:
    """One way to reach the target: no intermediate task, one, or a set (sequential / mixed).

    Named "none", "pos", "pos>udpos" (pos, then udpos, then the target) or "pos+udpos"
    (pos and udpos batches interleaved, then the target).
    """

    via: tuple[str, ...]  # Stage names, in training order
    schedule: Schedule = "sequential"

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(parse_stage(name) for name in self.via)

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language an intermediate stage of this configuration trains in (none: ())."""
        return tuple(dict.fromkeys(lang for stage in self.stages for lang in stage.langs))

    @property
    def name(self) -> str:
        if not self.via:
            return BASELINE
        return (">" if self.schedule == "sequential" else "+").join(self.via)


def resolve_via(spec: Sequence[str], target: Task, data_dir: Path | None) -> tuple[str, ...]:
    """The intermediate tasks: a comma list of registry names, or `all`.

    `all` means every word- or pair-level task in the registry other than the target whose
    source training split exists under the data directory, so a newly registered task joins
    without code changes here. Evaluation-only tasks (`pos-pud`) never train: `all` skips
    them (saying so) and naming one is refused.
    """
    wanted = [x.strip() for item in spec for x in item.split(",") if x.strip()]
    if wanted == ["all"]:
        found, skipped = [], []
        for name in TASKS.names():
            task = get_task(name)
            if name == target.name or task.level not in ("word", "pair") or task.edges:
                continue
            if task.train_split is None:
                skipped.append(name)
                continue
            if task.treebanks is not None and task.treebanks.split_corpus:
                continue  # trains on another UD task's treebank (pos-pud-transfer: pos's EWT)
            if _has_training_data(task, data_dir):
                found.append(name)
        if skipped:
            log.warning("--via all skips the evaluation-only task(s) %s: they are never trained "
                        "on", ", ".join(skipped))  # fmt: skip
        if not found:
            raise ProbeError(f"--via all found no intermediate task with data under {data_dir}")
        return tuple(found)
    if not wanted:
        raise ProbeError("--via needs at least one task (a comma list, or all)")
    for name in wanted:
        task = get_task(name)  # unknown names fail with the close matches
        if name == target.name:
            raise ProbeError(f"--via {name}: the target task cannot be its own intermediate task")
        if task.level not in ("word", "pair"):
            raise ProbeError(
                f"--via {name}: a {task.level} task has no labels to train on; use a word or "
                "pair task"
            )
        task.training_split()  # an evaluation-only task is refused here
    if len(set(wanted)) != len(wanted):
        raise ProbeError(f"--via lists a task twice: {','.join(wanted)}")
    return tuple(wanted)


def _has_training_data(task: Task, data_dir: Path | None) -> bool:
    """The task's default source has its training split where the task lives (its root,
    data_dir, or the hub: `probe.data.reading`)."""
    return has_split(task, data_dir, task.default_source, task.training_split())


def plan_configurations(
    via: Sequence[str], sets: str | None, schedules: Sequence[str]
) -> list[Configuration]:
    """ "none", every single task, then the sets of `sets` under each schedule.

    sets: None -> the growing prefixes of `via` of size 2, 3, ..., all; otherwise a comma
    list whose items are prefix sizes ("3"), "all", or explicit sets joined by '+'
    ("pos+panx"). Sets of one task equal that single task and are not repeated.
    """
    for s in schedules:
        if s not in SCHEDULES:
            raise ProbeError(f"--schedule must be one of {', '.join(SCHEDULES)} or both, not {s!r}")
    groups: list[tuple[str, ...]] = []
    items = [str(n) for n in range(2, len(via) + 1)] if sets is None else sets.split(",")
    for item in (x.strip() for x in items if x.strip()):
        if item == "all":
            groups.append(tuple(via))
        elif item.isdigit():
            size = int(item)
            if not 1 <= size <= len(via):
                raise ProbeError(f"--sets {item}: a set size is 1..{len(via)} (tasks in --via)")
            groups.append(tuple(via[:size]))
        else:
            group = tuple(x.strip() for x in item.split("+") if x.strip())
            unknown = [t for t in group if t not in via]
            if unknown or len(set(group)) != len(group) or not group:
                raise ProbeError(
                    f"--sets {item!r}: expected a size, all, or distinct tasks of --via joined "
                    f"by '+' (--via is {','.join(via)})"
                )
            groups.append(group)
    plan = [Configuration(()), *(Configuration((t,)) for t in via)]
    for group in groups:
        if len(group) > 1:
            plan += [Configuration(group, s) for s in schedules]  # type: ignore[arg-type]
    return list({c.name: c for c in plan}.values())


def word_tasks(via: tuple[str, ...], spec: tuple[str, ...]) -> tuple[str, ...]:
    """Fine-tuning runs on word tasks only: `all` drops pair tasks (logged), a named one fails."""
    pairs = [name for name in via if get_task(name).level != "word"]
    if pairs and [x.strip() for s in spec for x in s.split(",")] != ["all"]:
        raise ProbeError(
            f"--finetune trains on word-level tasks only; {', '.join(pairs)} "
            f"{'is a pair task' if len(pairs) == 1 else 'are pair tasks'} (drop --finetune to "
            "use pair tasks as intermediate tasks on cached features)"
        )
    if pairs:
        log.warning("--finetune: leaving out the pair tasks %s", ", ".join(pairs))
    kept = tuple(name for name in via if name not in pairs)
    if not kept:
        raise ProbeError("--finetune: no word-level intermediate task left in --via")
    return kept

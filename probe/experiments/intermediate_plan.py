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

from probe.data.discovery import discover_languages
from probe.data.hub_tasks import hub_languages
from probe.data.reading import has_split
from probe.data.tasks import TASKS, Task, get_task
from probe.errors import ProbeError
from probe.experiments.intermediate_suites import (
    SUITES,
    expand_suite,
    has_training_data,
    is_twin,
)
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


@dataclass(frozen=True)
class ResolvedVia:
    """What `--via` resolved to: Stage names in order, and the suite entries dropped for this
    target (one line each, saying why; a `--sets` size beyond the suite's then names them)."""

    names: tuple[str, ...]
    dropped: tuple[str, ...] = ()


def resolve_via(
    spec: Sequence[str], target: Task, data_dir: Path | None, source: str | None = None
) -> tuple[str, ...]:
    """The intermediate stages' names (`resolve_stages`)."""
    return resolve_stages(spec, target, data_dir, source).names


def resolve_stages(
    spec: Sequence[str], target: Task, data_dir: Path | None, source: str | None = None
) -> ResolvedVia:
    """The intermediate stages: `all`, or a comma list of stage specs (`task`, `task:lang`,
    `task:l1+l2+...`) and suite names (`suite3`, `suite9`:
    `probe.experiments.intermediate_suites`), mixed freely (`suite3,morph-Case`).

    `all` means every word- or pair-level task in the registry other than the target whose
    source training split exists under the data directory, so a newly registered task joins
    without code changes here. Evaluation-only tasks (`pos-pud`) never train: `all` skips
    them (saying so) and naming one is refused. The target task is refused in every
    language (its evaluation languages would leak into training), and so is a twin of it
    (`intermediate_suites.is_twin`: udpos or pos-gsd for pos) in any language but the
    target's `source` (default: its default source): zero-shot would no longer be
    zero-shot; `all` skips such twins and suites skip every twin. A stage in a language
    whose training (and dev) split the data lacks fails with the languages that have it;
    a stage listed twice (also through a suite, or with its languages in another order:
    `udpos:en+de`, `udpos:de+en`) is refused.
    """
    source = source or target.default_source
    wanted = [x.strip() for item in spec for x in item.split(",") if x.strip()]
    if wanted == ["all"]:
        return ResolvedVia(_every_task(target, data_dir, source))
    if not wanted:
        raise ProbeError("--via needs at least one task (a comma list, or all)")
    if "all" in wanted:
        raise ProbeError(f"--via {','.join(wanted)}: all stands alone (every task with data); "
                         "list the tasks instead")  # fmt: skip
    names: list[str] = []
    dropped: list[str] = []
    for item in wanted:
        if item in SUITES:
            got, lost = expand_suite(item, target, data_dir, names)
            names += got
            dropped += lost
        else:
            names.append(_check_stage(item, target, data_dir, source))
    twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    twice += _same_language_sets(names)
    if twice:
        raise ProbeError(f"--via {','.join(wanted)} lists {', '.join(twice)} twice (suites "
                         f"included: {', '.join(SUITES)}); name each stage once")  # fmt: skip
    if not names:
        raise ProbeError(f"--via {','.join(wanted)}: no intermediate task left for "
                         f"{target.name} ({'; '.join(dropped)})")  # fmt: skip
    return ResolvedVia(tuple(names), tuple(dropped))


def _same_language_sets(names: Sequence[str]) -> list[str]:
    """Stages of one task over the same set of languages in another order ("udpos:en+de
    and udpos:de+en"): one stage, so named once."""
    seen: dict[tuple[str, frozenset[str]], str] = {}
    out = []
    for name in dict.fromkeys(names):
        stage = parse_stage(name)
        key = (stage.task, frozenset(stage.langs))
        if key in seen:
            out.append(f"{seen[key]} (as {name})")
        else:
            seen[key] = name
    return out


def _every_task(target: Task, data_dir: Path | None, source: str) -> tuple[str, ...]:
    """`--via all`: every word or pair task but the target with source training data (a
    twin of the target only where it trains in the target's source)."""
    found, skipped, twins = [], [], []
    for name in TASKS.names():
        task = get_task(name)
        if name == target.name or task.level not in ("word", "pair") or task.edges:
            continue
        if task.train_split is None:
            skipped.append(name)
            continue
        if task.treebanks is not None and task.treebanks.split_corpus:
            continue  # trains on another UD task's treebank (pos-pud-transfer: pos's EWT)
        if is_twin(task, target) and task.default_source != source:
            twins.append(name)
            continue
        if has_training_data(task, data_dir):
            found.append(name)
    if skipped:
        log.warning("--via all skips the evaluation-only task(s) %s: they are never trained "
                    "on", ", ".join(skipped))  # fmt: skip
    if twins:
        log.warning("--via all skips %s: twins of the target %s that train outside its "
                    "source %s (zero-shot would break)", ", ".join(twins), target.name,
                    source)  # fmt: skip
    if not found:
        raise ProbeError(f"--via all found no intermediate task with data under {data_dir}")
    return tuple(found)


def _check_stage(item: str, target: Task, data_dir: Path | None, source: str) -> str:
    """One stage spec, checked: its Stage name."""
    stage = parse_stage(item)  # unknown tasks fail with the close matches
    task = get_task(stage.task)
    if stage.task == target.name:
        raise ProbeError(
            f"--via {item}: the target task {target.name!r} cannot be its own intermediate task, "
            "in any language (its evaluation languages would leak into training)"
        )
    others = [lang for lang in stage.langs if lang != source]
    if is_twin(task, target) and others:
        raise ProbeError(
            f"--via {item}: {stage.task} is a twin of the target {target.name} (the same "
            f"labels, metric and level) and trains in {', '.join(others)}, not only the "
            f"target's source {source}: the target's zero-shot languages would leak into "
            f"training; use {stage.task} in {source}, or another task"
        )
    if task.level not in ("word", "pair"):
        raise ProbeError(
            f"--via {item}: a {task.level} task has no labels to train on; use a word or pair task"
        )
    task.training_split()  # an evaluation-only task is refused here
    if ":" in item:
        _check_languages(item, stage, task, data_dir)
    return stage.name


def _check_languages(item: str, stage: Stage, task: Task, data_dir: Path | None) -> None:
    """Every language of the stage has the task's training split (and dev split, where the
    task has one) in the data; else one line naming the languages that have them."""
    need = tuple(s for s in (task.training_split(), task.dev_split) if s)
    missing = [lang for lang in stage.langs
               if not all(has_split(task, data_dir, lang, s) for s in need)]  # fmt: skip
    if not missing:
        return
    where = task.where(data_dir)
    if where is None:
        have = [lang for lang in hub_languages(task, named=True)
                if all(s in task.known_splits for s in need)]  # fmt: skip
    else:
        found = discover_languages(task, where)
        have = [lang for lang, splits in found.items() if all(s in splits for s in need)]
    raise ProbeError(
        f"--via {item}: {task.name} has no {'+'.join(need)} split for {', '.join(missing)} "
        f"under {where or 'the hub'}; languages with one: {', '.join(have) or 'none'}"
    )


def require_budget(via: Sequence[str], max_train_words: int | None) -> None:
    """Stages outside their task's default source (`panx:de`, `panx:en+de`) need
    --max-train-words: without it each language brings its whole split, and a comparison
    with the source stage would compare amounts of data, not languages."""
    other = [name for name in via if ":" in name]
    if other and not max_train_words:
        raise ProbeError(
            f"--via {', '.join(other)}: a stage in another or several languages needs "
            "--max-train-words N (matched size: every stage then trains on N words, pairs "
            "for pair tasks, in all)"
        )


def language_budgets(stage: Stage, max_train_words: int | None) -> dict[str, int | None]:
    """Each language's share of a stage's `--max-train-words` (pairs for pair tasks): N in
    total, N/len(langs) per language (the remainder to the first languages), so `panx` and
    `panx:en+de+fr` train on the same amount of data; None: every language's whole split."""
    if not max_train_words:
        return {lang: None for lang in stage.langs}
    share, extra = divmod(max_train_words, len(stage.langs))
    if share < 1:
        raise ProbeError(f"--max-train-words {max_train_words} cannot be split over the "
                         f"{len(stage.langs)} languages of {stage.name}")  # fmt: skip
    return {lang: share + (i < extra) for i, lang in enumerate(stage.langs)}


def extraction_budgets(
    stages: Sequence[Stage], max_train_words: int | None
) -> dict[tuple[str, str], int | None]:
    """{(task, language): the training budget to extract}: the largest any stage needs there.

    One split is extracted once (`probe.extract.plan.plan_requests` refuses one split asked
    with two samples), so where two stages share a task and language with different shares
    (`panx` and `panx:en+de`), the larger sample is extracted and the smaller stage draws
    its seeded sample from it (`probe.train.splits.train_dev`). A multilingual pair stage
    extracts its languages' whole training splits (PAWS-X dev: 2,000 pairs): on parallel
    data its languages draw disjoint items (`intermediate_parallel`), which the same
    capped sample in every language would not hold."""
    out: dict[tuple[str, str], int | None] = {}
    for stage in stages:
        task = get_task(stage.task)
        whole = stage.multilingual and task.level == "pair"  # not edge tasks: UD, not parallel
        for lang, share in language_budgets(stage, max_train_words).items():
            budget = None if whole else share
            key, had = (stage.task, lang), out.get((stage.task, lang), 0)
            if key not in out or (had is not None and (budget is None or had < budget)):
                out[key] = budget  # None (the whole split) wins over any cap
    return out


def plan_configurations(
    via: Sequence[str], sets: str | None, schedules: Sequence[str], dropped: Sequence[str] = ()
) -> list[Configuration]:
    """ "none", every single task, then the sets of `sets` under each schedule.

    sets: None -> the growing prefixes of `via` of size 2, 3, ..., all; otherwise a comma
    list whose items are prefix sizes ("3"), "all", or explicit sets of `via`'s stages
    joined by '+' ("pos+panx:de+fr": `split_set`). Sets of one task equal that single task
    and are not repeated. `dropped`: the suite entries `resolve_stages` left out, named
    when a size asks for more stages than are left.
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
                why = f"; left out for this target: {'; '.join(dropped)}" if dropped else ""
                raise ProbeError(f"--sets {item}: a set size is 1..{len(via)} (tasks in "
                                 f"--via){why}")  # fmt: skip
            groups.append(tuple(via[:size]))
        else:
            groups.append(split_set(item, via))
    plan = [Configuration(()), *(Configuration((t,)) for t in via)]
    for group in groups:
        if len(group) > 1:
            plan += [Configuration(group, s) for s in schedules]  # type: ignore[arg-type]
    return list({c.name: c for c in plan}.values())


def set_sizes(plan: Sequence[Configuration], via: Sequence[str]) -> list[tuple[int, str, str]]:
    """(size, schedule, configuration) of the sets of a plan, for the gain per set size:
    every configuration of k >= 2 stages (growing prefixes of --via, and explicit sets),
    and the first --via stage alone as size 1 (schedule ""), ordered by size then
    schedule."""
    out: list[tuple[int, str, str]] = []
    for conf in plan:
        k = len(conf.via)
        if k > 1:
            out.append((k, conf.schedule, conf.name))
        elif k == 1 and conf.via == tuple(via[:1]):
            out.append((1, "", conf.name))
    if all(size == 1 for size, _, _ in out):
        return []  # no set was run (--sets 1): nothing to compare sizes with
    order = {s: i for i, s in enumerate(("", *SCHEDULES))}
    return sorted(out, key=lambda x: (x[0], order[x[1]]))


def split_set(item: str, via: Sequence[str]) -> tuple[str, ...]:
    """An explicit `--sets` item as the stages of `via` it joins with '+'.

    '+' also joins a stage's languages (`panx:en+de`), so the item is matched against the
    known stage names rather than split: every way of spelling it as distinct `via` stages
    joined by '+' is found (longest names tried first), and exactly one must exist."""
    text = "+".join(x.strip() for x in item.split("+"))
    names = sorted(dict.fromkeys(via), key=len, reverse=True)

    def spellings(rest: str, used: tuple[str, ...]) -> list[tuple[str, ...]]:
        if not rest:
            return [used]
        out = []
        for name in names:
            if name not in used and (rest == name or rest.startswith(name + "+")):
                out += spellings(rest[len(name) + 1 :], (*used, name))
        return out

    found = spellings(text, ()) if text else []
    if not found:
        raise ProbeError(f"--sets {item!r}: expected a size, all, or distinct tasks of --via "
                         f"(stages) joined by '+' (--via is {','.join(via)})")  # fmt: skip
    if len(found) > 1:
        raise ProbeError(f"--sets {item!r} is ambiguous: it reads as "
                         f"{' or '.join(' & '.join(f) for f in found)}; name --via stages "
                         "that cannot run together")  # fmt: skip
    return found[0]


def word_tasks(via: tuple[str, ...], spec: tuple[str, ...]) -> tuple[str, ...]:
    """Fine-tuning runs on word tasks in their default source language only: `all` and the
    suites drop pair and edge tasks (logged), a named one fails, and so does any stage in
    another language (`panx:de`): the fine-tuning session reads one source per task."""
    other = [name for name in via if ":" in name]
    if other:
        raise ProbeError(
            f"--finetune trains each intermediate task in its default source language only; "
            f"{', '.join(other)} {'names' if len(other) == 1 else 'name'} another (drop "
            "--finetune to train stages in any language on cached features)"
        )
    pairs = [name for name in via if get_task(name).probe_level != "word"]
    named = [x.strip() for s in spec for x in s.split(",") if x.strip()]
    explicit = {parse_stage(x).name for x in named if x != "all" and x not in SUITES}
    named_pairs = [name for name in pairs if name in explicit]
    if named_pairs:
        raise ProbeError(
            f"--finetune trains on word-level tasks only; {', '.join(named_pairs)} "
            f"{'is a pair task' if len(named_pairs) == 1 else 'are pair tasks'} (drop "
            "--finetune to "
            "use pair tasks as intermediate tasks on cached features)"
        )
    if pairs:
        log.warning("--finetune: leaving out the pair (and arc) tasks %s", ", ".join(pairs))
    kept = tuple(name for name in via if name not in pairs)
    if not kept:
        raise ProbeError("--finetune: no word-level intermediate task left in --via")
    return kept

"""`probe intermediate --eval-domains`: every configuration's target head on other-domain sets.

Which sets. A target that reads UD treebanks (`pos`) is scored, beside its own evaluation
split, on the evaluation split of every registered single-corpus UD task with the same labels
and metric (`pos-gum`, `pos-pud`, `pos-gsd`, ...) that a target language has in the data and
that reads other files than the target's own evaluation split there (German's `pos` test is
GSD, so `pos-gsd` is no other domain for it; PUD is). Nothing names a language: the sets come
from the UD index of the data directory, and a treebank of a scored language that no such
task covers is named in a warning (one `ud_pos_task` line in `probe.data.catalogue` adds it).

What is reported (`domain_rows`): the drop, in-domain minus out-of-domain score of the same
head and seed, per configuration, language and set, with the unpaired interval
`probe.experiments.domain_shift` uses for its drops (`unpaired_delta`: two different test
sets), and per configuration the drop's difference from "none"'s (`drop_delta`: paired
within each set); both also over every (language, set) pair (lang `all`, group `sets`).
Every language is flagged by the words of its own in-domain training split in the data, in
three states: `small` (`small_train` 1, under SMALL_TRAIN_WORDS), `large` (`small_train` 0),
or `unknown` (`train_unknown` 1, no `train_words`): the data has no training split for it
(the shared data holds only the GSD dev/test of de, fr, ...), which says nothing about how
much annotated data the language has. In this zero-shot setup only the source trains, so the
flag does not describe the head's training data: it marks a language the treebanks hold
little annotated data for, the usual stand-in for "low-resource" in UD.

Seen domains (`seen_domain_rows`): a set is another domain only if no stage of the
configuration trained on its corpus. XTREME's English udpos train holds GUM train
sentences, so for a configuration with `udpos` the `en:pos-gum` drop is partly in-domain.
Per configuration and set, `seen_share` is the share of the set's corpus's training split
(its dev without one, its evaluation split without either) whose sentences are copies of the
configuration's training and dev data (every stage's, and the target's own), by the leakage
guard's fingerprints and length rule; `seen_domain` is 1 above the guard's MAX_SHARE.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import Interval, PairedBootstrap, drop_delta, unpaired_delta
from probe.data.overlap import SentenceSet, overlap
from probe.data.reading import has_split
from probe.data.tasks import TASKS, Task, get_task, local_files, read_split, training_size
from probe.data.ud import ud_index
from probe.errors import ProbeError
from probe.experiments.intermediate_plan import Configuration, parse_stage
from probe.experiments.leakage import MAX_SHARE, MIN_CHARS, ReadSentences, SplitRef, SplitUse
from probe.extract import ExtractRequest
from probe.results.gains import BASELINE, seed_summary
from probe.results.items import ItemScores, ItemSet, scored_rows
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import predict_proba
from probe.train.splits import as_data, opener

log = logging.getLogger(__name__)

# A language whose in-domain training split has fewer words is flagged `small_train`, the
# threshold `probe domain-shift` uses (DomainShiftConfig.small_train_words).
SMALL_TRAIN_WORDS = 15_000

# {language: the other-domain tasks it is scored on}, as a picklable, hashable tuple.
DomainPlan = tuple[tuple[str, tuple[str, ...]], ...]


def domain_tasks(target: Task) -> list[Task]:
    """Registered single-corpus UD tasks that tag with the target's labels and metric."""
    if target.treebanks is None or target.level != "word":
        return []
    out = []
    for name in TASKS.names():
        task = get_task(name)
        rule = task.treebanks
        if (name == target.name or rule is None or rule.corpus is None or rule.split_corpus
                or task.level != "word" or task.labels != target.labels
                or task.metric != target.metric):  # fmt: skip
            continue
        out.append(task)
    return out


def domain_plan(
    target: Task, langs: Sequence[str], data_dir: Path | None, treebanks: Sequence[str] = ()
) -> DomainPlan:
    """Per language, the other-domain tasks whose evaluation split it has in the data and
    whose files differ from the target's evaluation split there; languages with none are
    left out (logged). Refused when no language has one."""
    where = target.where(data_dir)
    if where is None:
        raise ProbeError(
            "--eval-domains finds other-domain sets among the UD treebanks of a local data "
            "directory: pass --data-dir (or set PROBE_DATA)"
        )
    candidates = domain_tasks(target)
    if not candidates:
        why = "reads no UD treebanks" if target.treebanks is None else "shares its labels with none"
        raise ProbeError(
            f"--eval-domains: {target.name!r} has no other-domain evaluation sets (they are "
            f"the UD treebanks of single-corpus tasks with its labels, e.g. pos-gum for pos; "
            f"{target.name} {why}); drop --eval-domains"
        )
    plan: list[tuple[str, tuple[str, ...]]] = []
    for lang in langs:
        own = set(local_files(target, where, lang, target.eval_split, treebanks))
        found, covered = [], set(own)
        for task in candidates:
            if not has_split(task, where, lang, task.eval_split):
                continue
            files = set(local_files(task, where, lang, task.eval_split))
            covered |= files
            if not files & own:
                found.append(task.name)
        _warn_uncovered(where, lang, target.eval_split, covered)
        if found:
            plan.append((lang, tuple(found)))
        else:
            log.info("--eval-domains: %s has no other-domain evaluation set", lang)
    if not plan:
        names = ", ".join(t.name for t in candidates) or "none registered"
        raise ProbeError(
            f"--eval-domains: no language of {target.name!r} ({', '.join(langs)}) has an "
            f"other-domain evaluation set with its labels in {where} (single-corpus UD tasks "
            f"with {target.name}'s labels: {names}); drop --eval-domains"
        )
    return tuple(plan)


def _warn_uncovered(where: Path, lang: str, split: str, covered: set[Path]) -> None:
    """A treebank of `lang` with an evaluation split that no task here reads."""
    for tb in ud_index(where).of_language(lang):
        files = set(tb.files.get(split, ()))
        if tb.forms and files and not files & covered:
            log.warning("--eval-domains: treebank %s has no single-corpus task; add one with "
                        "ud_pos_task (probe.data.catalogue) to score it", tb.name)  # fmt: skip


def restrict(plan: DomainPlan, langs: Sequence[str]) -> DomainPlan:
    """The plan of the languages actually scored."""
    return tuple((lang, names) for lang, names in plan if lang in langs)


def domain_requests(
    plan: DomainPlan, cap: int | None, seed: int, eval_cap: int | None = None
) -> list[ExtractRequest]:
    """One extraction request per other-domain task: its evaluation split in its languages,
    sampled as the target's evaluation splits are (`cap`: --max-sentences, `eval_cap`:
    --max-eval-sentences)."""
    out = []
    for name in dict.fromkeys(n for _, names in plan for n in names):
        task = get_task(name)
        langs = tuple(lang for lang, names in plan if name in names)
        out.append(ExtractRequest(name, langs, (task.eval_split,), max_sentences=cap, seed=seed,
                                  max_eval_sentences=eval_cap))  # fmt: skip
    return out


def domain_split_use(plan: DomainPlan) -> SplitUse:
    """The other-domain sets are evaluation splits (the leakage guard checks them)."""
    return SplitUse((), tuple(SplitRef(name, lang, get_task(name).eval_split)
                              for lang, names in plan for name in names))  # fmt: skip


def training_words(
    target: Task, langs: Sequence[str], data_dir: Path | None, treebanks: Sequence[str] = ()
) -> dict[str, int | None]:
    """Words of each language's in-domain training split in the data (None without one:
    unknown, not small)."""
    where = target.where(data_dir)
    split = target.train_split
    out: dict[str, int | None] = {}
    for lang in langs:
        if where is None or split is None or not has_split(target, where, lang, split, treebanks):
            out[lang] = None
            continue
        out[lang] = training_size(read_split(target, where, lang, split, treebanks))  # type: ignore[arg-type]
    return out


# --- in the job: open and score ----------------------------------------------------------------


def open_domains(root: Path, key: str, plan: DomainPlan, layers: Sequence[int]) -> dict[
    tuple[str, str], Any
]:  # fmt: skip
    """{(language, task): the set's data in memory}, read once for every configuration."""
    out = {}
    for lang, names in plan:
        for name in names:
            task = get_task(name)
            split = opener(root, key, task)(lang, task.eval_split)
            try:
                out[(lang, name)] = as_data(task, split, list(layers))
            finally:
                split.reader.close()
    return out


def domain_scores(
    row: Callable[..., Row], head: Any, target: Task, domains: Mapping[tuple[str, str], Any],
    layers: Sequence[int],
) -> list[Row | ItemScores]:  # fmt: skip
    """The target head's scores on every other-domain set (eval_task = the set's task), with
    the item statistics of those an interval resamples. `row(lang, metric, value, **kw)`
    stamps the configuration's coordinates."""
    rows: list[Row | ItemScores] = []
    for (lang, name), data in domains.items():
        probs = predict_proba(head, data.sentences(tuple(layers)))
        rows += scored_rows(functools.partial(row, lang, eval_task=name), target.metric, probs,
                            data.labels, offsets=data.offsets, label_names=target.labels,
                            extra=target.extra_metrics)  # fmt: skip
    return rows


# --- aggregation: drops, their intervals, "none"'s drop, flags -------------------------------


def domain_rows(
    task: Task, per_seed: Sequence[Row], items: ItemSet, plan: DomainPlan,
    words: Mapping[str, int | None], boot: PairedBootstrap,
) -> list[Row]:  # fmt: skip
    """Drops (per seed, seed mean with its interval, sd), each configuration's drop minus
    "none"'s (seed mean with its interval, sd), over each (language, set) and over all of
    them, and every planned language's training-size flag (`words` None: unknown)."""
    metric = task.metric
    table = Table(per_seed).filter(metric=metric, subset="", group="", stat="",
                                   seed=lambda s: s is not None)  # fmt: skip
    pairs = [(lang, name) for lang, names in plan for name in names]
    out: list[Row] = []
    systems: dict[str, dict[tuple[str, str], tuple[list[Row], list[Row]]]] = {}
    for conf in table.values("config"):
        mine = table.filter(config=conf)
        found = {}
        for lang, name in pairs:
            inside = _by_seed(mine.filter(lang=lang, eval_task=""))
            outside = _by_seed(mine.filter(lang=lang, eval_task=name))
            seeds = sorted(inside.keys() & outside.keys())
            if not seeds:
                continue
            ins, outs = [inside[s] for s in seeds], [outside[s] for s in seeds]
            found[(lang, name)] = (ins, outs)
            drops = [dataclasses.replace(o, metric=f"drop_{metric}", value=i.value - o.value)
                     for i, o in zip(ins, outs, strict=True)]  # fmt: skip
            out += drops
            out += _summary(drops, _unpaired(boot, items, metric, [(ins, outs)]))
        systems[conf] = found
        if len(found) > 1:
            like = dataclasses.replace(next(iter(found.values()))[1][0], lang="all",
                                       eval_task="", group="sets")  # fmt: skip
            out += _summary(
                _pooled_drops(found.values(), like, f"drop_{metric}"),
                _unpaired(boot, items, metric, list(found.values())),
            )
    out += _versus_none(systems, items, boot, metric)
    out.append(Row("data", "-", "all", "small_train_words", float(SMALL_TRAIN_WORDS)))
    for lang, _ in plan:
        n = words.get(lang)
        if n is None:  # no training split in the data: neither small nor large
            out.append(Row("data", "-", lang, "train_unknown", 1.0))
            continue
        out += [Row("data", "-", lang, "train_words", float(n)),
                Row("data", "-", lang, "small_train", float(n < SMALL_TRAIN_WORDS))]  # fmt: skip
    return out


def _by_seed(rows: Table) -> dict[int, Row]:
    return {int(r.seed): r for r in rows if r.seed is not None}


def _pooled_drops(
    members: Any, like: Row, metric: str, base: Any = None
) -> list[Row]:  # fmt: skip
    """Per seed, the mean over (language, set) pairs of the drop (minus "none"'s with base)."""
    per_seed: dict[int, list[float]] = {}
    for k, (ins, outs) in enumerate(members):
        for j, (i, o) in enumerate(zip(ins, outs, strict=True)):
            value = i.value - o.value
            if base is not None:
                b_in, b_out = base[k]
                value -= b_in[j].value - b_out[j].value
            per_seed.setdefault(int(i.seed or 0), []).append(value)
    return [dataclasses.replace(like, metric=metric, value=float(np.mean(v)), seed=s)
            for s, v in sorted(per_seed.items())]  # fmt: skip


def _summary(per_seed: Sequence[Row], interval: Interval | None) -> list[Row]:
    """The seed mean (with the interval) and, with several seeds, the sd row."""
    low, high = (interval.low, interval.high) if interval is not None else (None, None)
    like = dataclasses.replace(per_seed[0], seed=None, ci_low=low, ci_high=high)
    return seed_summary(like, [r.value for r in per_seed])


def _sets(
    items: ItemSet, members: Sequence[tuple[list[Row], list[Row]]]
) -> tuple[dict[str, list[np.ndarray]], list[str], list[str]] | None:
    """One system's item statistics keyed by set name (the in-domain set is the language,
    an out-of-domain one `lang:task`), and the inside / outside set names of each pair."""
    systems: dict[str, list[np.ndarray]] = {}
    inside, outside = [], []
    for ins, outs in members:
        if not items.covers(ins) or not items.covers(outs):
            return None
        lang, name = ins[0].lang, outs[0].eval_task
        systems[lang] = [items.stats(r) for r in ins]
        systems[f"{lang}:{name}"] = [items.stats(r) for r in outs]
        inside.append(lang)
        outside.append(f"{lang}:{name}")
    return systems, inside, outside


def _unpaired(
    boot: PairedBootstrap, items: ItemSet, metric: str,
    members: Sequence[tuple[list[Row], list[Row]]],
) -> Interval | None:  # fmt: skip
    found = _sets(items, members)
    if found is None:
        return None
    systems, inside, outside = found
    return unpaired_delta(boot, systems, systems, metric, inside, outside)


def _versus_none(
    systems: Mapping[str, Mapping[tuple[str, str], tuple[list[Row], list[Row]]]],
    items: ItemSet, boot: PairedBootstrap, metric: str,
) -> list[Row]:  # fmt: skip
    """Each configuration's drop minus "none"'s, per (language, set) and over all pairs both
    have, seeds matched by position (seed order)."""
    base = systems.get(BASELINE)
    if not base:
        return []
    out: list[Row] = []
    for conf, found in systems.items():
        if conf == BASELINE:
            continue
        shared = [p for p in found if p in base and len(found[p][0]) == len(base[p][0])]
        scopes = [([p], found[p][1][0]) for p in shared]
        if len(shared) > 1:
            like = dataclasses.replace(found[shared[0]][1][0], lang="all", eval_task="",
                                       group="sets")  # fmt: skip
            scopes.append((shared, like))
        for members, like in scopes:
            mine, theirs = [found[p] for p in members], [base[p] for p in members]
            per_seed = _pooled_drops(mine, like, f"dropdiff_{metric}", base=theirs)
            a, b = _sets(items, mine), _sets(items, theirs)
            interval = None
            if a is not None and b is not None:
                interval = drop_delta(boot, a[0], b[0], metric, a[1], a[2])
            out += _summary(per_seed, interval)
    return out


def domain_summary(
    task: Task, per_seed: Sequence[Row], items: ItemSet, plan: DomainPlan, config: Any
) -> list[Row]:
    """`domain_rows` for a run's config (its data directory, treebank picks and first seed);
    [] without --eval-domains."""
    if not plan:
        return []
    words = training_words(task, [lang for lang, _ in plan], config.paths.data_dir,
                           config.treebanks)  # fmt: skip
    return domain_rows(task, per_seed, items, plan, words, PairedBootstrap(seed=config.seeds[0]))


# --- seen domains: a set whose corpus a stage trained on ---------------------------------------


def reference_split(task: Task, lang: str, data_dir: Path | None) -> SplitRef:
    """The split that stands for an other-domain set's corpus: its training split, else its
    dev, else its evaluation split (PUD has only test)."""
    where = task.where(data_dir)
    for split in (task.train_split, task.dev_split):
        if split and where is not None and has_split(task, where, lang, split):
            return SplitRef(task.name, lang, split)
    return SplitRef(task.name, lang, task.eval_split)


def seen_domain_rows(
    plan: Sequence[Configuration], domains: DomainPlan, target_trains: Sequence[SplitRef],
    read_trained: ReadSentences, read_files: ReadSentences, data_dir: Path | None,
) -> list[Row]:  # fmt: skip
    """Per configuration and set: `seen_share`, the share of the set's corpus
    (`reference_split`, read by `read_files`) whose sentences of at least MIN_CHARS
    characters are in the configuration's training and dev splits (`target_trains` and each
    stage's, read by `read_trained`: the cache), and `seen_domain` (1 above MAX_SHARE).
    subset: the reference split."""
    cache: dict[SplitRef, SentenceSet] = {}

    def trained(ref: SplitRef) -> SentenceSet:
        if ref not in cache:
            cache[ref] = read_trained(ref).items
        return cache[ref]

    corpora = {(lang, name): reference_split(get_task(name), lang, data_dir)
               for lang, names in domains for name in names}  # fmt: skip
    corpus_sets = {key: read_files(ref).items for key, ref in corpora.items()}
    out: list[Row] = []
    for conf in plan:
        refs = list(target_trains)
        for stage in map(parse_stage, conf.via):
            refs += SplitUse.zero_shot(get_task(stage.task), stage.langs, ()).trains
        seen = SentenceSet.union(trained(r) for r in dict.fromkeys(refs))
        for (lang, name), corpus in corpus_sets.items():
            found = overlap(seen, corpus, MIN_CHARS)
            share = found.long_copies / found.eval_items if found.eval_items else 0.0
            row = functools.partial(Row, "data", "-", lang, config=conf.name, eval_task=name,
                                    subset=corpora[(lang, name)].split)  # fmt: skip
            out += [row("seen_share", share), row("seen_domain", float(share > MAX_SHARE))]
    return out

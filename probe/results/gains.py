"""Gains over a baseline configuration (per language, language group, family); seed means."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from probe.data.languages import family, same_family
from probe.data.tasks import Task
from probe.results.rows import Row
from probe.results.table import Table

# The configuration every other one is compared with: the target trained alone.
BASELINE = "none"

# Row.stat of a standard deviation over seeds (the value itself has stat "").
SD = "sd"


def scores(task: Task, rows: Iterable[Row]) -> Table:
    """The target's main-metric score rows: one per configuration and language."""
    return Table(rows).filter(metric=task.metric, eval_task="", subset="", group="", stat="")


def gains_over(
    task: Task, rows: Sequence[Row], source: str, baseline: Any = BASELINE, by: str = "config"
) -> list[Row]:
    """Every configuration's gain over `baseline` per language (the source's own included),
    then averaged over the targets inside / outside the source's family (groups "enf",
    "noenf") and over all targets ("targets"); configurations in first-seen order. `by`:
    the Row field that tells configurations apart (`probe grid`: "layers", a layer pair)."""
    metric, table = f"gain_{task.metric}", Table(rows)
    score = scores(task, rows)
    base = {r.lang: r.value for r in score.filter(**{by: baseline})}
    out = []
    for conf in table.values(by, **{by: lambda c: c != baseline}):
        first = table.filter(**{by: conf})[0]  # its head, legacy layer string and layers
        gains = {r.lang: r.value - base[r.lang]
                 for r in score.filter(**{by: conf}, lang=lambda lang: lang in base)}  # fmt: skip
        out += [_gain(first, lang, metric, gain) for lang, gain in gains.items()]
        for group, members in language_groups(source, gains).items():
            mean = float(np.mean([gains[lang] for lang in members]))
            out.append(_gain(first, group, metric, mean, group))
    return out


def language_groups(source: str, langs: Iterable[str]) -> dict[str, list[str]]:
    """The aggregates every gain is averaged over: "enf" (targets in the source's family),
    "noenf" (targets outside it) and "targets" (all of them); empty groups are left out."""
    targets = [lang for lang in langs if lang != source]
    groups = {"enf": [lang for lang in targets if same_family(lang, source) is True],
              "noenf": [lang for lang in targets if same_family(lang, source) is False],
              "targets": targets}  # fmt: skip
    return {name: members for name, members in groups.items() if members}


def _gain(like: Row, lang: str, metric: str, value: float, group: str = "") -> Row:
    """A gain row of `like`'s configuration (lang is the group's name for an aggregate)."""
    return Row(like.head, like.layer, lang, metric, value, layers=like.layers,
               config=like.config, group=group)  # fmt: skip


def per_family_gains(task: Task, rows: Sequence[Row], source: str) -> list[Row]:
    """Mean gain per language family of the target languages (group and lang: the family).

    Complements the enf/noenf split of `gains_over`, which is empty on one side when no
    target shares the source's family (MasakhaNER's source pcm is a creole of its own).
    """
    metric = f"gain_{task.metric}"
    per_lang = Table(rows).filter(metric=metric, group="", stat="", lang=lambda x: x != source)
    out = []
    for conf in Table(rows).values("config", metric=metric):
        by_family: dict[str, list[float]] = {}
        last = None
        for r in per_lang.filter(config=conf):
            fam = family(r.lang)
            if fam is not None:
                by_family.setdefault(fam, []).append(r.value)
                last = r
        for fam, values in by_family.items():
            assert last is not None
            out.append(_gain(last, fam, metric, float(np.mean(values)), fam))
    return out


def average_seeds(per_seed: Sequence[Sequence[Row]]) -> list[Row]:
    """Mean of every number over seeds (seed None); with several seeds also its standard
    deviation (stat "sd", metric name + "_sd", ddof=1) for the scores and gains, so a gain
    can be read against seed noise. Rows are matched on every field but value and seed."""
    values: dict[Row, list[float]] = {}
    for rows in per_seed:
        for r in rows:
            values.setdefault(dataclasses.replace(r, value=0.0, seed=None), []).append(r.value)
    out = []
    for key, vals in values.items():
        out.append(dataclasses.replace(key, value=float(np.mean(vals))))
        if len(per_seed) > 1 and key.subset != "dev" and key.metric != "best_epoch":
            out.append(dataclasses.replace(key, metric=f"{key.metric}_sd", stat=SD,
                                           value=float(np.std(vals, ddof=1))))  # fmt: skip
    return out

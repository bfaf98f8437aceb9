"""What every gain table shares: the baseline name, the language groups gains average over,
the score rows, and seed means with their sd (the gains themselves: probe.results.intervals)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from probe.data.languages import same_family
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


def language_groups(source: str, langs: Iterable[str]) -> dict[str, list[str]]:
    """The aggregates every gain is averaged over: "enf" (targets in the source's family),
    "noenf" (targets outside it) and "targets" (all of them); empty groups are left out."""
    targets = [lang for lang in langs if lang != source]
    groups = {"enf": [lang for lang in targets if same_family(lang, source) is True],
              "noenf": [lang for lang in targets if same_family(lang, source) is False],
              "targets": targets}  # fmt: skip
    return {name: members for name, members in groups.items() if members}


def seed_summary(like: Row, values: Sequence[float]) -> list[Row]:
    """`like` carrying the mean of per-seed `values` (its other fields, interval included,
    kept) and, with several seeds, the sd row (stat "sd", metric + "_sd", ddof=1, no
    interval): how a seed-averaged number is reported."""
    mean = dataclasses.replace(like, value=float(np.mean(values)))
    if len(values) < 2:
        return [mean]
    sd = dataclasses.replace(mean, metric=f"{mean.metric}_sd", stat=SD, ci_low=None,
                             ci_high=None, value=float(np.std(values, ddof=1)))  # fmt: skip
    return [mean, sd]


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

"""Differences between two systems with seeds and intervals: the rows every Δ table prints.

A system is its score rows of one metric: one per language and seed (`Row.seed`), as the
jobs return them. `delta_rows(a, b, ...)` gives, per language and per language group (enf,
noenf, targets: probe.results.gains.language_groups), one row whose value is the seed-mean
Δ with the paired bootstrap interval over items and seeds in `ci_low`/`ci_high`
(probe.analysis.bootstrap), and with several seeds an sd row (stat "sd": the sd over seeds
of the per-seed Δ, seeds paired by number). `mark(row)` is the "*" a table prints beside an
interval that excludes 0. Without item statistics (a run that kept none) the Δ has no
interval, and the table says "n/a", never a made-up one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from probe.analysis.bootstrap import PairedBootstrap
from probe.results.gains import SD, language_groups
from probe.results.items import ItemSet
from probe.results.rows import Row


def delta_rows(
    a: Sequence[Row],
    b: Sequence[Row],
    items: ItemSet,
    boot: PairedBootstrap,
    source: str,
    *,
    like: Row,
    config: str,
    with_all: bool = False,
) -> list[Row]:
    """Δ = a − b per language (a's languages that b has) and per language group.

    `like` gives the output rows' head, layer and layers (a's configuration); `config` names
    what a is compared with (the baseline); the metric is "gain_<metric of a's rows>".
    `with_all` adds group "all": every language, the source included (XTREME's average)."""
    metrics = {r.metric for r in (*a, *b)}
    if len(metrics) != 1:
        raise ValueError(f"a difference compares one metric; got {sorted(metrics)}")
    (metric,) = metrics
    per_seed_a, per_seed_b = _by_lang_seed(a), _by_lang_seed(b)
    langs = [lang for lang in per_seed_a if lang in per_seed_b]
    with_items = items.covers(a) and items.covers(b)
    if with_items and not boot.prepared(items):
        boot.prepare(items.triples(), token=items)  # every replicate, one language at a time
    sys_a = items.systems(a) if with_items else {}
    sys_b = items.systems(b) if with_items else {}
    scopes = [(lang, [lang], "") for lang in langs]
    scopes += [(group, members, group) for group, members in language_groups(source, langs).items()]
    if with_all and langs:
        scopes.append(("all", langs, "all"))
    out = []
    for name, members, group in scopes:
        value = float(np.mean([_mean(per_seed_a[m]) - _mean(per_seed_b[m]) for m in members]))
        row = Row(like.head, like.layer, name, f"gain_{metric}", value, layers=like.layers,
                  config=config, group=group)  # fmt: skip
        if with_items:
            interval = boot.delta(sys_a, sys_b, metric, members)
            row = dataclasses.replace(row, ci_low=interval.low, ci_high=interval.high)
        out.append(row)
        sd = _seed_sd(per_seed_a, per_seed_b, members)
        if sd is not None:
            out.append(dataclasses.replace(row, metric=f"{row.metric}_sd", value=sd, stat=SD,
                                           ci_low=None, ci_high=None))  # fmt: skip
    return out


def _by_lang_seed(rows: Sequence[Row]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        seeds = out.setdefault(r.lang, {})
        seed = r.seed or 0
        if seed in seeds:
            raise ValueError(f"two score rows for {r.lang} seed {seed} in one system: {r}")
        seeds[seed] = r.value
    return out


def _mean(per_seed: dict[int, float]) -> float:
    return float(np.mean(list(per_seed.values())))


def _seed_sd(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]],
             members: Sequence[str]) -> float | None:  # fmt: skip
    """sd over seeds of the per-seed Δ (averaged over `members`); None with one shared seed."""
    seeds = sorted(set.intersection(*(set(a[m]) & set(b[m]) for m in members)))
    if len(seeds) < 2:
        return None
    per_seed = [np.mean([a[m][s] - b[m][s] for m in members]) for s in seeds]
    return float(np.std(per_seed, ddof=1))


def mark(row: Row) -> str:
    """ "*" when the row's interval excludes 0, "" when it does not or there is none."""
    if row.ci_low is None or row.ci_high is None:
        return ""
    return "*" if row.ci_low > 0 or row.ci_high < 0 else ""


def interval_text(row: Row, scale: float = 100.0) -> str:
    """ "[+0.4, +2.1]" (scaled, signed) or "n/a" when the row has no interval."""
    if row.ci_low is None or row.ci_high is None or np.isnan(row.ci_low):
        return "n/a"
    return f"[{row.ci_low * scale:+.1f}, {row.ci_high * scale:+.1f}]"

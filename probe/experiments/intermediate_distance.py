"""Gain against linguistic distance for `probe intermediate`: the run's language pairs and,
with `--distance`, its (configuration, target) points and one correlation per distance kind.

Every run records the URIEL distances (`probe.analysis.crosslingual.typology`, every kind)
of each intermediate language to each scored language: a summary in settings.json
("distances") and every pair in distances.csv; a language URIEL lacks is logged and listed
there. With `--distance`, each configuration with an intermediate stage gives one point per
zero-shot target language (the target's source is left out: its gain is not transfer) and
kind: its gain over "none" (seed mean, sd, paired interval, as the gain rows have them)
against the distance from its intermediate language(s) to the target, the mean distance when
its stages train in several languages (`Configuration.languages`: `panx:de>pos` trains in de
and en; `panx:en+de` in en and de). "none" has no intermediate language and is left out.
The correlation is `probe.analysis.crosslingual.gain_distance.correlate_points`: Spearman,
per intermediate task over its single-stage configurations (multi-stage sets are kept in
gain_vs_distance.csv but left out of it, and counted in the summary), crossed bootstrap over
intermediate language sets and targets, seeded with the run's first seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.analysis.bootstrap import LEVEL, N_BOOT
from probe.analysis.crosslingual.gain_distance import (
    RESAMPLED,
    GainPoint,
    KindCorrelation,
    PairDistances,
    correlate_points,
    pair_distances,
    stage_distance,
)
from probe.data.tasks import Task
from probe.experiments.intermediate_plan import Configuration
from probe.results.gains import SD
from probe.results.render.intermediate_distance import (
    DISTANCES_CSV,
    GAIN_PNG,
    distance_lines,
    plot_gain_vs_distance,
    write_distances,
    write_gain_points,
)
from probe.results.table import Table

log = logging.getLogger(__name__)


def intermediate_languages(plan: Sequence[Configuration]) -> tuple[str, ...]:
    """Every language an intermediate stage of the plan trains in, in first-seen order."""
    return tuple(dict.fromkeys(lang for conf in plan for lang in conf.languages))


def run_distances(plan: Sequence[Configuration], langs: Sequence[str]) -> PairDistances:
    """Every kind's distance from each intermediate language to each scored language."""
    return pair_distances(intermediate_languages(plan), langs)


def distance_settings(plan: Sequence[Configuration], langs: Sequence[str]) -> dict[str, Any]:
    """settings.json's "distances": the languages, kinds, and what URIEL lacks (logged)."""
    found = run_distances(plan, langs)
    missing: dict[str, dict[str, str]] = {}
    for (lang, kind), why in found.missing.items():
        missing.setdefault(lang, {})[kind] = why
    if missing:
        log.warning("URIEL has no distance for %s: their pairs are left out (see %s)",
                    "; ".join(f"{lang} ({', '.join(k)})" for lang, k in missing.items()),
                    DISTANCES_CSV)  # fmt: skip
    return {
        "intermediate_languages": list(found.intermediate), "targets": list(found.targets),
        "kinds": list(found.kinds), "pairs": len(found.values) // max(1, len(found.kinds)),
        "missing": missing, "file": DISTANCES_CSV,
        "measure": "cosine distance of URIEL vectors (probe.analysis.crosslingual.typology); "
                   "several intermediate languages: the mean distance",
    }  # fmt: skip


@dataclass(frozen=True)
class DistanceAnalysis:
    """The points and per-(task, kind) correlations of one run, the points without a
    distance (`dropped`) and the multi-stage configurations left out of the correlations."""

    points: list[GainPoint]
    correlations: list[KindCorrelation]
    intermediate: tuple[str, ...]
    dropped: list[str]
    multi_stage: list[str]


def stage_tasks(conf: Configuration) -> str:
    """The configuration's tasks, without languages, joined as its name is (`pos>panx`,
    `pos+panx`; one stage: its task): the correlation's grouping."""
    return (">" if conf.schedule == "sequential" else "+").join(s.task for s in conf.stages)


def gain_points(
    task: Task,
    rows: Table,
    plan: Sequence[Configuration],
    distances: PairDistances,
    source: str,
) -> tuple[list[GainPoint], list[str]]:
    """(configuration, target, kind) points from the per-language gain rows (seed means),
    and the configuration/target/kind triples that have a gain but no distance."""
    gain = f"gain_{task.metric}"
    found = {(r.config, r.lang): r for r in rows.filter(metric=gain, stat="", group="", seed=None)}
    sds = {(r.config, r.lang): r.value for r in rows.filter(metric=f"{gain}_sd", stat=SD, group="")}
    points: list[GainPoint] = []
    dropped: list[str] = []
    for conf in plan:
        if not conf.via:
            continue  # "none": no intermediate language
        for target in distances.targets:
            row = found.get((conf.name, target))
            if target == source or row is None:
                continue
            for kind in distances.kinds:
                d = stage_distance(conf.languages, target, kind, distances)
                if d is None:
                    dropped.append(f"{conf.name} on {target} ({kind})")
                    continue
                points.append(GainPoint(conf.name, target, kind, conf.languages,
                                        stage_tasks(conf), len(conf.via), d, row.value,
                                        sds.get((conf.name, target)), row.ci_low,
                                        row.ci_high))  # fmt: skip
    return points, dropped


def analyse_distance(
    task: Task,
    rows: Table,
    plan: Sequence[Configuration],
    distances: PairDistances,
    source: str,
    n_boot: int = N_BOOT,
    *,
    seed: int,
) -> DistanceAnalysis:
    """The points and correlations (bootstrap seeded with `seed`: the run's first seed)."""
    points, dropped = gain_points(task, rows, plan, distances, source)
    correlations = correlate_points(points, distances.kinds, n_boot, seed, LEVEL)
    used = intermediate_languages([c for c in plan if c.via])
    multi = list(dict.fromkeys(p.config for p in points if not p.used))
    return DistanceAnalysis(points, correlations, used, dropped, multi)


def distance_outputs(
    task: Task,
    rows: Table,
    plan: Sequence[Configuration],
    langs: Sequence[str],
    source: str,
    directory: Path,
    key: str,
    analyse: bool,
    *,
    seed: int,
) -> str:
    """Write distances.csv; with `analyse` (--distance) also gain_vs_distance.csv and .png,
    and return the summary's block ("" without). `seed`: the run's first seed, which seeds
    the bootstrap."""
    distances = run_distances(plan, langs)
    write_distances(distances, directory)
    if not analyse:
        return ""
    found = analyse_distance(task, rows, plan, distances, source, seed=seed)
    write_gain_points(found.points, directory)
    title = (f"gain over 'none' vs URIEL distance, target {task.name} (source {source}), {key}; "
             f"interval: bootstrap over {RESAMPLED}")  # fmt: skip
    plot_gain_vs_distance(found.points, found.correlations, task.metric, directory / GAIN_PNG,
                          title)  # fmt: skip
    lines = distance_lines(task.metric, found.correlations, found.intermediate, found.dropped,
                           distances.missing, found.multi_stage)  # fmt: skip
    return "\n\n" + "\n".join(lines)

"""Calibration of every `probe intermediate` configuration's target head, and the comparison
of single intermediate stages by the languages they train in.

Per configuration, seed and target language: `ece` (every score row set has it:
`probe.analysis.metrics.score`, 15 equal-width bins, as `probe calibration`) and `ece_ts`,
the ECE after temperature scaling with one T per head, fitted by NLL on the target task's
source dev predictions of that same head (`temperature`, lang the source, subset `dev`);
never on a target language. The maths are `probe.analysis.calibration`'s.

The comparison (`stage_language_rows`, question 4 of issue 22) uses single-stage
configurations only, so that one stage's data is compared with one stage's: a set
(`pos>pos:tr`) trains on two or three times the data and is in no group. Three groups by the
stage's languages: `source-only` (the target's source language: `pos` for an English
target), `other-language` (one other language: `pos:tr`) and `multilingual` (several:
`pos:en+tr+vi`). Each group's ECE is the mean over its configurations and the target
languages (seed means), with an interval resampling target languages and seeds (crossed;
none under MIN_INTERVAL_TARGETS targets) and the sd over seeds. The
matched comparison is per task: every non-source single stage against the source-only stage
of the same task (`pos:tr` vs `pos`, `pos:en+tr+vi` vs `pos`), the ECE difference per target
language averaged (`delta_ece`, < 0: the other languages calibrate better).

Why the intervals resample target languages: the question is about languages, and ECE is a
binned statistic of a whole prediction set, not a mean of per-item values, so the
sentence-level paired bootstrap of the gains (which resamples item statistics) does not
apply to it. The sd over seeds beside each says how much training seeds move it; test-set
noise inside a language is in neither (`probe calibration` has per-sentence ECE intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analysis.bootstrap import LEVEL, N_BOOT
from probe.analysis.calibration import apply_temperature, fit_temperature, log_probs
from probe.analysis.metrics import expected_calibration_error
from probe.experiments.intermediate_plan import Configuration, Stage
from probe.results.gains import seed_summary
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import Feed, predict_proba

# The three groups of single-stage configurations, by the languages of the stage.
SOURCE_ONLY = "source-only"
OTHER_LANGUAGE = "other-language"
MULTILINGUAL = "multilingual"
GROUPS = (SOURCE_ONLY, OTHER_LANGUAGE, MULTILINGUAL)
# The group column of the group means, and of the matched pairs (config: the non-source
# stage's configuration; layer: the source-only configuration it is compared with).
GROUP = "stage-languages"
PAIRS = "stage-pairs"
CALIBRATION_METRICS = ("ece", "ece_ts")


@dataclass(frozen=True, eq=False)
class SourceDev:
    """The target task's source dev split as the heads read it, and its gold ids: what each
    configuration's temperature is fitted on."""

    feed: Feed
    gold: np.ndarray


def fit_source_temperature(head: Any, dev: SourceDev) -> float:
    """T minimising the NLL of the head's source dev predictions (log-probabilities stand in
    for logits: `probe.analysis.calibration`)."""
    return fit_temperature(log_probs(predict_proba(head, dev.feed)), dev.gold)


def calibration_rows(
    row: Callable[..., Row], lang: str, probs: np.ndarray, gold: np.ndarray, temperature: float
) -> list[Row]:
    """`ece_ts` of one language: the ECE of the predictions after scaling by `temperature`
    (`ece` itself is a score row already)."""
    scaled = apply_temperature(log_probs(probs), temperature)
    return [row(lang, "ece_ts", expected_calibration_error(scaled, gold))]


def stage_group(conf: Configuration, source: str) -> str | None:
    """The group of a single-stage configuration; None for "none" and for sets (several
    stages: more data than one stage, so in no group)."""
    if len(conf.stages) != 1:
        return None
    langs = conf.stages[0].langs
    if langs == (source,):
        return SOURCE_ONLY
    return MULTILINGUAL if len(langs) > 1 else OTHER_LANGUAGE


def matched_pairs(plan: Sequence[Configuration], source: str) -> list[tuple[str, str]]:
    """(non-source single stage, the source-only stage of the same task and schedule) for
    every non-source single stage whose task's source-only stage is in the plan."""
    single = {(c.stages[0], c.schedule): c.name for c in plan if stage_group(c, source)}
    out = []
    for (stage, schedule), name in single.items():
        reference = single.get((Stage(stage.task, (source,)), schedule))
        if reference is not None and reference != name:
            out.append((name, reference))
    return out


def stage_language_rows(
    rows: Sequence[Row], plan: Sequence[Configuration], source: str, seed: int = 0,
    n_boot: int = N_BOOT,
) -> list[Row]:  # fmt: skip
    """Per metric (ece, ece_ts): each group's mean over its configurations and the target
    languages (group GROUP, lang `targets`, config the group), and each matched pair's
    difference (group PAIRS, metric `delta_<m>`, config the non-source stage, layer the
    source-only one); each with its interval (target languages and seeds, crossed) and, with several
    seeds, its sd over seeds."""
    groups: dict[str, list[str]] = {}
    for conf in plan:
        group = stage_group(conf, source)
        if group is not None:
            groups.setdefault(group, []).append(conf.name)
    pairs = matched_pairs(plan, source)
    scored = Table(rows).filter(eval_task="", subset="", group="", stat="",
                                seed=lambda s: s is not None,
                                lang=lambda lang: lang != source)  # fmt: skip
    out: list[Row] = []
    for metric in CALIBRATION_METRICS:
        found = scored.filter(metric=metric)
        targets = list(found.values("lang"))
        seeds = sorted({int(r.seed) for r in found if r.seed is not None})
        if not targets or not seeds:
            continue
        like = Row(next(iter(found)).head, "-", "targets", metric, 0.0, group=GROUP)
        for g in GROUPS:
            if g in groups:
                values = _group_cube(found, groups[g], seeds, targets)  # (seeds, targets)
                out += _rows(like, g, metric, values, seed, n_boot)
        pair_like = dataclasses.replace(like, group=PAIRS)
        for name, reference in pairs:
            diff = (_group_cube(found, [name], seeds, targets)
                    - _group_cube(found, [reference], seeds, targets))  # fmt: skip
            out += _rows(dataclasses.replace(pair_like, layer=reference), name,
                         f"delta_{metric}", diff, seed, n_boot)  # fmt: skip
    return out


def _group_cube(
    found: Table, confs: Sequence[str], seeds: Sequence[int], targets: Sequence[str]
) -> np.ndarray:
    """(seeds, targets): the mean over `confs` of each one's score (NaN where missing)."""
    values = {(r.config, int(r.seed or 0), r.lang): r.value for r in found}
    cube = np.array([[[values.get((c, s, t), np.nan) for t in targets] for s in seeds]
                     for c in confs])  # fmt: skip
    return _nanmean(cube, 0)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """The mean over `axis` of the values that are there (NaN where none is), silently."""
    present = ~np.isnan(values)
    total = np.where(present, values, 0.0).sum(axis=axis)
    count = present.sum(axis=axis)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


# Fewer target languages than this give no interval: resampling two languages only says
# which of the two was drawn (PAWS-X has labelled test sets in de and zh only).
MIN_INTERVAL_TARGETS = 3


def _crossed_interval(cube: np.ndarray, seed: int, n_boot: int) -> tuple[float, float] | None:
    """Percentile interval of the mean of a (seeds, targets) cube with the seeds and the
    target languages each drawn with replacement (crossed), so both the spread over
    languages and that over training seeds widen it; None with fewer than
    MIN_INTERVAL_TARGETS languages."""
    seeds, targets = cube.shape
    if targets < MIN_INTERVAL_TARGETS:
        return None
    rng = np.random.default_rng([seed, seeds, targets])
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, seeds, size=seeds)
        cols = rng.integers(0, targets, size=targets)
        drawn = cube[np.ix_(rows, cols)]
        replicates[b] = np.nanmean(drawn) if (~np.isnan(drawn)).any() else np.nan
    replicates = replicates[~np.isnan(replicates)]
    if not len(replicates):
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _rows(
    like: Row, config: str, metric: str, cube: np.ndarray, seed: int, n_boot: int
) -> list[Row]:
    """The mean of a (seeds, targets) cube (targets missing in it left out), its interval
    over the target languages and, with several seeds, the sd of the per-seed means."""
    cube = cube[:, ~np.all(np.isnan(cube), axis=0)]  # targets with a value
    if not cube.size:
        return []
    per_seed = _nanmean(cube, 1)
    per_seed = per_seed[~np.isnan(per_seed)]
    low, high = _crossed_interval(cube, seed, n_boot) or (None, None)
    return seed_summary(dataclasses.replace(like, config=config, metric=metric, ci_low=low,
                                            ci_high=high), per_seed)  # fmt: skip

"""Calibration of every `probe intermediate` configuration's target head, and the comparison
of configurations whose intermediate stages train in the source language only with those
that train in other languages.

Per configuration, seed and target language: `ece` (every score row set has it:
`probe.analysis.metrics.score`, 15 equal-width bins, as `probe calibration`) and `ece_ts`,
the ECE after temperature scaling with one T per head, fitted by NLL on the target task's
source dev predictions of that same head (`temperature`, lang the source, subset `dev`);
never on a target language. The maths are `probe.analysis.calibration`'s.

The comparison (`stage_language_rows`, question 4 of issue 22): configurations other than
"none" fall in two groups by the languages their intermediate stages train in
(`Configuration.stages`): `source-only`, every stage in the target's source language only,
and `multilingual`, at least one stage in another language or in several (`panx:de`,
`panx:en+de`). Each group's ECE is the mean over its configurations and the target
languages (seed means); `delta_ece` is multilingual minus source-only (< 0: multilingual
stages calibrate better). Its interval resamples the target languages (the group means are
recomputed on each draw of languages with replacement), because the question is about
languages, and the per-seed sd of the difference beside it says how much training seeds
move it; test-set noise inside a language is in neither.
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
from probe.experiments.intermediate_plan import Configuration
from probe.results.gains import SD
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import Feed, predict_proba

# The two groups of configurations, by the languages of their intermediate stages.
SOURCE_ONLY = "source-only"
MULTILINGUAL = "multilingual"
# The config of the difference rows (multilingual minus source-only).
DIFFERENCE = f"{MULTILINGUAL}-{SOURCE_ONLY}"
# The group column of the comparison rows.
GROUP = "stage-languages"
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
    """`source-only`, `multilingual`, or None for "none" (no intermediate stage)."""
    stages = conf.stages
    if not stages:
        return None
    if all(stage.langs == (source,) for stage in stages):
        return SOURCE_ONLY
    return MULTILINGUAL


def stage_language_rows(
    rows: Sequence[Row], plan: Sequence[Configuration], source: str, seed: int = 0,
    n_boot: int = N_BOOT,
) -> list[Row]:  # fmt: skip
    """Per group and metric (ece, ece_ts), the mean over its configurations and the target
    languages (lang `targets`, config the group; sd over seeds with several), and with both
    groups present the difference (config DIFFERENCE, metric `delta_<m>`) with its interval
    over target languages and its sd over seeds."""
    groups: dict[str, list[str]] = {}
    for conf in plan:
        group = stage_group(conf, source)
        if group is not None:
            groups.setdefault(group, []).append(conf.name)
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
        # (group) -> (seeds, targets): the mean over the group's configurations
        cube = {g: _group_cube(found, confs, seeds, targets) for g, confs in groups.items()}
        like = Row(next(iter(found)).head, "-", "targets", metric, 0.0, group=GROUP)
        for g, values in cube.items():
            out += _rows(like, g, metric, values.mean(axis=1), None)
        if SOURCE_ONLY in cube and MULTILINGUAL in cube:
            diff = cube[MULTILINGUAL] - cube[SOURCE_ONLY]  # (seeds, targets)
            per_lang = diff.mean(axis=0)
            interval = _language_interval(per_lang, seed, n_boot)
            out += _rows(like, DIFFERENCE, f"delta_{metric}", diff.mean(axis=1), interval)
    return out


def _group_cube(
    found: Table, confs: Sequence[str], seeds: Sequence[int], targets: Sequence[str]
) -> np.ndarray:
    """(seeds, targets): the mean over `confs` of each one's score (NaN where missing)."""
    values = {(r.config, int(r.seed or 0), r.lang): r.value for r in found}
    cube = np.array([[[values.get((c, s, t), np.nan) for t in targets] for s in seeds]
                     for c in confs])  # fmt: skip
    return np.nanmean(cube, axis=0)  # type: ignore[no-any-return]


def _language_interval(per_lang: np.ndarray, seed: int, n_boot: int) -> tuple[float, float] | None:
    """Percentile interval of the mean over target languages drawn with replacement; None
    with fewer than two languages (nothing to resample)."""
    if len(per_lang) < 2:
        return None
    rng = np.random.default_rng([seed, len(per_lang)])
    draws = rng.integers(0, len(per_lang), size=(n_boot, len(per_lang)))
    replicates = per_lang[draws].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _rows(
    like: Row, config: str, metric: str, per_seed: np.ndarray,
    interval: tuple[float, float] | None,
) -> list[Row]:  # fmt: skip
    low, high = interval if interval is not None else (None, None)
    value = float(np.mean(per_seed))
    mean = dataclasses.replace(like, config=config, layer="-", metric=metric, value=value,
                               ci_low=low, ci_high=high)  # fmt: skip
    out = [mean]
    if len(per_seed) > 1:
        sd = float(np.std(per_seed, ddof=1))
        out.append(dataclasses.replace(mean, metric=f"{metric}_sd", stat=SD, value=sd,
                                       ci_low=None, ci_high=None))  # fmt: skip
    return out

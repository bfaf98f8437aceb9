"""Gain against linguistic distance: the URIEL distances of a run's language pairs, and the
rank correlation of per-target gains with them under a bootstrap that respects the design.

The points of `probe intermediate --distance` are (configuration, target language) pairs: a
configuration's gain over "none" on one target, against the distance between the
configuration's intermediate language(s) and that target. The correlation is taken within
one intermediate task at a time, over its single-stage configurations only (`pos`, `pos:tr`,
`pos:vi`): pooling tasks, or adding multi-stage sets, would mix the task's and the set
size's effects on the gain with the language's. Multi-stage points are kept (`used` False)
but correlate nothing.

The points are not independent: the distance varies only with the configuration's
intermediate *language set* and the target, every point of one language set shares its x
level (and, per set, its trained body), every point of one target shares that language's
test set (and its "none" score). Resampling points one by one, as
`correlation.bootstrap_correlation` does for one point per language, would treat them as
independent and give intervals too narrow. So the interval here is a crossed ("pigeonhole",
Owen 2007) bootstrap: each replicate draws the language sets with replacement and,
independently, the target languages with replacement, and keeps every point of a drawn
set on a drawn target (with the multiplicity of both draws). It is known to be mildly
conservative for crossed designs, which is the side to err on with a handful of
languages. No p-value is reported: the usual Spearman p treats the points as independent.

Distances come from `probe.analysis.crosslingual.typology` (its kinds, its cosine distances);
nothing here computes a distance. A language URIEL lacks (for one kind or every kind) is
recorded with the reason, never dropped in silence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from probe.analysis.crosslingual.correlation import MIN_BOOTSTRAP_N, Correlation, correlate
from probe.analysis.crosslingual.typology import DISTANCE_KINDS, language_distance
from probe.errors import ProbeError

DistanceFn = Callable[[str, str, str], float]  # (language a, language b, kind) -> distance

RESAMPLED = "intermediate language sets and target languages, crossed (each drawn with replacement)"


@dataclass(frozen=True)
class PairDistances:
    """URIEL distances of every (intermediate language, target language) pair and kind.

    `values[(intermediate, target, kind)]`: the distance; `missing[(language, kind)]`: why
    URIEL gives no distance of that kind for that language (its pairs have no value)."""

    intermediate: tuple[str, ...]
    targets: tuple[str, ...]
    kinds: tuple[str, ...]
    values: dict[tuple[str, str, str], float]
    missing: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, a: str, b: str, kind: str) -> float | None:
        return self.values.get((a, b, kind))


def _reason(err: ProbeError) -> str:
    """The error's first sentence: an unknown language's message lists every URIEL code."""
    return str(err).split(". Available:")[0].split(". Did you mean")[0]


def pair_distances(
    intermediate: Sequence[str],
    targets: Sequence[str],
    kinds: Sequence[str] = DISTANCE_KINDS,
    distance: DistanceFn | None = None,
) -> PairDistances:
    """Every kind's distance from each intermediate language to each target (`distance`:
    default `typology.language_distance`, looked up at call time so tests can plant one).

    A language is missing for a kind when its distance to itself cannot be computed (not in
    URIEL, or no complete vector of that kind); its pairs are left out of `values` and the
    reason is kept in `missing`."""
    distance = distance or language_distance
    inter, tgts = tuple(dict.fromkeys(intermediate)), tuple(dict.fromkeys(targets))
    missing: dict[tuple[str, str], str] = {}
    for lang in dict.fromkeys((*inter, *tgts)):
        for kind in kinds:
            try:
                distance(lang, lang, kind)
            except ProbeError as err:
                missing[(lang, kind)] = _reason(err)
    values = {
        (a, b, kind): float(distance(a, b, kind))
        for a in inter
        for b in tgts
        for kind in kinds
        if (a, kind) not in missing and (b, kind) not in missing
    }
    return PairDistances(inter, tgts, tuple(kinds), values, missing)


def stage_distance(
    languages: Sequence[str], target: str, kind: str, distances: PairDistances
) -> float | None:
    """The distance of a configuration's intermediate languages to a target: the mean over
    its languages (one language: its distance); None when any of them has no distance."""
    found = [distances.get(lang, target, kind) for lang in languages]
    if not found or any(d is None for d in found):
        return None
    return float(np.mean([d for d in found if d is not None]))


def language_set(languages: Sequence[str]) -> str:
    """The bootstrap's row cluster: a configuration's intermediate languages, order-free
    (`udpos:en+de` and `udpos:de+en` have the same distance to every target)."""
    return "+".join(sorted(set(languages)))


@dataclass(frozen=True)
class GainPoint:
    """One configuration's gain over "none" on one target against one kind of distance.

    `task`: the single stage's task (a multi-stage set: its stages' tasks joined as in its
    name); `stages`: how many stages the configuration has; only single-stage points enter
    the correlation (`used`). `gain`: the seed mean; `gain_sd`: its sd over seeds (None with
    one seed); `ci_low`, `ci_high`: its paired bootstrap interval (None when the run kept no
    item statistics)."""

    config: str
    target: str
    kind: str
    languages: tuple[str, ...]  # the configuration's intermediate languages
    task: str
    stages: int
    distance: float
    gain: float
    gain_sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def used(self) -> bool:
        """In its task's correlation: a single-stage configuration."""
        return self.stages == 1


@dataclass(frozen=True)
class KindCorrelation:
    """Spearman's rho (and Pearson's r) of gain with one kind of distance over the `n`
    single-stage points of one intermediate task, with the crossed bootstrap interval of
    rho; how many configurations, targets and distinct intermediate `languages` the points
    span, and how many distinct sets of them (the bootstrap's rows): with one set, every
    point of a target has the same distance, so the correlation is only across targets."""

    task: str
    kind: str
    correlation: Correlation
    ci_low: float
    ci_high: float
    n_configs: int
    n_targets: int
    languages: tuple[str, ...]
    n_language_sets: int

    @property
    def n_languages(self) -> int:
        return len(self.languages)

    @property
    def n(self) -> int:
        return self.correlation.n

    @property
    def rho(self) -> float:
        return self.correlation.spearman_rho


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson's r of average ranks); NaN below 3 points or when constant."""
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    cx, cy = rx - rx.mean(), ry - ry.mean()
    return float(cx @ cy / math.sqrt((cx @ cx) * (cy @ cy)))


def crossed_bootstrap_spearman(
    x: Sequence[float],
    y: Sequence[float],
    rows: Sequence[str],
    cols: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of Spearman's rho of x and y, where point i belongs to row
    cluster rows[i] (an intermediate language set) and column cluster cols[i] (a target
    language).

    Each replicate draws the row clusters and the column clusters with replacement,
    independently, and takes every point at a drawn (row, column) once per pair of draws.
    Replicates whose rho is undefined (a constant series) are left out; with fewer than
    `MIN_BOOTSTRAP_N` points, or more than half the replicates undefined, the interval is
    (NaN, NaN)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (len(a) == len(b) == len(rows) == len(cols)):
        raise ValueError("x, y, rows and cols need one entry per point")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    r_names = [r for r, k in zip(rows, keep, strict=True) if k]
    c_names = [c for c, k in zip(cols, keep, strict=True) if k]
    if len(a) < MIN_BOOTSTRAP_N:
        return math.nan, math.nan
    r_ids, c_ids = list(dict.fromkeys(r_names)), list(dict.fromkeys(c_names))
    grid: dict[tuple[int, int], list[int]] = {}
    for i, (r, c) in enumerate(zip(r_names, c_names, strict=True)):
        grid.setdefault((r_ids.index(r), c_ids.index(c)), []).append(i)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        drawn_r = rng.integers(0, len(r_ids), len(r_ids))
        drawn_c = rng.integers(0, len(c_ids), len(c_ids))
        idx = [i for r in drawn_r for c in drawn_c for i in grid.get((int(r), int(c)), ())]
        reps.append(_spearman(a[idx], b[idx]))
    defined = np.array([r for r in reps if not math.isnan(r)])
    if len(defined) < n_boot / 2:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(defined, [tail, 1 - tail])
    return float(low), float(high)


def correlate_points(
    points: Sequence[GainPoint],
    kinds: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[KindCorrelation]:
    """One correlation per (intermediate task, kind) over that task's single-stage points
    (gain against distance), tasks in first-seen order; multi-stage points are left out.
    Each correlation's bootstrap draws from its own stream (`seed` + its index)."""
    used = [p for p in points if p.used]
    out: list[KindCorrelation] = []
    for task in dict.fromkeys(p.task for p in used):
        for kind in kinds:
            mine = [p for p in used if p.task == task and p.kind == kind]
            x = [p.distance for p in mine]
            y = [p.gain for p in mine]
            sets = [language_set(p.languages) for p in mine]
            targets = [p.target for p in mine]
            low, high = crossed_bootstrap_spearman(x, y, sets, targets, n_boot, seed + len(out),
                                                   level=level)  # fmt: skip
            langs = tuple(dict.fromkeys(lang for p in mine for lang in p.languages))
            out.append(KindCorrelation(task, kind, correlate(x, y), low, high,
                                       len({p.config for p in mine}), len(set(targets)), langs,
                                       len(set(sets))))  # fmt: skip
    return out

"""Pearson, Spearman and partial rank correlation with two-sided p-values, and bootstrap
intervals over languages, for transfer vs linguistic distance.

Made for a handful of points (one per target language), so the small-sample cases are
explicit: with fewer than three points, or a constant series, a correlation is undefined
and reported as NaN with `n` beside it, never as a number that looks meaningful; and for
n <= 8 the Spearman p-value is exact (all n! orderings), because the usual t approximation
is far off there (it gives p = 0 for a perfect rank agreement of 4 points, whose exact
two-sided p is 2/24).

The bootstrap interval (`bootstrap_correlation`) resamples *languages*: the question "does
transfer fall with distance" is about languages as a sample of languages, so the unit of
resampling is the (distance, score) pair of one target. The interval is the percentile
interval of the replicate rank correlations; with fewer than 4 languages it is NaN (a
resample of 3 points has at most 3 distinct values, so its replicates say nothing).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

EXACT_SPEARMAN_MAX_N = 8
MIN_BOOTSTRAP_N = 4  # fewer languages: no interval (NaN)


@dataclass(frozen=True)
class Correlation:
    """Pearson r and Spearman rho of two paired series, each with its two-sided p-value."""

    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float


NAN = float("nan")


def correlate(x: ArrayLike, y: ArrayLike) -> Correlation:
    """Correlate paired values; pairs where either value is NaN are dropped first.

    Pearson's p is scipy's exact test under bivariate normality (Student t, n - 2 degrees of
    freedom). Spearman's p is exact for n <= 8 (`spearman_exact_p`) and scipy's t
    approximation above that.
    """
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-d series of equal length; got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(len(a))
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Correlation(n, NAN, NAN, NAN, NAN)
    pearson = stats.pearsonr(a, b)
    spearman = stats.spearmanr(a, b)
    rho = float(spearman.statistic)
    rho_p = spearman_exact_p(a, b) if n <= EXACT_SPEARMAN_MAX_N else float(spearman.pvalue)
    return Correlation(n, float(pearson.statistic), float(pearson.pvalue), rho, rho_p)


def spearman_exact_p(x: ArrayLike, y: ArrayLike) -> float:
    """Two-sided permutation p of Spearman's rho: the share of all orderings of y's ranks
    whose |rho| is at least the observed one (ties keep their average ranks)."""
    from scipy import stats

    rx = stats.rankdata(np.asarray(x, dtype=np.float64))
    ry = stats.rankdata(np.asarray(y, dtype=np.float64))
    n = len(rx)
    if n > EXACT_SPEARMAN_MAX_N:
        raise ValueError(f"exact Spearman p enumerates n! orderings; n={n} is too many")
    cx = rx - rx.mean()
    cy_obs = ry - ry.mean()
    observed = abs(float(cx @ cy_obs / math.sqrt((cx @ cx) * (cy_obs @ cy_obs))))
    perms = np.array(list(itertools.permutations(ry)))
    cy = perms - perms.mean(axis=1, keepdims=True)
    rhos = np.abs(cy @ cx) / np.sqrt((cx @ cx) * (cy * cy).sum(axis=1))
    return float(np.mean(rhos >= observed - 1e-12))


@dataclass(frozen=True)
class PartialCorrelation:
    """The rank correlation of x and y with z partialled out, and its two-sided p."""

    n: int
    rho: float
    p: float


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy import stats

    return np.asarray(stats.rankdata(values, axis=-1), dtype=np.float64)


def _complete(*series: ArrayLike) -> list[np.ndarray]:
    """The series as float arrays with every position where any is NaN dropped."""
    arrays = [np.asarray(s, dtype=np.float64) for s in series]
    if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"need 1-d series of equal length; got {[a.shape for a in arrays]}")
    keep = ~np.any([np.isnan(a) for a in arrays], axis=0)
    return [a[keep] for a in arrays]


def partial_spearman(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> PartialCorrelation:
    """Spearman's rho of x and y controlling for z: Pearson's r of the ranks of x and y after
    each is residualised (least squares with intercept) on the ranks of z.

    This is the partial Pearson correlation on ranks, the usual "partial
    Spearman", equal to (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)) of the three
    rank correlations. Its p-value is the t test of a partial correlation with one control
    variable: t = r sqrt(df / (1 - r^2)), df = n - 3, an approximation for ranks (no exact
    test is attempted). Undefined (NaN) below 4 complete points (df < 1) or when a series,
    or a residual, is constant (z explains x or y entirely).
    """
    from scipy import stats

    a, b, c = _complete(x, y, z)
    n = int(len(a))
    if n < 4 or np.ptp(a) == 0 or np.ptp(b) == 0 or np.ptp(c) == 0:
        return PartialCorrelation(n, NAN, NAN)
    ra, rb, rc = _ranks(a), _ranks(b), _ranks(c)
    design = np.column_stack([np.ones(n), rc])
    ea = ra - design @ np.linalg.lstsq(design, ra, rcond=None)[0]
    eb = rb - design @ np.linalg.lstsq(design, rb, rcond=None)[0]
    na, nb = float(np.linalg.norm(ea)), float(np.linalg.norm(eb))
    scale = max(float(np.linalg.norm(ra - ra.mean())), float(np.linalg.norm(rb - rb.mean())))
    if na <= 1e-9 * scale or nb <= 1e-9 * scale:
        return PartialCorrelation(n, NAN, NAN)
    r = float(np.clip(ea @ eb / (na * nb), -1.0, 1.0))
    df = n - 3
    if abs(r) == 1.0:
        return PartialCorrelation(n, r, 0.0)
    t = r * math.sqrt(df / (1.0 - r * r))
    return PartialCorrelation(n, r, float(2.0 * stats.t.sf(abs(t), df)))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of a with the same row of b (NaN where a row is constant)."""
    ca = a - a.mean(axis=1, keepdims=True)
    cb = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((ca * ca).sum(axis=1) * (cb * cb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ca * cb).sum(axis=1) / np.where(denom > 0, denom, 1), NAN)


def _rowwise_partial(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Partial rank correlation of each row (ranks given), by the three-correlation formula."""
    rab, rac, rbc = _rowwise_pearson(a, b), _rowwise_pearson(a, c), _rowwise_pearson(b, c)
    denom = np.sqrt((1 - rac**2) * (1 - rbc**2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rab - rac * rbc) / denom
    return np.where(denom > 1e-12, np.clip(out, -1, 1), NAN)


def bootstrap_correlation(
    x: ArrayLike,
    y: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
    z: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho of x and y (with `z`: of the partial
    rank correlation given z, as `partial_spearman`), resampling the pairs (languages) with
    replacement.

    Pairs with a NaN are dropped first. A replicate in which a series comes out constant
    (the same language drawn over and over) has no correlation and is left out; if more
    than half the replicates are undefined, or fewer than `MIN_BOOTSTRAP_N` pairs remain,
    the interval is (NaN, NaN): too few languages for the interval to mean anything.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    series = _complete(x, y) if z is None else _complete(x, y, z)
    n = int(len(series[0]))
    if n < MIN_BOOTSTRAP_N + (z is not None):
        return NAN, NAN
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    ranked = [_ranks(s[draws]) for s in series]
    reps = _rowwise_pearson(*ranked) if z is None else _rowwise_partial(*ranked)
    reps = reps[~np.isnan(reps)]
    if len(reps) < n_boot / 2:
        return NAN, NAN
    tail = (1 - level) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return float(low), float(high)

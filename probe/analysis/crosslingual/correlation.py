"""Pearson and Spearman correlation with two-sided p-values, for transfer vs distance.

Made for a handful of points (one per target language), so the small-sample cases are
explicit: with fewer than three points, or a constant series, a correlation is undefined
and reported as NaN with `n` beside it, never as a number that looks meaningful; and for
n <= 8 the Spearman p-value is exact (all n! orderings), because the usual t approximation
is far off there (it gives p = 0 for a perfect rank agreement of 4 points, whose exact
two-sided p is 2/24).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

EXACT_SPEARMAN_MAX_N = 8


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

"""Multiple-testing correction: Holm's step-down adjustment of a family of p-values.

When a run reports many tests (every distance kind at every layer), the smallest raw p of
the family is small by chance alone; a result is called significant only on its adjusted p.
Holm (1979) controls the family-wise error rate under any dependence between the tests, as
Bonferroni does, and is uniformly more powerful than it, so it is the default here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order.

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of
    the i-th is max over j <= i of min(1, (m - j + 1) p_(j)) (the running maximum keeps the
    adjusted values in the raw values' order). A NaN (an undefined test: too few points, a
    constant series) stays NaN and is not counted in m: it was never a test that could come
    out significant. Raises ValueError for a p-value outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {p[finite].min()}..{p[finite].max()}")
    index = np.flatnonzero(finite)
    m = len(index)
    if m == 0:
        return out
    order = index[np.argsort(p[index], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def min_spearman_p(n: int) -> float:
    """The smallest two-sided p an exact Spearman test can give with n points: 2 / n! (only
    the two perfect orderings reach |rho| = 1); NaN below 3 points (no test).

    With 4 targets it is 0.083, so no correlation over four languages can pass 0.05, and a
    family of m tests needs min p < 0.05 / m to have any chance under Holm.
    """
    if n < 3:
        return math.nan
    return 2.0 / math.factorial(n) if n <= 170 else 0.0


def significant(adjusted: Sequence[float] | np.ndarray, alpha: float = 0.05) -> list[bool]:
    """Which adjusted p-values are below alpha (a NaN is never significant)."""
    return [bool(not math.isnan(float(a)) and float(a) < alpha) for a in adjusted]

"""The typology statistics against hand cases: Holm's adjustment, the partial rank
correlation, the bootstrap interval over languages, and the fixed-layer analysis with its
summary lines (never a star on a raw p)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probe.analysis.crosslingual.correlation import (
    bootstrap_correlation,
    correlate,
    partial_spearman,
    spearman_exact_p,
)
from probe.analysis.crosslingual.typology import DISTANCE_KINDS, default_layer, typology_tests
from probe.analysis.multiple import holm, min_spearman_p, significant
from probe.errors import ProbeError
from probe.results.render.map import typology_lines

# --- Holm ------------------------------------------------------------------------------------


def test_holm_hand_case() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert significant(adjusted) == [True, False, False, True]


def test_holm_keeps_nan_and_does_not_count_it() -> None:
    adjusted = holm([0.01, math.nan, 0.04])
    np.testing.assert_allclose(adjusted, [0.02, math.nan, 0.04])  # m = 2, not 3
    assert significant(adjusted) == [True, False, True]
    assert np.isnan(holm([math.nan, math.nan])).all()
    assert holm([]).shape == (0,)


def test_holm_caps_at_one_and_keeps_the_raw_order() -> None:
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    p = np.random.default_rng(0).uniform(size=20)
    adjusted = holm(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()  # monotone in the raw p
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def test_smallest_spearman_p_is_that_of_a_perfect_ordering() -> None:
    assert min_spearman_p(4) == pytest.approx(2 / 24)
    assert spearman_exact_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(min_spearman_p(4))
    assert math.isnan(min_spearman_p(2))


# --- partial rank correlation ----------------------------------------------------------------


def _three_correlation_formula(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    def r(a: np.ndarray, b: np.ndarray) -> float:
        return float(stats.spearmanr(a, b).statistic)

    rxy, rxz, ryz = r(x, y), r(x, z), r(y, z)
    return (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))


def test_partial_spearman_matches_the_formula_and_its_t_test() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=40)
    x, y = z + rng.normal(size=40), 0.5 * z + rng.normal(size=40)
    part = partial_spearman(x, y, z)
    assert part.n == 40
    assert part.rho == pytest.approx(_three_correlation_formula(x, y, z), abs=1e-10)
    t = part.rho * math.sqrt(37 / (1 - part.rho**2))
    assert part.p == pytest.approx(2 * stats.t.sf(abs(t), 37))


def test_partial_spearman_removes_a_shared_confound() -> None:
    """x and y both follow z and nothing else: strongly correlated raw, not once z is out."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=300)
    x, y = z + 0.3 * rng.normal(size=300), z + 0.3 * rng.normal(size=300)
    assert correlate(x, y).spearman_rho > 0.8
    assert abs(partial_spearman(x, y, z).rho) < 0.15
    # ... but a real x -> y link survives the control
    y2 = z + x + 0.3 * rng.normal(size=300)
    assert partial_spearman(x, y2, z).rho > 0.5


def test_partial_spearman_undefined_cases_are_nan() -> None:
    assert math.isnan(partial_spearman([1, 2, 3], [3, 1, 2], [1, 1, 2]).rho)  # n < 4
    assert math.isnan(partial_spearman([1, 2, 3, 4], [1, 2, 3, 5], [7, 7, 7, 7]).rho)  # const z
    assert math.isnan(partial_spearman([1, 2, 3, 4], [4, 1, 3, 2], [1, 2, 3, 4]).rho)  # z = x
    # NaN pairs drop out: the same as without them
    with_nan = partial_spearman([1, 2, math.nan, 4, 5, 6], [2, 1, 3, 5, 4, 6], [1, 3, 2, 4, 6, 5])
    without = partial_spearman([1, 2, 4, 5, 6], [2, 1, 5, 4, 6], [1, 3, 4, 6, 5])
    assert with_nan == without and with_nan.n == 5


# --- bootstrap over languages ----------------------------------------------------------------


def test_bootstrap_interval_small_n_is_nan_and_nan_pairs_drop() -> None:
    assert all(math.isnan(v) for v in bootstrap_correlation([1, 2, 3], [1, 3, 2]))
    x = np.arange(12.0)
    y = x + np.random.default_rng(3).normal(size=12)
    low, high = bootstrap_correlation(x, y, 500, seed=0)
    assert low <= correlate(x, y).spearman_rho <= high
    assert (low, high) == bootstrap_correlation(x, y, 500, seed=0)  # seeded
    xs, ys = np.append(x, math.nan), np.append(y, 1.0)
    assert bootstrap_correlation(xs, ys, 500, seed=0) == (low, high)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_correlation(x, y, 0)


def test_bootstrap_interval_covers_the_true_rank_correlation_at_about_the_nominal_rate() -> None:
    """Bivariate normal with r = 0.5: Spearman's population rho is 6/pi asin(r/2)."""
    rng = np.random.default_rng(4)
    r, n, sims = 0.5, 40, 150
    truth = 6 / math.pi * math.asin(r / 2)
    cov = [[1, r], [r, 1]]
    hits = 0
    for i in range(sims):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        low, high = bootstrap_correlation(x, y, 300, seed=i)
        hits += low <= truth <= high
    assert 0.85 <= hits / sims <= 1.0


def test_bootstrap_of_the_partial_needs_one_more_point() -> None:
    x, y, z = [1.0, 2, 3, 4], [2.0, 1, 4, 3], [1.0, 3, 2, 4]
    assert all(math.isnan(v) for v in bootstrap_correlation(x, y, 100, z=z))


# --- the fixed-layer analysis ----------------------------------------------------------------


def _planted(n: int, seed: int = 0) -> tuple[dict[int, dict[str, float]], dict]:
    """Scores that fall with syntactic distance at every layer (strongest at layer 2); the
    other kinds are noise."""
    rng = np.random.default_rng(seed)
    langs = [f"l{i}" for i in range(n)]
    dist = {(t, k): float(rng.uniform()) for t in langs for k in DISTANCE_KINDS}
    scores = {layer: {t: 1 - (layer + 1) * dist[(t, "syntactic")] + 0.3 * rng.normal()
                      for t in langs} for layer in range(4)}  # fmt: skip
    return scores, dist


def test_default_typology_layer_is_two_thirds_up() -> None:
    assert [default_layer(d) for d in (12, 6, 24, 2, 1)] == [8, 4, 16, 1, 1]
    with pytest.raises(ProbeError, match="at least one"):
        default_layer(0)


def test_typology_tests_fixed_layer_holm_and_sweep() -> None:
    scores, dist = _planted(25)
    result = typology_tests(scores, dist, DISTANCE_KINDS, 2, n_boot=300)
    assert result.n == 25 and len(result.tests) == 4 * len(DISTANCE_KINDS)
    fixed = {t.distance: t for t in result.at(2)}
    syn = fixed["syntactic"]
    assert syn.correlation.spearman_rho < -0.6 and syn.p_holm < 0.05
    assert syn.ci_low <= syn.correlation.spearman_rho <= syn.ci_high < 0
    for t in result.tests:
        if t.layer == 2:
            assert t.p_holm >= t.correlation.spearman_p  # Holm only raises a p
            assert t.p_holm_sweep >= t.p_holm  # the larger family raises it further
        else:
            assert math.isnan(t.p_holm) and math.isnan(t.ci_low)  # sweep: no CI, no fixed p
    raw = [t.correlation.spearman_p for t in result.at(2)]
    np.testing.assert_allclose([t.p_holm for t in result.at(2)], holm(raw))
    assert result.partial is not None and result.partial.layer == 2
    assert result.partial.correlation.rho < -0.5  # genetic (noise here) explains none of it
    with pytest.raises(ProbeError, match="typology layer 9"):
        typology_tests(scores, dist, DISTANCE_KINDS, 9)


def test_typology_tests_use_only_targets_with_every_distance() -> None:
    scores, dist = _planted(10)
    del dist[("l0", "genetic")]
    result = typology_tests(scores, dist, DISTANCE_KINDS, 1, n_boot=50)
    assert "l0" not in result.languages and result.n == 9
    assert {t.correlation.n for t in result.tests} == {9}
    no_partial = typology_tests(scores, dist, ("syntactic", "geographic"), 1, n_boot=50)
    assert no_partial.partial is None


def test_summary_lines_star_only_on_holm_and_warn_at_small_n() -> None:
    scores, dist = _planted(4, seed=5)
    small = typology_tests(scores, dist, DISTANCE_KINDS, 2, n_boot=50)
    text = "\n".join(typology_lines(small, "accuracy", 4))
    assert "2/4! = 0.0833" in text and "cannot be significant" in text
    assert not any(line.endswith(" *") for line in text.splitlines())
    assert "exploratory sweep" in text and "not a test of any one layer" in text
    # A raw p below 0.05 that Holm lifts above it gets no star.
    scores, dist = _planted(25)
    big = typology_tests(scores, dist, DISTANCE_KINDS, 2, n_boot=50)
    lines = typology_lines(big, "accuracy", 4)
    for t, line in zip(big.at(2), lines[2:], strict=False):
        assert line.split()[0] == t.distance
        assert line.endswith(" *") == (t.p_holm < 0.05)
    assert any(line.strip().startswith("syntactic") and line.endswith(" *") for line in lines)

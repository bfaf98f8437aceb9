"""Least squares with a cross-validated ridge: with d > n it no longer interpolates."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.crosslingual.alignment import (
    RIDGE_GRID,
    choose_ridge,
    fit_least_squares,
    heldout_alignment,
    prepare,
)

RNG = np.random.default_rng(0)


def _pairs(n: int, d: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(size=(n, d))
    w = RNG.normal(size=(d, d)) / np.sqrt(d)
    return x, x @ w + noise * RNG.normal(size=(n, d))


def test_with_more_dimensions_than_pairs_the_chosen_ridge_stops_interpolation() -> None:
    x, y = _pairs(60, 120, noise=1.0)
    x, y = prepare(x), prepare(y)
    plain = fit_least_squares(x, y)
    # Unregularised: the fitting pairs almost exactly (centring leaves rank n - 1).
    assert np.linalg.norm(plain(x) - y) < 0.05 * np.linalg.norm(y)
    alpha = choose_ridge(x, y)
    assert alpha in RIDGE_GRID and alpha > 0
    ridged = fit_least_squares(x, y, alpha)
    assert np.linalg.norm(ridged(x) - y) > 0.1 * np.linalg.norm(y)
    assert np.linalg.norm(ridged.weight) < np.linalg.norm(plain.weight)


def test_cross_validation_picks_a_small_ridge_for_clean_data_and_a_large_one_for_noise() -> None:
    x, y = _pairs(400, 16, noise=0.01)
    clean = choose_ridge(x, y)
    x, _ = _pairs(400, 16, noise=0.0)
    noise = choose_ridge(x, RNG.normal(size=(400, 16)))  # nothing to learn
    assert clean <= 1.0 and noise == max(RIDGE_GRID)


def test_heldout_alignment_reports_the_ridge_it_used() -> None:
    x, eng = _pairs(120, 200, noise=0.5)
    out = heldout_alignment(x, eng, methods=("lstsq",))
    assert out["lstsq"]["ridge"] in RIDGE_GRID and out["lstsq"]["ridge"] > 0
    fixed = heldout_alignment(x, eng, methods=("lstsq",), ridge=0.0)
    assert fixed["lstsq"]["ridge"] == 0.0
    assert set(out["lstsq"]) == {"xx2en", "en2xx", "mean", "ridge"}
    assert out["lstsq"]["mean"] >= fixed["lstsq"]["mean"]
    with pytest.raises(ValueError, match="at least 2 pairs"):
        choose_ridge(x[:1], eng[:1])

"""Held-out alignment centres the scored pairs by the fitting pairs' means, never their own."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.crosslingual.alignment import (
    METHODS,
    NetConfig,
    fit_procrustes,
    heldout_alignment,
    split_pairs,
)
from probe.analysis.crosslingual.retrieval import retrieval_both_ways, unit_rows
from tests.helpers import planted_pairs

NET = NetConfig(steps=300, lr=1e-2)


def test_both_parts_are_centred_by_the_fitting_parts_means() -> None:
    """By hand: the baseline and the Procrustes score from vectors shifted by the first half's
    per-language means, not by the test half's own."""
    x, eng = planted_pairs(160, 12, noise=1.0, seed=1)
    fit, test = split_pairs(160)
    mx, me = x[fit].mean(0), eng[fit].mean(0)
    x_fit, e_fit = unit_rows(x[fit] - mx), unit_rows(eng[fit] - me)
    x_test, e_test = unit_rows(x[test] - mx), unit_rows(eng[test] - me)
    out = heldout_alignment(x, eng, methods=("procrustes",))
    assert out["none"] == retrieval_both_ways(x_test, e_test)
    assert out["procrustes"] == retrieval_both_ways(fit_procrustes(x_fit, e_fit)(x_test), e_test)
    own = retrieval_both_ways(
        unit_rows(x[test] - x[test].mean(0)), unit_rows(eng[test] - eng[test].mean(0))
    )
    assert own != out["none"]  # the case tells the two centrings apart


def test_alignment_fails_if_the_scored_pairs_entered_the_centring_mean() -> None:
    """Shift the test half of one language far away. Centring the test half by its own mean
    (the transductive way) cancels the shift and retrieval stays high; the fitting half's mean
    cannot, so the shifted sentences, as queries, all point the same way, before and after
    every map, and retrieval collapses."""
    x, eng = planted_pairs(200, 16, noise=0.3, seed=6)
    fit, test = split_pairs(200)
    shifted = x.copy()
    shifted[test] += 40.0

    def transductive(xx: np.ndarray) -> dict[str, dict[str, float]]:
        def own(a: np.ndarray) -> np.ndarray:
            return unit_rows(a - a.mean(0))

        x_fit, e_fit, x_test, e_test = own(xx[fit]), own(eng[fit]), own(xx[test]), own(eng[test])
        rotation = fit_procrustes(x_fit, e_fit)
        return {
            "none": retrieval_both_ways(x_test, e_test),
            "procrustes": retrieval_both_ways(rotation(x_test), e_test),
        }

    leaky = transductive(shifted)
    assert leaky["none"]["xx2en"] > 0.9 and leaky["procrustes"]["xx2en"] > 0.9
    clean = heldout_alignment(x, eng, net=NET)  # no shift: the signal is there
    assert all(clean[m]["xx2en"] > 0.9 for m in ("none", *METHODS)), clean
    out = heldout_alignment(shifted, eng, net=NET)
    assert all(out[m]["xx2en"] < 0.05 for m in ("none", *METHODS)), out


def test_the_fitting_half_alone_decides_the_maps_and_the_ridge() -> None:
    """Moving the test half changes nothing the maps were fitted on: the cross-validated ridge
    is the same whatever the test half holds."""
    x, eng = planted_pairs(120, 24, noise=0.8, seed=2)
    _, test = split_pairs(120)
    moved = x.copy()
    moved[test] = np.random.default_rng(3).normal(size=moved[test].shape)
    ridge = heldout_alignment(x, eng, methods=("lstsq",))["lstsq"]["ridge"]
    assert heldout_alignment(moved, eng, methods=("lstsq",))["lstsq"]["ridge"] == ridge
    with pytest.raises(ValueError, match="too few"):
        heldout_alignment(x[:3], eng[:3])

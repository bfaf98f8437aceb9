"""Gain against distance (`probe intermediate --distance`): the table, the crossed bootstrap."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from probe.analysis.crosslingual import gain_distance
from probe.analysis.crosslingual.correlation import bootstrap_correlation
from probe.analysis.crosslingual.gain_distance import (
    crossed_bootstrap_spearman,
    pair_distances,
)
from probe.analysis.crosslingual.typology import DISTANCE_KINDS, language_distance
from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments.intermediate_distance import (
    analyse_distance,
    distance_outputs,
    distance_settings,
    gain_points,
    run_distances,
)
from probe.experiments.intermediate_plan import Configuration
from probe.results.rows import Row
from probe.results.table import Table

TARGETS = ("de", "ja", "tr")
# Two configurations with an intermediate stage: English (udpos's default source) and one
# multilingual stage in German and French (their mean distance); "none" has none.
PLAN = (Configuration(()), Configuration(("udpos",)), Configuration(("panx:de+fr",)))


def _gain_rows(values: dict[tuple[str, str], float], metric: str = "accuracy") -> Table:
    """Per-language gain rows as `configuration_gains` writes them (seed mean, interval),
    plus a family aggregate and a source row that the points must not pick up."""
    rows = []
    for (conf, lang), v in values.items():
        rows.append(Row("mlp", conf, lang, f"gain_{metric}", v, config=conf,
                        ci_low=v - 0.01, ci_high=v + 0.01))  # fmt: skip
        rows.append(Row("mlp", conf, lang, f"gain_{metric}_sd", 0.002, config=conf, stat="sd"))
    for conf in {c for c, _ in values}:
        rows.append(Row("mlp", conf, "Germanic", f"gain_{metric}", 9.0, config=conf,
                        group="Germanic"))  # fmt: skip
        rows.append(Row("mlp", conf, "en", f"gain_{metric}", 9.0, config=conf))
    return Table(rows)


def test_distance_table_on_a_hand_case() -> None:
    """Two configurations x three targets: every kind's distance is the archives' own (the
    mean over a multilingual stage's languages), the gain and its interval the gain row's;
    'none', the source and aggregate rows give no point."""
    gains = {(c, t): 0.01 * (i + 3 * j) for j, c in enumerate(("udpos", "panx:de+fr"))
             for i, t in enumerate(TARGETS)}  # fmt: skip
    rows = _gain_rows(gains)
    distances = run_distances(PLAN, ("en", *TARGETS))
    assert distances.intermediate == ("en", "de", "fr") and not distances.missing
    points, dropped = gain_points(get_task("pos"), rows, PLAN, distances, "en")
    assert not dropped
    assert len(points) == 2 * len(TARGETS) * len(DISTANCE_KINDS)
    assert {p.config for p in points} == {"udpos", "panx:de+fr"}
    assert {p.target for p in points} == set(TARGETS)
    for p in points:
        if p.config == "udpos":
            want = language_distance("en", p.target, p.kind)
        else:
            want = np.mean([language_distance(x, p.target, p.kind) for x in ("de", "fr")])
        assert p.distance == pytest.approx(want, abs=1e-12)
        assert p.gain == gains[(p.config, p.target)]
        assert p.ci_low == pytest.approx(p.gain - 0.01) and p.gain_sd == 0.002
    # de's own distance to the German+French stage: half of (0, d(fr, de)).
    syn = next(p for p in points if (p.config, p.target, p.kind) == ("panx:de+fr", "de",
                                                                    "syntactic"))  # fmt: skip
    assert syn.distance == pytest.approx(language_distance("fr", "de", "syntactic") / 2)


def test_pair_target_metric_is_read(tmp_path: Path) -> None:
    """A pair target (pawsx: accuracy) gives points from its own gain rows; a metric the
    rows do not have gives none."""
    rows = _gain_rows({("udpos", t): 0.1 for t in TARGETS})
    distances = run_distances(PLAN, ("en", *TARGETS))
    points, _ = gain_points(get_task("pawsx"), rows, PLAN, distances, "en")
    assert len(points) == len(TARGETS) * len(DISTANCE_KINDS)
    assert not gain_points(get_task("ner"), rows, PLAN, distances, "en")[0]  # entity_f1


def test_planted_correlation_equals_scipys(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a planted distance function, each kind's rho is scipy's Spearman on the same
    points, its interval brackets it, and n counts the points."""
    rng = np.random.default_rng(3)
    langs = ["en", "de", "fr", "ja", "tr", "es", "ru"]
    fake = {(a, b, k): (0.0 if a == b else float(rng.uniform(0.1, 1.0)))
            for a in langs for b in langs for k in DISTANCE_KINDS}  # fmt: skip

    def planted(a: str, b: str, kind: str) -> float:
        if a == "qq" or b == "qq":
            raise ProbeError("unknown URIEL language 'qq'. Did you mean 'qu'? Available: aa")
        return fake[(a, b, kind)]

    monkeypatch.setattr(gain_distance, "language_distance", planted)
    plan = (Configuration(()), Configuration(("udpos",)), Configuration(("panx:de",)),
            Configuration(("panx:fr",)))  # fmt: skip
    targets = ("ja", "tr", "es", "ru")
    gains = {}
    for conf in plan[1:]:
        for t in targets:
            d = fake[(conf.languages[0], t, "syntactic")]
            gains[(conf.name, t)] = 0.5 - d + float(rng.normal(0, 0.05))
    distances = run_distances(plan, ("en", *targets))
    found = analyse_distance(get_task("pos"), _gain_rows(gains), plan, distances, "en", n_boot=300)
    assert [c.kind for c in found.correlations] == list(DISTANCE_KINDS)
    for c in found.correlations:
        mine = [p for p in found.points if p.kind == c.kind]
        rho = stats.spearmanr([p.distance for p in mine], [p.gain for p in mine]).statistic
        assert c.rho == pytest.approx(rho, abs=1e-12)
        assert c.n == len(mine) == 12 and (c.n_configs, c.n_targets) == (3, 4)
        assert c.n_languages == 3 and c.n_language_sets == 3
        assert c.ci_low <= c.rho <= c.ci_high
    syntactic = found.correlations[0]
    assert syntactic.rho < -0.8 and syntactic.ci_high < 0  # the planted one
    # A language URIEL lacks is recorded for every kind, its pairs left out, and reported.
    with_missing = pair_distances(["en", "qq"], ["de"])
    assert set(with_missing.missing) == {("qq", k) for k in DISTANCE_KINDS}
    assert with_missing.missing[("qq", "syntactic")] == "unknown URIEL language 'qq'"
    assert all(a != "qq" for a, _, _ in with_missing.values)
    assert len(with_missing.values) == len(DISTANCE_KINDS)


def test_missing_languages_are_logged_and_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A target URIEL lacks: a warning, settings' "missing", a reason in distances.csv, and
    no gain_vs_distance output without --distance."""
    plan = (Configuration(()), Configuration(("udpos",)))
    with caplog.at_level(logging.WARNING):
        record = distance_settings(plan, ("en", "de", "qqq"))
    assert "qqq" in caplog.text and set(record["missing"]["qqq"]) == set(DISTANCE_KINDS)
    assert record["intermediate_languages"] == ["en"] and record["pairs"] == 2
    text = distance_outputs(get_task("pos"), Table([]), plan, ("en", "de", "qqq"), "en",
                            tmp_path, "key", analyse=False)  # fmt: skip
    assert text == "" and not (tmp_path / "gain_vs_distance.csv").exists()
    with (tmp_path / "distances.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 * len(DISTANCE_KINDS)
    lost = [r for r in table if r["target_lang"] == "qqq"]
    assert all(r["distance"] == "" and "qqq" in r["missing"] for r in lost)
    de = next(r for r in table if (r["target_lang"], r["kind"]) == ("de", "genetic"))
    assert float(de["distance"]) == pytest.approx(language_distance("en", "de", "genetic"))


def test_crossed_bootstrap_reduces_to_the_pairs_bootstrap() -> None:
    """One configuration: resampling targets is the ordinary bootstrap over languages (the
    two intervals agree up to Monte Carlo error); under 4 points there is no interval."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=12)
    y = -x + rng.normal(0, 0.3, size=12)
    targets = [f"t{i}" for i in range(12)]
    crossed = crossed_bootstrap_spearman(x, y, ["c"] * 12, targets, 4000, seed=1)
    pairs = bootstrap_correlation(x, y, 4000, seed=2)
    assert crossed == pytest.approx(pairs, abs=0.06)
    assert all(np.isnan(crossed_bootstrap_spearman(x[:3], y[:3], ["c"] * 3, targets[:3])))


def test_crossed_bootstrap_is_wider_when_points_share_a_target() -> None:
    """Two configurations with the same distances and a gain set by the target: 12 points
    but 6 independent targets. Resampling points treats them as 12 and gives a narrower
    interval than resampling targets."""
    rng = np.random.default_rng(5)
    d = rng.uniform(size=6)
    effect = -d + rng.normal(0, 0.4, size=6)
    x = np.concatenate([d, d])
    y = np.concatenate([effect, effect]) + rng.normal(0, 0.01, size=12)
    configs = ["a"] * 6 + ["b"] * 6
    targets = [f"t{i}" for i in range(6)] * 2
    low, high = crossed_bootstrap_spearman(x, y, configs, targets, 2000, seed=0)
    naive_low, naive_high = bootstrap_correlation(x, y, 2000, seed=0)
    assert high - low > 1.2 * (naive_high - naive_low)

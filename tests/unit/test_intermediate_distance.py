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
    correlate_points,
    crossed_bootstrap_spearman,
    language_set,
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
# Two single-stage configurations: English (udpos's default source) and one multilingual
# stage in German and French (their mean distance); a two-stage set of both; "none" has none.
PLAN = (Configuration(()), Configuration(("udpos",)), Configuration(("panx:de+fr",)),
        Configuration(("udpos", "panx:de+fr")))  # fmt: skip


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
    """Three configurations x three targets: every kind's distance is the archives' own
    (the mean over a configuration's languages), the gain and its interval the gain row's;
    each point has its task and stage count, the two-stage set is not used; 'none', the
    source and aggregate rows give no point."""
    names = ("udpos", "panx:de+fr", "udpos>panx:de+fr")
    gains = {(c, t): 0.01 * (i + 3 * j) for j, c in enumerate(names)
             for i, t in enumerate(TARGETS)}  # fmt: skip
    rows = _gain_rows(gains)
    distances = run_distances(PLAN, ("en", *TARGETS))
    assert distances.intermediate == ("en", "de", "fr") and not distances.missing
    points, dropped = gain_points(get_task("pos"), rows, PLAN, distances, "en")
    assert not dropped
    assert len(points) == 3 * len(TARGETS) * len(DISTANCE_KINDS)
    assert {p.config for p in points} == set(names)
    assert {p.target for p in points} == set(TARGETS)
    want_task = {"udpos": ("udpos", 1), "panx:de+fr": ("panx", 1),
                 "udpos>panx:de+fr": ("udpos>panx", 2)}  # fmt: skip
    for p in points:
        assert (p.task, p.stages) == want_task[p.config] and p.used == (p.stages == 1)
        langs = {"udpos": ("en",), "panx:de+fr": ("de", "fr")}.get(p.config, ("en", "de", "fr"))
        assert p.languages == langs
        want = np.mean([language_distance(x, p.target, p.kind) for x in langs])
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
    # panx in three languages; udpos in English only, offset by a task effect; a two-stage
    # set whose gain ignores distance. Pooled, the task offset and the set would blur rho.
    plan = (Configuration(()), Configuration(("panx",)), Configuration(("panx:de",)),
            Configuration(("panx:fr",)), Configuration(("udpos",)),
            Configuration(("panx:de", "udpos")))  # fmt: skip
    targets = ("ja", "tr", "es", "ru")
    gains = {}
    for conf in plan[1:]:
        for t in targets:
            d = fake[(conf.languages[0], t, "syntactic")]
            offset = {"udpos": 2.0, "panx:de>udpos": -3.0 + 2 * d}.get(conf.name, 0.0)
            gains[(conf.name, t)] = 0.5 - d + offset + float(rng.normal(0, 0.05))
    distances = run_distances(plan, ("en", *targets))
    found = analyse_distance(get_task("pos"), _gain_rows(gains), plan, distances, "en", n_boot=300,
                             seed=11)  # fmt: skip
    assert [(c.task, c.kind) for c in found.correlations] == [
        (t, k) for t in ("panx", "udpos") for k in DISTANCE_KINDS
    ]
    assert found.multi_stage == ["panx:de>udpos"]
    for c in found.correlations:
        mine = [p for p in found.points if p.kind == c.kind and p.task == c.task]
        assert all(p.used for p in mine)
        rho = stats.spearmanr([p.distance for p in mine], [p.gain for p in mine]).statistic
        assert c.rho == pytest.approx(rho, abs=1e-12)
        sizes = (3, 3, ("en", "de", "fr")) if c.task == "panx" else (1, 1, ("en",))
        assert c.n == len(mine) == 4 * sizes[0] and c.n_targets == 4
        assert (c.n_configs, c.n_language_sets, c.languages) == sizes
        if c.task == "panx":
            assert c.ci_low <= c.rho <= c.ci_high
    syntactic = found.correlations[0]
    assert syntactic.rho < -0.8 and syntactic.ci_high < 0  # the planted one
    # The interval is the crossed bootstrap over language sets x targets, with the seed given
    # (each correlation its own stream: seed + its index).
    mine = [p for p in found.points if p.task == "panx" and p.kind == "syntactic"]
    want = crossed_bootstrap_spearman([p.distance for p in mine], [p.gain for p in mine],
                                      [language_set(p.languages) for p in mine],
                                      [p.target for p in mine], 300, seed=11)  # fmt: skip
    assert (syntactic.ci_low, syntactic.ci_high) == want
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
                            tmp_path, "key", analyse=False, seed=0)  # fmt: skip
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


def test_rows_cluster_by_language_set_not_configuration() -> None:
    """Two spellings of one language set (`udpos:en+de`, `udpos:de+en`) are two
    configurations but one x level: one row cluster of the bootstrap, so the interval is
    the crossed bootstrap's over 2 sets x 4 targets, not over 3 configurations."""
    targets = ("ja", "tr", "ru", "fr")
    plan = (Configuration(()), Configuration(("udpos:en+de",)), Configuration(("udpos:de+en",)),
            Configuration(("udpos",)))  # fmt: skip
    rng = np.random.default_rng(1)
    gains = {(c.name, t): float(rng.normal(0, 0.1)) for c in plan[1:] for t in targets}
    distances = run_distances(plan, ("en", *targets))
    points, _ = gain_points(get_task("pos"), _gain_rows(gains), plan, distances, "en")
    (first, *_) = correlate_points(points, ("syntactic",), n_boot=500, seed=4)
    assert (first.task, first.n_configs, first.n_language_sets, first.n) == ("udpos", 3, 2, 12)
    mine = [p for p in points if p.kind == "syntactic"]
    xy = [p.distance for p in mine], [p.gain for p in mine]
    tgt = [p.target for p in mine]
    by_set = crossed_bootstrap_spearman(*xy, [language_set(p.languages) for p in mine], tgt,
                                        500, seed=4)  # fmt: skip
    by_config = crossed_bootstrap_spearman(*xy, [p.config for p in mine], tgt, 500, seed=4)
    assert (first.ci_low, first.ci_high) == by_set != by_config


def test_summary_and_csv_per_task(tmp_path: Path) -> None:
    """The summary has a line per (task, kind), each task's distinct intermediate languages,
    the one-set note only for the task with one set, the multi-stage count; the CSV keeps
    every point with task, stages and used; the seed reaches the bootstrap."""
    targets = ("ja", "tr", "ru", "es")
    plan = (Configuration(()), Configuration(("panx",)), Configuration(("panx:de",)),
            Configuration(("udpos",)), Configuration(("panx", "udpos")))  # fmt: skip
    rng = np.random.default_rng(2)
    gains = {(c.name, t): float(rng.normal(0, 0.1)) for c in plan[1:] for t in targets}
    rows = _gain_rows(gains)
    texts = [distance_outputs(get_task("pos"), rows, plan, ("en", *targets), "en",
                              tmp_path / str(seed), "key", analyse=True, seed=seed)
             for seed in (3, 3, 4)]  # fmt: skip
    text = texts[0]
    assert texts[1] == text != texts[2]  # the seed, and only it, moves the intervals
    for kind in DISTANCE_KINDS:
        assert f"  panx   {kind:<14}rho " in text and f"  udpos  {kind:<14}rho " in text
    assert "(2 configurations in 2 language sets x 4 targets)" in text
    assert "  panx: 2 distinct intermediate languages (en, de)\n" in text
    assert (
        "  udpos: 1 distinct intermediate language (en); one language set, so its "
        "correlation is only across target languages"
    ) in text
    assert "multi-stage configurations left out of the correlations" in text
    assert ": 1 (panx>udpos)" in text
    with (tmp_path / "3" / "gain_vs_distance.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 * len(targets) * len(DISTANCE_KINDS)
    sets = {(r["config"], r["task"], r["stages"], r["used"]) for r in table}
    assert sets == {
        ("panx", "panx", "1", "1"),
        ("panx:de", "panx", "1", "1"),
        ("udpos", "udpos", "1", "1"),
        ("panx>udpos", "panx>udpos", "2", "0"),
    }
    assert (tmp_path / "3" / "gain_vs_distance.png").stat().st_size > 0

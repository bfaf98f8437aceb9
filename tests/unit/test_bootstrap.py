"""Per-item statistics reproduce every metric; the paired bootstrap covers at its level."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.bootstrap import Interval, PairedBootstrap
from probe.analysis.item_scores import item_stats, metric_from_sums
from probe.analysis.metrics import score

NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
UPOS = ["ADJ", "ADP", "NOUN", "SCONJ", "SYM", "VERB", "PUNCT"]


def _tagging(labels: list[str], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0, *rng.integers(0, 12, 200)])  # empty sentences included
    gold = rng.integers(0, len(labels), offsets[-1])
    pred = np.where(rng.random(len(gold)) < 0.3, rng.integers(0, len(labels), len(gold)), gold)
    return pred, gold, offsets


@pytest.mark.parametrize(("metric", "labels"), [("accuracy", UPOS), ("pos_f1", UPOS),
                                                ("entity_f1", NER)])  # fmt: skip
def test_summed_item_statistics_give_the_metric(metric: str, labels: list[str]) -> None:
    pred, gold, offsets = _tagging(labels, seed=1)
    probs = np.eye(len(labels))[pred]
    task_metric = "accuracy" if metric == "accuracy" else metric
    expected = score(task_metric, probs, gold, offsets=offsets, label_names=labels)[metric]
    stats = item_stats(metric, pred, gold, offsets=offsets, label_names=labels)
    assert stats.shape[0] == len(offsets) - 1  # one row per sentence
    assert metric_from_sums(metric, stats.sum(axis=0)) == pytest.approx(expected, abs=1e-12)


def test_accuracy_statistics_skip_unlabelled_items() -> None:
    stats = item_stats("accuracy", np.array([0, 1, 1]), np.array([0, -100, 0]))
    assert stats.tolist() == [[1, 1], [0, 0], [0, 1]]


def _accuracy_system(correct: np.ndarray) -> dict[str, list[np.ndarray]]:
    return {"xx": [np.stack([correct, np.ones_like(correct)], axis=1)]}


def test_interval_covers_a_known_difference_at_about_the_nominal_rate() -> None:
    """Two systems of true accuracies 0.70 and 0.66 on paired items (a shared item
    difficulty makes them correlated): the 95% interval of the difference should hold the
    true 0.04 in about 95% of simulated test sets (binomial sd over 200 runs: 1.5 points)."""
    rng = np.random.default_rng(0)
    covered, n_runs, n_items = 0, 200, 400
    for run in range(n_runs):
        easy = rng.random(n_items) < 0.5  # shared difficulty: p(correct) 0.9 / 0.5 for A
        a = (rng.random(n_items) < np.where(easy, 0.90, 0.50)).astype(np.int64)
        b = (rng.random(n_items) < np.where(easy, 0.86, 0.46)).astype(np.int64)
        interval = PairedBootstrap(n_boot=400, seed=run).delta(
            _accuracy_system(a), _accuracy_system(b), "accuracy", ["xx"]
        )
        covered += interval.low <= 0.04 <= interval.high
    assert 0.90 <= covered / n_runs <= 0.99


def test_identical_systems_give_a_zero_width_interval_and_paired_differences_cancel() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.7).astype(np.int64)
    boot = PairedBootstrap(n_boot=200)
    same = boot.delta(_accuracy_system(a), _accuracy_system(a.copy()), "accuracy", ["xx"])
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes_zero
    one_better = a.copy()
    one_better[np.flatnonzero(a == 0)[:15]] = 1  # 15 more items right, none worse
    better = boot.delta(_accuracy_system(one_better), _accuracy_system(a), "accuracy", ["xx"])
    assert better.estimate == pytest.approx(15 / 300)
    assert better.low > 0 and better.excludes_zero


def test_seed_spread_widens_the_interval() -> None:
    """The same items, one system whose seeds disagree: its interval is wider than with one
    seed, because the seeds are resampled too."""
    rng = np.random.default_rng(5)
    items = [(rng.random(500) < p).astype(np.int64) for p in (0.6, 0.7, 0.8)]
    stats = [np.stack([c, np.ones_like(c)], axis=1) for c in items]
    boot = PairedBootstrap(n_boot=500)
    one = boot.score({"xx": stats[1:2]}, "accuracy", ["xx"])
    three = boot.score({"xx": stats}, "accuracy", ["xx"])
    assert three.estimate == pytest.approx(np.mean([c.mean() for c in items]))
    assert three.high - three.low > 1.5 * (one.high - one.low)


def test_mismatched_items_are_refused() -> None:
    boot = PairedBootstrap(n_boot=10)
    a = _accuracy_system(np.ones(10, dtype=np.int64))
    b = _accuracy_system(np.ones(11, dtype=np.int64))
    with pytest.raises(ValueError, match="same items"):
        boot.delta(a, b, "accuracy", ["xx"])


def test_interval_excludes_zero() -> None:
    assert Interval(1.0, 0.2, 1.5).excludes_zero
    assert Interval(-1.0, -2.0, -0.1).excludes_zero
    assert not Interval(0.1, -0.2, 0.4).excludes_zero


def test_delta_rows_give_the_seed_mean_the_seed_sd_and_an_interval_per_language_and_group() -> None:
    from probe.results.intervals import delta_rows, interval_text, mark
    from probe.results.items import ItemScores, ItemSet
    from probe.results.rows import Row

    rng = np.random.default_rng(0)
    items, a, b = [], [], []
    for lang in ("en", "de", "tr"):
        for seed in (0, 1):
            for system, p, out in (("a", 0.8, a), ("b", 0.6, b)):
                correct = (rng.random(300) < p + 0.02 * seed).astype(np.int64)
                row = Row(system, "1", lang, "accuracy", float(correct.mean()), seed=seed)
                out.append(row)
                items.append(ItemScores(row, np.stack([correct, np.ones_like(correct)], 1)))
    boot = PairedBootstrap(n_boot=200)
    rows = delta_rows(a, b, ItemSet(items), boot, "en", like=a[0], config="vs b")
    by = {(r.lang, r.stat): r for r in rows}
    assert set(by) == {(lang, stat) for lang in ("en", "de", "tr", "enf", "noenf", "targets")
                       for stat in ("", "sd")}  # fmt: skip
    mean_de = np.mean([r.value for r in a if r.lang == "de"]) - np.mean(
        [r.value for r in b if r.lang == "de"]
    )
    assert by[("de", "")].value == pytest.approx(mean_de)
    assert by[("targets", "")].value == pytest.approx(
        np.mean([by[("de", "")].value, by[("tr", "")].value])
    )
    assert by[("targets", "")].group == "targets" and by[("de", "")].config == "vs b"
    per_seed = [
        np.mean([x.value - y.value for x, y in zip(a, b, strict=True)
                 if x.seed == s and x.lang in ("de", "tr")])
        for s in (0, 1)
    ]  # fmt: skip
    assert by[("targets", "sd")].value == pytest.approx(np.std(per_seed, ddof=1))
    assert by[("targets", "")].ci_low < by[("targets", "")].value < by[("targets", "")].ci_high
    assert mark(by[("targets", "")]) == "*"  # a 20-point gap on 600 items per language
    no_items = delta_rows(a, b, ItemSet(), boot, "en", like=a[0], config="vs b")
    assert all(r.ci_low is None for r in no_items)
    assert interval_text(no_items[0]) == "n/a"

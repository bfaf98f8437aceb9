"""The paper table from planted per-system, per-language scores: the right rows, averages
(every scored language, the source included), Δs with intervals, best mark and the
published numbers at the paper's own k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.bootstrap import PairedBootstrap
from probe.data.tasks import get_task
from probe.experiments.paper import TaskRun, _task_rows
from probe.results.items import ItemSet, scored_items
from probe.results.render.paper import render_paper
from probe.results.rows import Row
from probe.results.table import Table

LANGS = ("en", "de", "ar")  # en the source; de in its family, ar outside
N = 400  # items per language


def _system(name: str, head: str, layers: tuple[int, ...], accuracy: dict[str, float],
            ) -> tuple[list[Row], list]:  # fmt: skip
    rows, items = [], []
    gold = np.zeros(N, dtype=np.int64)
    for lang, acc in accuracy.items():
        pred = np.where(np.arange(N) < round(acc * N), 0, 1)
        row = Row(head, name, lang, "accuracy", float((pred == gold).mean()), layers=layers,
                  seed=0)  # fmt: skip
        rows.append(row)
        items.append(scored_items(row, pred, gold))
    return rows, items


def _run() -> TaskRun:
    planted = {
        "baseline": ("dlfa", (12, 12), {"en": 0.80, "de": 0.60, "ar": 0.40}),
        "D8": ("dlfa", (8, 12), {"en": 0.80, "de": 0.70, "ar": 0.50}),  # +10 on targets
        "D11": ("dlfa", (11, 12), {"en": 0.82, "de": 0.62, "ar": 0.42}),  # +2 everywhere
        "single (dev)": ("dlfa", (), {"en": 0.81, "de": 0.66, "ar": 0.46}),
        "dlfa (dev)": ("dlfa", (), {"en": 0.82, "de": 0.62, "ar": 0.42}),
    }
    systems, entries = {}, []
    for name, (head, layers, acc) in planted.items():
        rows, items = _system(name, head, layers, acc)
        systems[name], entries = rows, entries + items
    return TaskRun(get_task("xnli"), "en", systems, ItemSet(entries), [Path("x")],
                   {"dlfa (dev)": {0: 11}, "single (dev)": {0: 9}})  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Table, str, list[dict]]:
    rows = Table(_task_rows(_run(), PairedBootstrap(200, seed=0)))
    settings = {"tasks": ["xnli"], "mode": "frozen", "model": "fake", "seeds": [0],
                "budgets": {"max_train_pairs": 2000}, "sources": {"xnli": "en"},
                "eval_splits": {"xnli": "dev"}}  # fmt: skip
    directory = tmp_path_factory.mktemp("paper")
    summary = render_paper(rows, settings, directory)
    return rows, summary, json.loads((directory / "paper_table.json").read_text())


def test_levels_average_every_scored_language_and_each_group(written: tuple) -> None:
    _, _, cells = written
    by = {c["system"]: c for c in cells}
    assert by["baseline"]["ours"] == pytest.approx(60.0)  # (80 + 60 + 40) / 3, en included
    assert by["baseline"]["ours_targets"] == pytest.approx(50.0)
    assert by["baseline"]["ours_enf"] == pytest.approx(60.0)  # de
    assert by["baseline"]["ours_noenf"] == pytest.approx(40.0)  # ar
    assert by["D8"]["ours"] == pytest.approx(200 / 3, abs=0.01)


def test_deltas_are_over_the_same_languages_as_the_scores(written: tuple) -> None:
    _, _, cells = written
    by = {c["system"]: c for c in cells}
    for system in ("D8", "D11", "dlfa (dev)"):
        diff = by[system]["ours"] - by["baseline"]["ours"]
        assert by[system]["delta_vs_baseline"] == pytest.approx(diff, abs=0.01)
        low, high = by[system]["delta_vs_baseline_ci_low"], by[system]["delta_vs_baseline_ci_high"]
        assert low <= by[system]["delta_vs_baseline"] <= high
    diff = by["D11"]["ours"] - by["single (dev)"]["ours"]
    assert by["D11"]["delta_vs_single"] == pytest.approx(diff, abs=0.01)
    # a 10-point gain on 400 items a language is beyond its interval; items are paired
    assert by["D8"]["delta_vs_baseline_ci_low"] > 0


def test_best_mark_and_published_numbers_sit_where_they_belong(written: tuple) -> None:
    _, summary, cells = written
    best = [c["system"] for c in cells if c["best"]]
    assert best == ["D8"]  # the highest D_k level (66.7 over D11's 62.0)
    paper = {c["system"]: c["paper"] for c in cells if c["paper"] is not None}
    assert paper == {"baseline": 65.40, "D11": 66.91}  # XNLI: the paper's best is D11
    assert "dev of 3 (ar, de, en)" in summary
    assert "Δ x100 over baseline, noenf average" in summary  # ar is out of en's family
    assert "dlfa (dev): chosen per seed on source dev: XNLI k=11" in summary
    assert "XNLI: beats baseline" in summary or "XNLI: does not differ from baseline" in summary

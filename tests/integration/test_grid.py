"""`probe grid` on a tiny cache: pairs, baseline, gains, families, workers, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.cache import SplitReader
from probe.data.languages import same_family
from probe.errors import ProbeError
from probe.experiments import grid as grid_module
from probe.experiments.base import RunOptions
from probe.experiments.grid import GridConfig, GridExperiment, parse_pairs
from probe.results.items import ItemScores
from probe.results.rows import Row
from probe.train import TrainConfig
from tests.helpers import SENTENCES, cache_fields, make_pawsx, make_ud


def test_parse_pairs() -> None:
    assert parse_pairs("last", 4) == [(0, 3), (1, 3), (2, 3)]
    assert parse_pairs("all", 3) == [(0, 1), (0, 2), (1, 2)]
    assert parse_pairs("2,1; 0,2", 3) == [(1, 2), (0, 2)]
    assert parse_pairs("1,last;0,last", 3) == [(1, 2), (0, 2)]
    with pytest.raises(ProbeError, match="outside 0..2"):
        parse_pairs("1,5", 3)
    with pytest.raises(ProbeError, match="expected 'i,j'"):
        parse_pairs("1-2", 3)


def test_families() -> None:
    assert same_family("de", "en") is True
    assert same_family("tr", "en") is False
    assert same_family("swa", "pcm") is False
    assert same_family("xx", "en") is None


@pytest.mark.parametrize("head, workers, seeds", [("dlfa", 1, (0, 1)), ("concat", 2, (3,))])
def test_grid_end_to_end_tiny(
    tmp_path: Path, tiny_bert: Path, head: str, workers: int, seeds: tuple[int, ...]
) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    config = GridConfig(**ex, head=head, train=TrainConfig(max_epochs=2), seeds=seeds,
                        n_boot=100)  # fmt: skip
    options = RunOptions(tmp_path / "res", workers=workers, progress=False)
    result = GridExperiment(config, options).run()
    rows = result.rows
    trained = set(rows.values("layers", metric="accuracy", head=head, config="", seed=seeds[0]))
    # the baseline, (k, last) for every lower k, and every single layer (j, j)
    assert trained == {(2, 2), (0, 2), (1, 2), (0, 0), (1, 1)}
    assert set(rows.values("layers", head="gated-last", metric="accuracy")) == {(2, 2)}
    concat = set(rows.values("layers", head="concat", metric="accuracy", config=""))
    assert concat == ({(0, 2), (1, 2)} if head == "dlfa" else trained)
    assert set(rows.values("seed", metric="accuracy", lang="de")) == {*seeds, None}
    chosen = rows.filter(metric="chosen_layer", seed=lambda s: s is not None)
    assert {r.config for r in chosen} == {"dlfa (dev)", "single (dev)"}
    assert all(r.value in (0, 1) for r in chosen.filter(config="dlfa (dev)"))
    gains = rows.filter(metric="gain_accuracy", stat="")
    against = set(gains.values("config"))
    expected = {"vs last", "vs gated-last", "vs single (dev)", "vs layer k"}
    assert against == (expected | {"vs concat"} if head == "dlfa" else expected)
    cells = {(r.layers, r.group or r.lang, r.config) for r in gains}
    assert ((0, 2), "de", "vs last") in cells and ((1, 2), "targets", "vs gated-last") in cells
    assert ((), "targets", "vs single (dev)") in cells  # the dev-chosen DLFA
    assert ((0, 2), "noenf", "vs last") not in cells  # de is the only target, and in-family
    assert all(r.ci_low is not None and r.ci_low <= r.value <= r.ci_high for r in gains)
    # a seed sd per Δ with two seeds, none with one
    assert bool(rows.filter(metric="gain_accuracy_sd", stat="sd")) == (len(seeds) > 1)
    if head == "dlfa":
        gate = [r.value for r in rows.filter(metric="gate_mean", seed=lambda s: s is not None)]
        assert len(gate) == len(seeds) * 6 and all(0 < g < 1 for g in gate)  # 5 DLFA + gated
    for name in ("results.csv", "results.json", "settings.json", "summary.txt", "grid_heatmap.png"):
        assert (result.directory / name).stat().st_size > 0
    over = f"mean ± sd over seeds {','.join(map(str, seeds))}"
    for text in ("vs gated-last", "vs single (dev)", "Does fusion help?", over):
        assert text in result.summary
    header = (result.directory / "results.csv").read_text().splitlines()[0].split(",")
    assert "ci_low" in header and "ci_high" in header


def test_seeds_change_training_and_nothing_else(tmp_path: Path, tiny_bert: Path) -> None:
    """Seed 0 of a two-seed run is the one-seed run, number for number (the data subsets and
    the dev hold-out are drawn with the first seed); seed 1 trains other heads."""
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    runs = {}
    for seeds in ((0,), (0, 1)):
        config = GridConfig(**ex, train=TrainConfig(max_epochs=3, batch_size=16), seeds=seeds,
                            baselines=False, n_boot=50)  # fmt: skip
        result = GridExperiment(
            config, RunOptions(tmp_path / f"r{len(seeds)}", progress=False)
        ).run()
        runs[seeds] = result
    one, two = runs[(0,)], runs[(0, 1)]

    def seed_rows(result: Any, seed: int) -> list[tuple[Any, ...]]:
        return sorted((r.head, r.layer, r.lang, r.metric, r.subset, r.value)
                      for r in result.rows.filter(seed=seed, config=""))  # fmt: skip

    assert seed_rows(one, 0) == seed_rows(two, 0)
    assert one.settings["train_size"] == two.settings["train_size"]
    gates = {s: two.rows.filter(metric="gate_mean", seed=s, layers=(0, 2))[0].value for s in (0, 1)}
    assert gates[0] != gates[1]


def test_grid_rejects_parallel_tasks(tmp_path: Path, tiny_bert: Path) -> None:
    ex = cache_fields(tmp_path, tiny_bert, task="tatoeba", langs=("all",), data_dir=tmp_path,
                      cache_root=tmp_path)  # fmt: skip
    with pytest.raises(ProbeError, match="parallel-level"):
        GridExperiment(GridConfig(**ex), RunOptions(tmp_path / "res", progress=False)).run()


@pytest.mark.parametrize("pool", ["first", "mean"])
def test_grid_on_a_pair_task_runs_on_its_token_view(
    tmp_path: Path, tiny_bert: Path, pool: str
) -> None:
    """`probe grid --task pawsx`: the pair's token view is extracted, every system trains on
    it, the unlabelled English test is not scored, results sit under the task's own name."""
    make_pawsx(tmp_path / "data", n=40)
    ex = cache_fields(tmp_path, tiny_bert, task="pawsx", langs=("en", "de"),
                      compute_dtype="float32")  # fmt: skip
    config = GridConfig(**ex, train=TrainConfig(max_epochs=2), seeds=(0,), n_boot=50,
                        pair_pool=pool, max_eval_sentences=15)  # fmt: skip
    result = GridExperiment(config, RunOptions(tmp_path / "res", progress=False)).run()
    rows = result.rows
    assert result.settings["task"] == "pawsx@tokens" and result.settings["train_unit"] == "pairs"
    assert result.directory.parent.parent.name == "pawsx"
    assert set(rows.values("lang", metric="accuracy", subset="")) == {"de"}
    trained = set(rows.values("layers", metric="accuracy", head="dlfa", config=""))
    assert trained == {(2, 2), (0, 2), (1, 2), (0, 0), (1, 1)}
    assert rows.filter(metric="gain_accuracy", config="vs single (dev)", lang="de")
    assert all(0 <= r.value <= 1 for r in rows.filter(metric="accuracy"))
    with SplitReader.open(result.cache.root, result.cache.key, "pawsx@tokens", "de",
                          "test") as reader:  # fmt: skip
        assert len(reader.labels) == 15  # the evaluation cap: a seeded sample of the 20 pairs
    # the English test's labels are hidden: nothing scores it, so it is not extracted
    assert not (result.cache.directory / "pawsx@tokens" / "en" / "test.h5").exists()
    assert (result.cache.directory / "pawsx@tokens" / "en" / "dev.h5").exists()
    assert (result.directory / "grid_heatmap.png").stat().st_size > 0


def test_grid_workers_give_the_same_numbers(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    runs = []
    for workers in (1, 2):
        config = GridConfig(**ex, train=TrainConfig(max_epochs=2), seeds=(0,), n_boot=50)
        options = RunOptions(tmp_path / f"r{workers}", workers=workers, progress=False)
        runs.append(sorted((r.head, r.layer, r.lang, r.metric, r.value)
                           for r in GridExperiment(config, options).run().rows))  # fmt: skip
    assert runs[0] == runs[1]


def test_grid_resumes_after_a_crash_with_only_the_missing_pairs(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its first pair keeps that pair's rows (the journal); the rerun
    trains only the other pairs and writes the same results as an uninterrupted run."""
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    config = GridConfig(**ex, train=TrainConfig(max_epochs=2), seeds=(0,), baselines=False)
    clean = GridExperiment(config, RunOptions(tmp_path / "clean", progress=False)).run()
    options = RunOptions(tmp_path / "res", progress=False)
    real_run_pair = grid_module.run_pair
    ran: list[tuple[int, int]] = []

    def crash_on_second(job: grid_module._PairJob) -> list[Row | ItemScores]:
        ran.append(job.pair)
        if len(ran) == 2:
            raise RuntimeError("killed")
        return real_run_pair(job)

    monkeypatch.setattr(grid_module, "run_pair", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        GridExperiment(config, options).run()
    assert ran == [(2, 2), (0, 2)]
    ran.clear()

    def counted(job: grid_module._PairJob) -> list[Row | ItemScores]:
        ran.append(job.pair)
        return real_run_pair(job)

    monkeypatch.setattr(grid_module, "run_pair", counted)
    resumed = GridExperiment(config, options).run()
    assert ran == [(0, 2), (1, 2)]  # (2, 2) came from the journal
    assert resumed.directory.name == clean.directory.name
    assert not (resumed.directory / "jobs").exists()
    assert list(resumed.rows) == list(clean.rows)
    csv = (resumed.directory / "results.csv").read_text()
    assert csv == (clean.directory / "results.csv").read_text()


def test_pair_baselines_are_taken_at_the_pair_itself() -> None:
    """With --pairs all, DLFA(1, 2) is compared with concat(1, 2) and layer 1 alone, not with
    concat(1, last): a pair's own baselines, whatever its upper layer."""
    from probe.analysis.bootstrap import PairedBootstrap
    from probe.data.tasks import get_task
    from probe.experiments.grid import grid_deltas
    from probe.results.items import ItemSet

    scores = {("dlfa", (1, 2)): 0.6, ("concat", (1, 2)): 0.9, ("concat", (1, 3)): 0.1,
              ("dlfa", (1, 1)): 0.5, ("dlfa", (3, 3)): 0.4}  # fmt: skip
    rows = [Row(head, ",".join(map(str, p)), lang, "accuracy", value, layers=p, seed=0)
            for (head, p), value in scores.items() for lang in ("en", "de")]  # fmt: skip
    found = grid_deltas(get_task("pos"), rows, ItemSet(), PairedBootstrap(10), "en", 3, "dlfa")
    delta = {r.config: r.value for r in found if r.layers == (1, 2) and r.lang == "de"}
    assert delta["vs concat"] == pytest.approx(0.6 - 0.9)
    assert delta["vs layer k"] == pytest.approx(0.6 - 0.5)
    assert delta["vs last"] == pytest.approx(0.6 - 0.4)

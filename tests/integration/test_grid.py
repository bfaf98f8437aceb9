"""`probe grid` on a tiny cache: pairs, baseline, gains, families, workers, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.data.languages import same_family
from probe.errors import ProbeError
from probe.experiments import grid as grid_module
from probe.experiments.base import RunOptions
from probe.experiments.grid import GridConfig, GridExperiment, parse_pairs
from probe.results.rows import Row
from probe.train import TrainConfig
from tests.helpers import SENTENCES, cache_fields, make_ud


def test_parse_pairs() -> None:
    assert parse_pairs("last", 4) == [(0, 3), (1, 3), (2, 3)]
    assert parse_pairs("all", 3) == [(0, 1), (0, 2), (1, 2)]
    assert parse_pairs("2,1; 0,2", 3) == [(1, 2), (0, 2)]
    with pytest.raises(ProbeError, match="outside 0..2"):
        parse_pairs("1,5", 3)
    with pytest.raises(ProbeError, match="expected 'i,j'"):
        parse_pairs("1-2", 3)


def test_families() -> None:
    assert same_family("de", "en") is True
    assert same_family("tr", "en") is False
    assert same_family("swa", "pcm") is False
    assert same_family("xx", "en") is None


@pytest.mark.parametrize("head, workers", [("dlfa", 1), ("concat", 2)])
def test_grid_end_to_end_tiny(tmp_path: Path, tiny_bert: Path, head: str, workers: int) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    config = GridConfig(**ex, head=head, train=TrainConfig(max_epochs=2))
    options = RunOptions(tmp_path / "res", workers=workers, progress=False)
    result = GridExperiment(config, options).run()
    pairs = {r.layer for r in result.rows if r.metric == "accuracy"}
    assert pairs == {"2,2", "0,2", "1,2"}  # baseline + (k, last) for every lower k
    assert set(result.rows.values("layers", metric="accuracy")) == {(2, 2), (0, 2), (1, 2)}
    gains = {(r.layers, r.group or r.lang) for r in result.rows if r.metric == "gain_accuracy"}
    assert ((0, 2), "de") in gains and ((0, 2), "enf") in gains and ((1, 2), "targets") in gains
    assert ((0, 2), "noenf") not in gains  # de is the only target, and it is in-family
    if head == "dlfa":
        gate = [r.value for r in result.rows if r.metric == "gate_mean"]
        assert len(gate) == 3 and all(0 < g < 1 for g in gate)
    for name in ("results.csv", "results.json", "settings.json", "summary.txt", "grid_heatmap.png"):
        assert (result.directory / name).stat().st_size > 0
    assert "2,2 *" in result.summary


def test_grid_rejects_sentence_tasks(tmp_path: Path, tiny_bert: Path) -> None:
    ex = cache_fields(tmp_path, tiny_bert, task="xnli", langs=("all",), data_dir=tmp_path,
                      cache_root=tmp_path)  # fmt: skip
    with pytest.raises(ProbeError, match="token-level"):
        GridExperiment(GridConfig(**ex), RunOptions(tmp_path / "res", progress=False)).run()


def test_grid_workers_give_the_same_numbers(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    runs = []
    for workers in (1, 2):
        config = GridConfig(**ex, train=TrainConfig(max_epochs=2))
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
    config = GridConfig(**ex, train=TrainConfig(max_epochs=2))
    clean = GridExperiment(config, RunOptions(tmp_path / "clean", progress=False)).run()
    options = RunOptions(tmp_path / "res", progress=False)
    real_run_pair = grid_module.run_pair
    ran: list[tuple[int, int]] = []

    def crash_on_second(job: grid_module._PairJob) -> list[Row]:
        ran.append(job.pair)
        if len(ran) == 2:
            raise RuntimeError("killed")
        return real_run_pair(job)

    monkeypatch.setattr(grid_module, "run_pair", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        GridExperiment(config, options).run()
    assert ran == [(2, 2), (0, 2)]
    ran.clear()

    def counted(job: grid_module._PairJob) -> list[Row]:
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

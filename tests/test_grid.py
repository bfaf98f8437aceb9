"""`probe grid` on a tiny cache: pairs, baseline, gains, families, workers, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.data.languages import same_family
from probe.errors import ProbeError
from probe.experiments.grid import GridConfig, parse_pairs, run_grid
from probe.train import TrainConfig
from tests.test_extract import SENTENCES, cache_fields, make_ud


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
    config = GridConfig(**ex, head=head, workers=workers, results_dir=tmp_path / "res",
                        train=TrainConfig(max_epochs=2))  # fmt: skip
    result = run_grid(config, progress=False)
    pairs = {r.layer for r in result.rows if r.metric == "accuracy"}
    assert pairs == {"2,2", "0,2", "1,2"}  # baseline + (k, last) for every lower k
    gains = {(r.layer, r.lang) for r in result.rows if r.metric == "gain_accuracy"}
    assert ("0,2", "de") in gains and ("0,2", "enf") in gains and ("1,2", "targets") in gains
    assert ("0,2", "noenf") not in gains  # de is the only target, and it is in-family
    if head == "dlfa":
        gate = [r.value for r in result.rows if r.metric == "gate_mean"]
        assert len(gate) == 3 and all(0 < g < 1 for g in gate)
    for name in ("results.csv", "results.json", "settings.json", "summary.txt", "grid_heatmap.png"):
        assert (result.directory / name).stat().st_size > 0
    assert "2,2 *" in result.table


def test_grid_rejects_sentence_tasks(tmp_path: Path, tiny_bert: Path) -> None:
    ex = cache_fields(tmp_path, tiny_bert, task="xnli", langs=("all",), data_dir=tmp_path,
                      cache_root=tmp_path)  # fmt: skip
    with pytest.raises(ProbeError, match="token-level"):
        run_grid(GridConfig(**ex), progress=False)


def test_grid_workers_give_the_same_numbers(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    ex = cache_fields(tmp_path, tiny_bert, compute_dtype="float32")
    runs = []
    for workers in (1, 2):
        config = GridConfig(**ex, workers=workers, results_dir=tmp_path / f"r{workers}",
                            train=TrainConfig(max_epochs=2))  # fmt: skip
        runs.append(sorted((r.head, r.layer, r.lang, r.metric, r.value)
                           for r in run_grid(config, progress=False).rows))  # fmt: skip
    assert runs[0] == runs[1]

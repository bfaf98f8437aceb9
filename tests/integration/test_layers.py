"""`probe layers` end to end on a tiny random BERT, and its output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.train import TrainConfig
from tests.helpers import SENTENCES, cache_fields, make_ud


def _config(tmp_path: Path, model: Path, **kw: object) -> LayersConfig:
    return LayersConfig(
        **cache_fields(tmp_path, model, compute_dtype="float32"),
        train=TrainConfig(max_epochs=3), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _options(tmp_path: Path) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", progress=False)


def test_layers_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    result = run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))
    heads = {(r.head, r.metric) for r in result.rows}
    assert ("linear", "accuracy") in heads and ("linear", "ece") in heads
    assert ("control", "accuracy") in heads and ("linear", "selectivity") in heads
    assert ("scalar_mix", "centre_of_gravity") in heads
    layers = {r.layer for r in result.rows if r.head == "linear"}
    assert layers == {"0", "1", "2"}
    langs = {r.lang for r in result.rows if r.head == "linear" and r.metric == "accuracy"}
    assert langs == {"en", "de"}
    assert abs(sum(result.mix_weights) - 1) < 1e-5
    for name in ("results.csv", "results.json", "settings.json", "summary.txt",
                 "score_per_layer.png", "source_vs_target.png"):  # fmt: skip
        assert (result.directory / name).stat().st_size > 0, name
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["cache_key"] == result.settings["cache_key"]
    assert settings["source"] == "en" and settings["provenance"]["seed"] == 0
    # Same settings twice: same scores (seeded), same directory, and no encoder run.
    again = run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))
    assert again.directory == result.directory
    assert again.extract_seconds < result.extract_seconds + 5
    assert [r.value for r in again.rows] == [r.value for r in result.rows]


def test_layers_refuses_parallel_task(tmp_path: Path, tiny_bert: Path) -> None:
    from dataclasses import replace

    from probe.errors import ProbeError

    cfg = _config(tmp_path, tiny_bert)
    cfg = replace(cfg, task="tatoeba")
    with pytest.raises(ProbeError, match="probe map"):
        run_layers(cfg, _options(tmp_path))

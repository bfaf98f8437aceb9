"""`probe structural` end to end on a tiny random BERT; the UD tasks it brought (deprel-arc's
edge probing, morph-* with a language that lacks the feature) through `probe layers`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from probe.cache import SplitReader, open_shard
from probe.errors import CacheError, ProbeError
from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.experiments.structural import StructuralConfig, run_structural
from probe.train import TrainConfig
from tests.helpers import cache_fields, make_ud
from tests.structural_data import make_tree_ud

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(lr=1e-3, batch_size=256, max_epochs=3)


def _options(tmp_path: Path) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", progress=False)


def test_structural_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    make_tree_ud(tmp_path / "data")
    config = StructuralConfig(**cache_fields(tmp_path, tiny_bert, compute_dtype="float32"),
                              train=FAST, seeds=(0, 1), rank=8)  # fmt: skip
    result = run_structural(config, _options(tmp_path))
    rows = result.rows
    assert {(r.head, r.metric) for r in rows if r.metric in ("uuas", "dspr", "root_acc", "nspr")
            } == {("distance", "uuas"), ("distance", "dspr"), ("depth", "root_acc"),
                  ("depth", "nspr")}  # fmt: skip
    scored = rows.filter(head="distance", metric="uuas", group="")
    assert set(scored.values("lang")) == {"en", "de"}
    assert set(scored.values("layer")) == {"0", "1", "2"}
    assert set(scored.values("seed")) == {0, 1, None}
    for r in rows.filter(metric=lambda m: m in ("uuas", "root_acc"), stat=""):
        assert 0.0 <= r.value <= 1.0
    # The seed mean is the mean of the seeds; the target average carries an interval.
    pair = [scored.one(layer="1", lang="de", seed=s) for s in (0, 1)]
    assert scored.one(layer="1", lang="de", seed=None) == pytest.approx(np.mean(pair))
    target = rows.filter(head="distance", metric="uuas", lang="targets", layer="1")[0]
    assert target.ci_low is not None and target.ci_low <= target.value <= target.ci_high
    dspr = rows.filter(head="distance", metric="dspr", lang="targets", layer="1")[0]
    assert dspr.ci_low is None  # no interval for the Spearman averages
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["rank"] == 8 and settings["kinds"] == ["distance", "depth"]
    assert "uuas peaks at layer" in result.summary and "nspr peaks at layer" in result.summary
    for metric in ("uuas", "dspr", "root_acc", "nspr"):
        assert (result.directory / f"{metric}_per_layer.png").is_file()
    # The shard holds the trees the probes read: heads sentence-local, -1 at each root.
    key = result.settings["cache_key"]
    with SplitReader.open(tmp_path / "cache", key, "pos", "en", "test") as reader:
        heads, offsets = reader.heads, reader.offsets
        assert (np.diff(offsets) == np.bincount(np.repeat(np.arange(len(offsets) - 1),
                                                          np.diff(offsets)))).all()  # fmt: skip
        roots = [(heads[a:b] < 0).sum() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        assert set(roots) == {1}
        assert "punct" in reader.relation_names and reader.relations.dtype == np.int16
        path = reader.shards[0].path
    with open_shard(path, verify=True) as shard:  # every checksum, the trees' too
        assert shard.has_tree and len(shard.heads) == shard.n_rows


def test_structural_cli_and_a_forest_refused(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.cli import cli

    make_tree_ud(tmp_path / "data", n_sentences=20)
    args = ["structural", "--model", str(tiny_bert), "--task", "pos", "--langs", "en,de",
            "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "results"), "--seeds", "0", "--rank", "4",
            "--probes", "distance", "--workers", "1", "--compute", "float32"]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "UUAS" in out.output and "root accuracy" not in out.output
    # tests.helpers' treebanks root every word (not a tree): refused in one line.
    make_ud(tmp_path / "forest")
    config = StructuralConfig(**cache_fields(tmp_path, tiny_bert, data_dir=tmp_path / "forest"),
                              train=FAST)  # fmt: skip
    with pytest.raises(ProbeError, match="one root"):
        run_structural(config, _options(tmp_path))


def test_structural_refuses_a_task_without_trees(tmp_path: Path, tiny_bert: Path) -> None:
    config = StructuralConfig(**cache_fields(tmp_path, tiny_bert, task="udpos"), train=FAST)
    with pytest.raises(ProbeError, match="UD dependency trees"):
        run_structural(config, _options(tmp_path))


def test_edge_probing_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    make_tree_ud(tmp_path / "data")
    config = LayersConfig(**cache_fields(tmp_path, tiny_bert, task="deprel-arc",
                                         compute_dtype="float32"),
                          train=TrainConfig(max_epochs=3), scalar_mix=False)  # fmt: skip
    result = run_layers(config, _options(tmp_path))
    rows = result.rows
    accuracy = rows.filter(head="linear", metric="accuracy", group="", seed=None)
    assert set(accuracy.values("lang")) == {"en", "de"}
    assert not rows.filter(head="control")  # no word types for a pair of words
    # Items are the arcs: one per non-root word.
    key = result.settings["cache_key"]
    with SplitReader.open(tmp_path / "cache", key, "deprel-arc", "en", "train") as reader:
        words, sentences = len(reader.labels), len(reader.offsets) - 1
    assert result.settings["train_size"] == {"en train": words - sentences}
    target = rows.filter(head="linear", metric="accuracy", lang="targets", layer="2")[0]
    assert target.ci_low is not None  # per-sentence counts of arcs give the interval
    # Commands whose heads read words or tokens refuse it in one line.
    from probe.experiments.grid import GridConfig, GridExperiment

    grid = GridConfig(**cache_fields(tmp_path, tiny_bert, task="deprel-arc"))
    with pytest.raises(ProbeError, match="does not take edge-probing tasks"):
        GridExperiment(grid, _options(tmp_path)).run()


def test_morph_task_skips_a_language_without_the_feature(
    tmp_path: Path, tiny_bert: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_tree_ud(tmp_path / "data", german_number=False)
    fields = cache_fields(tmp_path, tiny_bert, task="morph-Number", compute_dtype="float32")
    config = LayersConfig(**fields, train=TrainConfig(max_epochs=2), scalar_mix=False,
                          control=False)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        result = run_layers(config, _options(tmp_path))
    assert set(result.rows.filter(head="linear", metric="accuracy").values("lang")) == {"en"}
    assert "skipping de: its treebank does not annotate Number" in caplog.text
    # The source language must have the feature.
    make_tree_ud(tmp_path / "data2", english_number=False)
    no_source = LayersConfig(**cache_fields(tmp_path, tiny_bert, task="morph-Number",
                                            data_dir=tmp_path / "data2"),
                             train=TrainConfig(max_epochs=2))  # fmt: skip
    with pytest.raises(ProbeError, match="source language 'en' cannot train it"):
        run_layers(no_source, _options(tmp_path))


def test_a_shard_without_trees_names_the_fix(tmp_path: Path, tiny_bert: Path) -> None:
    from tests.helpers import config as setup
    from tests.helpers import extract

    make_ud(tmp_path / "data")
    (tmp_path / "data" / "xtreme" / "udpos" / "en").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (tmp_path / "data" / "xtreme" / "udpos" / "en" / f"{split}-en.tsv").write_text(
            "the\tDET\ndog\tNOUN\n\n", encoding="utf-8")  # fmt: skip
    report = extract(setup(tmp_path, tiny_bert, task="udpos", langs=("en",)))
    with SplitReader.open(tmp_path / "cache", report.key, "udpos", "en", "test") as reader:
        assert not reader.has_tree
        with pytest.raises(CacheError, match="stores no dependency trees"):
            _ = reader.heads


def test_map_shows_structural_curves(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.analysis.crosslingual.alignment import NetConfig
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from tests.helpers import make_tatoeba

    data = make_tree_ud(tmp_path / "data")
    make_tatoeba(data)
    config = MapConfig(**cache_fields(tmp_path, tiny_bert, compute_dtype="float32"),
                       train=TrainConfig(max_epochs=2), seeds=(0,),
                       parallel=ParallelConfig(net=NetConfig(steps=20)),
                       structural=("uuas", "morph-Number"))  # fmt: skip
    result = run_map(config, _options(tmp_path))
    curves = result.rows.filter(head="structural")
    assert set(curves.values("config")) == {"uuas", "morph-Number"}
    assert set(curves.filter(config="uuas").values("eval_task")) == {"pos"}
    assert set(curves.filter(config="morph-Number", metric="accuracy").values("layer")) == {
        "0", "1", "2"}  # fmt: skip
    assert "structural curves per layer" in result.table
    for name in ("pos accuracy", "uuas", "morph-Number accuracy"):
        assert f"{name} peaks at layer" in result.table
    assert (result.directory / "structural_curves.png").is_file()
    # The task's own probe rows are untouched by the curves' (their own head).
    assert not result.rows.filter(head="linear", eval_task="morph-Number")
    with pytest.raises(ProbeError, match="not a pair task"):
        MapConfig(**cache_fields(tmp_path, tiny_bert), structural=("xnli",))

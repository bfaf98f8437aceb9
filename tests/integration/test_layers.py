"""`probe layers` end to end on a tiny random BERT, and its output files: seeds, intervals,
selectivity over several control maps, MDL and the random-weights twin."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.results.render.layers import NEXT_BEST, RANDOM, render_layers
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig
from tests.helpers import SENTENCES, cache_fields, make_ud, plant_word_classes, word_bert

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path: Path, model: Path, **kw: object) -> LayersConfig:
    return LayersConfig(
        **cache_fields(tmp_path, model, compute_dtype="float32"),
        train=TrainConfig(max_epochs=3), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _options(tmp_path: Path) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", progress=False)


def _per_seed(rows: Table, seed: int) -> dict[tuple[str, str, str], float]:
    return {(r.layer, r.lang, r.metric): r.value
            for r in rows.filter(head="linear", seed=seed, config="")}  # fmt: skip


def test_layers_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 4)
    result = run_layers(_config(tmp_path, tiny_bert, seeds=(0, 1)), _options(tmp_path))
    rows = result.rows
    heads = {(r.head, r.metric) for r in rows}
    assert ("linear", "accuracy") in heads and ("linear", "ece") in heads
    assert ("control", "accuracy") in heads and ("linear", "selectivity") in heads
    assert ("scalar_mix", "centre_of_gravity") in heads
    assert {r.layer for r in rows if r.head == "linear"} == {"0", "1", "2"}
    scored = rows.filter(head="linear", metric="accuracy", group="")
    assert set(scored.values("lang")) == {"en", "de"}
    # Per-seed rows of both seeds, the mean (seed None) and the sd over seeds.
    assert set(scored.values("seed")) == {0, 1, None}
    for layer in ("0", "1", "2"):
        pair = [scored.one(layer=layer, lang="de", seed=s) for s in (0, 1)]
        assert scored.one(layer=layer, lang="de", seed=None) == pytest.approx(np.mean(pair))
        sd = rows.one(head="linear", layer=layer, lang="de", metric="accuracy_sd", stat="sd")
        assert sd == pytest.approx(np.std(pair, ddof=1))
    # The target average of each layer carries a bootstrap interval around it.
    for r in rows.filter(head="linear", lang="targets", metric="accuracy"):
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low <= r.value <= r.ci_high
        assert r.value == pytest.approx(scored.one(layer=r.layer, lang="de", seed=None))
    # Selectivity: seed-mean task accuracy − mean over the two control maps, with interval.
    control = rows.filter(head="control", metric="accuracy", seed=lambda s: s is not None)
    assert set(control.values("seed")) == {0, 1}
    for r in rows.filter(head="linear", metric="selectivity"):
        task_acc = scored.one(layer=r.layer, lang="en", seed=None)
        ctrl = np.mean([control.one(layer=r.layer, seed=s) for s in (0, 1)])
        assert r.value == pytest.approx(task_acc - ctrl)
        assert r.ci_low is not None and r.ci_high is not None and r.ci_low <= r.ci_high
    # The best layer against the next best.
    lead = rows.filter(metric="gain_accuracy", lang="targets",
                       config=lambda c: c.startswith(NEXT_BEST))  # fmt: skip
    assert len(lead) == 1 and lead[0].value >= 0 and lead[0].ci_low is not None
    assert f"best layer by target average: {lead[0].layer}" in result.table
    assert "±" in result.table and "sel 95% CI" in result.table
    for name in ("results.csv", "results.json", "settings.json", "summary.txt",
                 "score_per_layer.png", "source_vs_target.png"):  # fmt: skip
        assert (result.directory / name).stat().st_size > 0, name
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["cache_key"] == result.settings["cache_key"]
    assert settings["source"] == "en" and settings["provenance"]["seed"] == 0
    assert settings["seeds"] == [0, 1] and settings["control_seeds"] == [0, 1]
    share = settings["majority_label"]
    assert 0 < share["share"] < 0.5 and share["informative"] is True
    assert abs(sum(result.mix_weights) - 1) < 1e-5 and len(result.mix_weights) == 3
    # Same settings twice: same scores (seeded), same directory, and no encoder run.
    again = run_layers(_config(tmp_path, tiny_bert, seeds=(0, 1)), _options(tmp_path))
    assert again.directory == result.directory
    assert again.cache.report.extracted == []
    assert [r.value for r in again.rows] == [r.value for r in rows]
    # Seeds change training and nothing else: a run of seed 1 alone reproduces the seed-1
    # rows (the data, drawn with the first seed, is the task's own train/dev here), and
    # differs from seed 0's.
    alone = run_layers(_config(tmp_path, tiny_bert, seeds=(1,), scalar_mix=False),
                       _options(tmp_path))  # fmt: skip
    assert _per_seed(alone.rows, 1) == _per_seed(rows, 1)
    assert _per_seed(rows, 0) != _per_seed(rows, 1)
    assert alone.settings["train_size"] == result.settings["train_size"]


def test_control_maps_beyond_the_seeds(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", SENTENCES * 2)
    cfg = _config(tmp_path, tiny_bert, seeds=(4,), control_maps=3, scalar_mix=False)
    assert cfg.control_seeds == (4, 5, 6) and cfg.train.seed == 4
    result = run_layers(cfg, _options(tmp_path))
    control = result.rows.filter(head="control", metric="accuracy", layer="1")
    assert set(control.values("seed")) == {4, 5, 6, None}
    (sel,) = result.rows.filter(head="linear", metric="selectivity", layer="1")
    mean = np.mean([control.one(seed=s) for s in (4, 5, 6)])
    task_acc = result.rows.one(head="linear", metric="accuracy", layer="1", lang="en", seed=None)
    assert sel.value == pytest.approx(task_acc - mean)


def test_config_refuses_bad_seeds_and_twin_of_twin(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="lists a seed twice"):
        _config(tmp_path, tiny_bert, seeds=(0, 0))
    with pytest.raises(ProbeError, match="control_maps"):
        _config(tmp_path, tiny_bert, control_maps=0)
    cfg = _config(tmp_path, tiny_bert)
    with pytest.raises(ProbeError, match="already a random-weights twin"):
        replace(cfg, spec=replace(cfg.spec, random_weights=0), beside_random=0)


def test_layers_refuses_parallel_task(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = replace(_config(tmp_path, tiny_bert), task="tatoeba")
    with pytest.raises(ProbeError, match="probe map"):
        run_layers(cfg, _options(tmp_path))


def test_selectivity_flagged_where_one_label_dominates(tmp_path: Path) -> None:
    """The table says in one line that selectivity means little when the majority label
    holds most words (a NER-like share), and says nothing when it does not."""
    rows = [Row("linear", str(i), lang, "accuracy", 0.8 + 0.01 * i, layers=(i,))
            for i in range(2) for lang in ("en", "de")]  # fmt: skip
    rows += [Row("linear", str(i), "en", "selectivity", 0.02, layers=(i,), ci_low=-0.01,
                 ci_high=0.05) for i in range(2)]  # fmt: skip
    for share, flagged in ((0.85, True), (0.3, False)):
        table = Table([*rows, Row("control", "-", "en", "majority_share", share, config="O")])
        text = render_layers(get_task("pos"), table, "en", ["en", "de"], 2, tmp_path, "m")
        assert ("selectivity is not informative here" in text) is flagged
        if flagged:
            assert "'O' holds 85%" in text


# --- MDL and the random twin, on a model that carries a planted property ----------------------

N_WORDS = 200  # word types w0..w199: even ones are NOUN, odd ones VERB


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose word embeddings carry each word's class along one direction (what
    pretraining gives, in miniature); its random twin's embeddings do not."""
    directory = tmp_path_factory.mktemp("planted-layers")
    model = word_bert(directory, N_WORDS, hidden=32, n_layers=1, seed=0)
    plant_word_classes(model, N_WORDS, strength=0.6)
    model.save_pretrained(directory)
    return directory


def _planted_data(root: Path) -> None:
    """en trains and tests on w0..w99; de tests on w100..w199, never trained on."""
    rng = np.random.default_rng(0)
    seen, unseen = list(range(N_WORDS // 2)), list(range(N_WORDS // 2, N_WORDS))
    files = {"UD_English-EWT/en_ewt-ud-train.conllu": (seen, 80),
             "UD_English-EWT/en_ewt-ud-dev.conllu": (seen, 20),
             "UD_English-EWT/en_ewt-ud-test.conllu": (seen, 20),
             "UD_German-GSD/de_gsd-ud-test.conllu": (unseen, 60)}  # fmt: skip
    for rel, (words, n) in files.items():
        blocks = []
        for s in range(n):
            picked = rng.choice(words, size=6, replace=False)
            blocks.append("\n".join([f"# sent_id = s{s}"] + [
                f"{j}\tw{w}\tw{w}\t{('NOUN', 'VERB')[w % 2]}\t_\t_\t0\tx\t_\t_"
                for j, w in enumerate(picked, 1)]))  # fmt: skip
        path = root / "ud" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def test_mdl_and_random_twin_beside_the_trained_model(tmp_path: Path, planted: Path) -> None:
    _planted_data(tmp_path / "data")
    cfg = LayersConfig(**cache_fields(tmp_path, planted, compute_dtype="float32"),
                       train=TrainConfig(batch_size=128, max_epochs=15), seeds=(0, 1),
                       control=False, scalar_mix=False, mdl=True,
                       beside_random=0)  # fmt: skip
    result = run_layers(cfg, _options(tmp_path))
    rows = result.rows
    assert result.twin is not None and result.twin.key != result.cache.key
    assert result.settings["random_twin"] == {"seed": 0, "cache_key": result.twin.key}
    # The twin's rows: its own model key, told apart by config, per seed as the trained ones.
    twin = rows.filter(head="linear", config=RANDOM, metric="accuracy", group="")
    assert set(twin.values("model")) == {result.twin.key}
    assert set(twin.values("seed")) == {0, 1, None}
    # Unseen words (de): the planted class carries over with trained features, not with the
    # twin's; the paired Δ and its interval say so at the embeddings.
    gain = rows.filter(head="linear", config=RANDOM, metric="gain_accuracy", lang="de",
                       layer="0", stat="")  # fmt: skip
    (delta,) = gain
    trained_de = rows.one(head="linear", config="", metric="accuracy", lang="de", layer="0",
                          seed=None)  # fmt: skip
    assert delta.value == pytest.approx(trained_de - twin.one(lang="de", layer="0", seed=None))
    assert delta.value > 0.2 and delta.ci_low is not None and delta.ci_low > 0
    assert "random-weights twin" in result.table and "Δtgt 95% CI" in result.table
    # MDL: a code per layer of each model; the planted layer codes its labels shorter than
    # the twin's (compression = uniform / online).
    online = rows.filter(head="linear", metric="mdl_online_kbits")
    assert {(r.config, r.layer) for r in online} == {(c, str(i)) for c in ("", RANDOM)
                                                     for i in range(2)}  # fmt: skip
    assert online.one(config="", layer="0") < online.one(config=RANDOM, layer="0")
    assert "MDL kb" in result.table
    assert (result.directory / "mdl_per_layer.png").stat().st_size > 0

"""`probe intermediate` on tiny data: configurations, schedules, carried body, gains, outputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor

from probe.analysis.bootstrap import PairedBootstrap
from probe.cli import cli
from probe.data.tasks import TASKS, get_task
from probe.errors import ProbeError
from probe.experiments import intermediate, intermediate_seed
from probe.experiments.base import RunOptions
from probe.experiments.grid import GridConfig, _PairJob, run_pair
from probe.experiments.intermediate import IntermediateConfig, IntermediateExperiment
from probe.experiments.intermediate_gains import configuration_gains
from probe.experiments.intermediate_plan import plan_configurations, resolve_via
from probe.heads.multitask import Body, MLPBody, TaskHead
from probe.results.gains import average_seeds
from probe.results.items import ItemSet
from probe.results.rows import Row
from probe.train import PairData, TrainConfig, WordData
from probe.train.schedules import MixedFeed, StageData, run_schedule, train_stage
from tests.helpers import SENTENCES, cache_fields, make_ud

UDPOS_TAGS = ["DET", "NOUN", "VERB", "ADP"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_data(root: Path) -> Path:
    """UD pos (en, de) as the target, plus XTREME-layout udpos (word) and pawsx (pair) in en."""
    make_ud(root, SENTENCES * 4)
    for split in ("train", "dev"):  # udpos trains on train and early-stops on dev
        udpos = root / "xtreme" / "udpos" / "en" / f"{split}-en.tsv"
        udpos.parent.mkdir(parents=True, exist_ok=True)
        udpos.write_text(
            "\n\n".join(
                "\n".join(f"{w}\t{UDPOS_TAGS[i % 4]}" for i, w in enumerate(s))
                for s in SENTENCES * 3
            )
            + "\n"
        )
    pawsx = root / "xtreme" / "pawsx" / "en" / "dev-en.tsv"
    pawsx.parent.mkdir(parents=True, exist_ok=True)
    pairs = zip(SENTENCES * 4, SENTENCES[1:] * 5, strict=False)
    pawsx.write_text("".join(f"{' '.join(a)}\t{' '.join(b)}\t{i % 2}\n"
                             for i, (a, b) in enumerate(pairs)))  # fmt: skip
    return root


# --- configurations -----------------------------------------------------------------------


def test_plan_configurations() -> None:
    names = [c.name for c in plan_configurations(("a", "b", "c"), None, ("sequential", "mixed"))]
    assert names == ["none", "a", "b", "c", "a>b", "a+b", "a>b>c", "a+b+c"]
    names = [c.name for c in plan_configurations(("a", "b", "c"), "1,all", ("mixed",))]
    assert names == ["none", "a", "b", "c", "a+b+c"]  # size 1 is the single task, not repeated
    names = [c.name for c in plan_configurations(("a", "b", "c"), "c+a", ("sequential",))]
    assert names == ["none", "a", "b", "c", "c>a"]
    with pytest.raises(ProbeError, match="size is 1..3"):
        plan_configurations(("a", "b", "c"), "4", ("sequential",))
    with pytest.raises(ProbeError, match="distinct tasks of --via"):
        plan_configurations(("a", "b"), "a+x", ("sequential",))
    with pytest.raises(ProbeError, match="--schedule"):
        plan_configurations(("a",), None, ("interleaved",))


def test_resolve_via_all_is_the_registry(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    pos = get_task("pos")
    via = resolve_via(("all",), pos, data)  # what has data, not pos
    ud = {"deprel", *(n for n in TASKS.names() if n.startswith("morph-"))}  # UD trees, FEATS
    assert via[:2] == ("udpos", "pawsx") and set(via[2:]) == ud  # edge tasks never
    # A new task needs only its registry entry to serve as an intermediate task.
    with TASKS.override("udpos-copy", replace(get_task("udpos"), name="udpos-copy")):
        assert "udpos-copy" in resolve_via(("all",), pos, data)
    assert resolve_via(("udpos,pawsx",), pos, data) == ("udpos", "pawsx")
    with pytest.raises(ProbeError, match="Did you mean 'udpos'"):
        resolve_via(("udpso",), pos, data)
    with pytest.raises(ProbeError, match="its own intermediate"):
        resolve_via(("pos",), pos, data)
    with pytest.raises(ProbeError, match="no labels"):
        resolve_via(("tatoeba",), pos, data)


# --- schedules ----------------------------------------------------------------------------


def _word_task(name: str, offset: float, n_sent: int = 24, seed: int = 0) -> StageData:
    """Random word data whose features sit around `offset` (the body can tell tasks apart)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, n_sent)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    x = (rng.normal(size=(offsets[-1], 8)) + offset).astype(np.float32)
    y = (x[:, 0] > offset).astype(np.int64)
    half = offsets[n_sent // 2]
    train = WordData({3: x[half:]}, y[half:], offsets[n_sent // 2 :] - half)
    dev = WordData({3: x[:half]}, y[:half], offsets[: n_sent // 2 + 1])
    return StageData(name, "word", 2, train.sentences((3,)), dev.sentences((3,)))


def _pair_task(name: str, offset: float, n: int = 60) -> StageData:
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(n, 8)) + offset).astype(np.float32)
    b = (rng.normal(size=(n, 8)) + offset).astype(np.float32)
    y = (a[:, 0] > b[:, 0]).astype(np.int64)
    train, dev = (
        PairData({3: a[:40]}, {3: b[:40]}, y[:40]),
        PairData({3: a[40:]}, {3: b[40:]}, y[40:]),
    )
    return StageData(name, "pair", 2, train.pairs((3,)), dev.pairs((3,)))


class RecordingBody(MLPBody):
    """Logs, for every training batch, which task it came from (by the sign of its features)."""

    log: list[str] = []

    def forward(self, layers: Sequence[Tensor], mask: Tensor) -> Tensor:
        if self.training:
            mean = float(layers[0][mask].mean())
            RecordingBody.log.append("A" if mean > 1.5 else "B" if mean < -1.5 else "T")
        return super().forward(layers, mask)


def _batches_per_epoch(stage: StageData, batch_size: int) -> int:
    return sum(
        1 for _ in stage.train.batches(batch_size, generator=None, device=torch.device("cpu"))
    )


def test_mixed_feed_sees_every_batch_once_interleaved() -> None:
    a, b = _word_task("A", 3.0), _pair_task("B", -3.0)
    feed = MixedFeed([a.train, b.train])
    generator = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    tags = [int(batch.inputs[0]) for batch in feed.batches(16, generator=generator, device=cpu)]
    assert tags.count(0) == _batches_per_epoch(a, 16) and tags.count(1) == _batches_per_epoch(b, 16)
    assert tags != sorted(tags) and tags != sorted(tags, reverse=True)  # interleaved
    assert feed.n_items == a.train.n_items + b.train.n_items


@pytest.mark.parametrize("schedule", ["sequential", "mixed"])
def test_schedules_see_each_tasks_batches(schedule: str) -> None:
    a, b, target = _word_task("A", 3.0), _word_task("B", -3.0), _word_task("T", 0.0)
    config = TrainConfig(lr=1e-2, batch_size=16, max_epochs=2, patience=5)
    RecordingBody.log = []
    stages = run_schedule(lambda: RecordingBody(8, 6), [a, b], target, schedule, config)  # type: ignore[arg-type]
    log = "".join(RecordingBody.log)
    n_a, n_b, n_t = (2 * _batches_per_epoch(s, 16) for s in (a, b, target))
    assert (log.count("A"), log.count("B"), log.count("T")) == (n_a, n_b, n_t)
    assert log.endswith("T" * n_t)  # the target always comes last
    if schedule == "sequential":
        assert log == "A" * n_a + "B" * n_b + "T" * n_t
        assert [s.tasks for s in stages] == [("A",), ("B",), ("T",)]
    else:
        # Interleaved within each epoch: one block of A then one of B per epoch would switch
        # task 2 * epochs - 1 = 3 times.
        mixed = log[: n_a + n_b]
        assert sum(x != y for x, y in zip(mixed, mixed[1:], strict=False)) > 3, mixed
        assert [s.tasks for s in stages] == [("A", "B"), ("T",)]


def test_body_is_carried_over_and_classifier_is_fresh() -> None:
    a, target = _word_task("A", 3.0), _word_task("T", 0.0, seed=2)
    config = TrainConfig(lr=1e-2, batch_size=16, max_epochs=3)

    def new_body() -> Body:
        return MLPBody(8, 6)

    trained_a = train_stage(new_body, [a], config).body.state_dict()
    fresh = train_stage(new_body, [a], replace(config, lr=1e-12, max_epochs=1)).body.state_dict()
    assert not torch.allclose(trained_a["project.weight"], fresh["project.weight"], atol=1e-3)
    # With a vanishing learning rate the target stage ends where it started: at the body the
    # intermediate stage trained (warm), or at a fresh body (cold); the classifier starts
    # from the same weights either way.
    still = replace(config, lr=1e-12, max_epochs=1)
    warm = train_stage(new_body, [target], still, warm=trained_a).head
    cold = train_stage(new_body, [target], still).head
    assert isinstance(warm, TaskHead) and isinstance(cold, TaskHead)
    for name, value in warm.body.state_dict().items():
        torch.testing.assert_close(value, trained_a[name], atol=1e-8, rtol=0)
        torch.testing.assert_close(cold.body.state_dict()[name], fresh[name], atol=1e-8, rtol=0)
    torch.testing.assert_close(warm.classifier.weight, cold.classifier.weight, atol=1e-8, rtol=0)


def test_pair_task_head_shapes() -> None:
    body = MLPBody(8, 6)
    head = TaskHead(body, 3, "pair")
    a, b = torch.randn(5, 1, 8), torch.randn(5, 1, 8)
    assert head(a, b).shape == (5, 3)
    word = TaskHead(body, 4, "word")
    assert word(torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)).shape == (2, 7, 4)


# --- gains --------------------------------------------------------------------------------


def test_gains_per_language_family_and_seed_spread() -> None:
    pos = get_task("pos")  # accuracy; source en
    scores = {"none": {"en": 0.9, "de": 0.5, "fr": 0.6, "tr": 0.4},
              "x": {"en": 0.95, "de": 0.6, "fr": 0.9, "tr": 0.2}}  # fmt: skip
    rows = [Row("mlp", c, lang, "accuracy", v, config=c)
            for c, d in scores.items() for lang, v in d.items()]  # fmt: skip
    gains = configuration_gains(pos, rows, ItemSet(), "en", PairedBootstrap(10))
    got = {r.group or r.lang: r.value for r in gains if r.config == "x"}
    assert got["de"] == pytest.approx(0.1) and got["tr"] == pytest.approx(-0.2)
    assert got["en"] == pytest.approx(0.05)  # the source's own gain, not in any mean
    assert got["enf"] == pytest.approx(0.2)  # de, fr: Indo-European like en
    assert got["noenf"] == pytest.approx(-0.2)  # tr: Turkic
    assert got["targets"] == pytest.approx((0.1 + 0.3 - 0.2) / 3)
    fam = {r.group: r.value for r in gains if r.group not in ("", "enf", "noenf", "targets")}
    assert fam == pytest.approx({"Indo-European": 0.2, "Turkic": -0.2})

    seed0 = [replace(r, seed=0) for r in gains]
    seed1 = [replace(r, value=r.value + 0.02, seed=1) for r in gains]
    mean = {(r.lang, r.stat): r for r in average_seeds([seed0, seed1])}
    assert mean[("de", "")].value == pytest.approx(0.11) and mean[("de", "")].seed is None
    assert mean[("de", "sd")].value == pytest.approx(np.std([0.1, 0.12], ddof=1))
    assert mean[("de", "sd")].metric == "gain_accuracy_sd"  # the legacy name, kept
    assert ("de", "sd") not in {(r.lang, r.stat) for r in average_seeds([seed0])}


def _planted(conf: str, lang: str, seed: int, right: int, n: int = 200) -> list[Any]:
    """A score row of `right`/`n` correct one-word sentences, and its item statistics."""
    from probe.results.items import ItemScores

    stats = np.zeros((n, 2), dtype=np.int64)
    stats[:, 1] = 1
    stats[:right, 0] = 1
    row = Row("mlp", conf, lang, "accuracy", right / n, config=conf, seed=seed)
    return [row, ItemScores(row, stats)]


def test_configuration_gains_have_seed_sd_and_paired_intervals() -> None:
    """A planted +20-point gain on de and fr (both Indo-European, like the source en) and none on
    tr: the gain is the seed mean, its interval excludes 0 where planted and covers 0 where
    not, and the family rows average their languages."""
    from probe.analysis.bootstrap import PairedBootstrap
    from probe.experiments.intermediate_gains import configuration_gains
    from probe.results.items import ItemSet, split_output

    out: list[Any] = []
    for seed, jitter in ((0, 0), (1, 4)):
        for lang, base, gain in (("en", 150, 10), ("de", 100, 40), ("fr", 110, 40),
                                 ("tr", 90, 0)):  # fmt: skip
            out += _planted("none", lang, seed, base + jitter)
            # de, fr: the gain shrinks with seed 1 (a seed sd); tr: x scores as none does.
            out += _planted("x", lang, seed, base + gain - jitter if gain else base + jitter)
    rows, items = split_output(out)
    gains = configuration_gains(get_task("pos"), rows, ItemSet(items), "en",
                                PairedBootstrap(n_boot=300))  # fmt: skip
    got = {(r.group or r.lang, r.stat): r for r in gains}
    assert {r.config for r in gains} == {"x"}
    de = got[("de", "")]
    assert de.value == pytest.approx(np.mean([40 / 200, (40 - 8) / 200]))
    assert de.ci_low is not None and de.ci_high is not None and de.ci_low > 0
    assert got[("de", "sd")].value == pytest.approx(np.std([0.2, 0.16], ddof=1))
    tr = got[("tr", "")]
    assert tr.value == 0 and got[("tr", "sd")].value == 0
    assert tr.ci_low is not None and tr.ci_high is not None and tr.ci_low <= 0 <= tr.ci_high
    assert got[("enf", "")].value == pytest.approx(np.mean([de.value, got[("fr", "")].value]))
    assert got[("noenf", "")].value == pytest.approx(tr.value)
    assert got[("Indo-European", "")].value == pytest.approx(got[("enf", "")].value)
    assert got[("Turkic", "")].ci_low == pytest.approx(tr.ci_low)  # the same one language
    assert ("en", "") in got and got[("en", "")].group == ""  # the source's own gain


def test_recipe_check_names_what_differs() -> None:
    from probe.experiments.intermediate_gains import recipe_differences, recipe_note

    same = {"lr": 5e-3, "max_epochs": 30, "parameters": 1000}
    recipes = {"none": same, "a": dict(same), "b": {**same, "max_epochs": 8, "parameters": 9}}
    assert recipe_differences(recipes) == {"b": ["max_epochs", "parameters"]}
    assert "b: max_epochs, parameters" in recipe_note(recipe_differences(recipes), "")
    assert recipe_note({}, "lr 5e-3").startswith("one recipe")


# --- end to end on the tiny BERT ----------------------------------------------------------


def _extract_config(tmp_path: Path, tiny_bert: Path) -> dict[str, Any]:
    return cache_fields(tmp_path, tiny_bert, data_dir=make_data(tmp_path / "data"),
                        compute_dtype="float32")  # fmt: skip


def test_none_equals_the_grids_dlfa_cell(tmp_path: Path, tiny_bert: Path) -> None:
    """With the dlfa body, 'none' is plain training of the grid's DLFA head: same numbers."""
    ex = _extract_config(tmp_path, tiny_bert)
    train = TrainConfig(lr=2e-3, max_epochs=3)
    config = IntermediateConfig(**ex, via=("udpos",), body="dlfa", layer=1, train=train)
    result = IntermediateExperiment(config, RunOptions(tmp_path / "res", progress=False)).run()
    ours = {(r.lang, r.metric): r.value for r in result.rows if r.config == "none"}
    key = result.directory.parent.name
    job = _PairJob("pos", ex["paths"].cache_root, key, "en", ("en", "de"), "dlfa", (1, 2), 0,
                   GridConfig(**ex, train=train))  # fmt: skip
    grid = {
        (r.lang, r.metric): r.value for r in run_pair(job) if isinstance(r, Row) and not r.subset
    }  # the evaluation split, not the dev rows
    for lang in ("en", "de"):
        assert ours[(lang, "accuracy")] == grid[(lang, "accuracy")]
        assert ours[(lang, "ece")] == pytest.approx(grid[(lang, "ece")], abs=1e-9)
    assert ours[("en", "best_epoch")] == grid[("en", "best_epoch")]


def test_a_killed_run_resumes_with_only_the_missing_seeds(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job per seed: a run killed in its second seed keeps the first (the journal), and the
    rerun trains only the second, with the results of an uninterrupted run."""
    ex = _extract_config(tmp_path, tiny_bert)
    train = replace(intermediate.INTERMEDIATE_TRAINING, max_epochs=2)
    config = IntermediateConfig(**ex, via=("udpos",), seeds=(0, 1), train=train)

    def run(results: Path) -> Any:
        return IntermediateExperiment(config, RunOptions(results, workers=1, progress=False)).run()

    clean = run(tmp_path / "clean")
    seeds: list[int] = []
    run_seed = intermediate_seed.run_seed

    def crash_on_second(job: Any) -> Any:
        seeds.append(job.seed)
        if len(seeds) == 2:
            raise RuntimeError("killed")
        return run_seed(job)

    monkeypatch.setattr(intermediate_seed, "run_seed", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "res")
    jobs = next((tmp_path / "res").glob("pos/*/intermediate-*/jobs"))
    assert sorted(p.name for p in jobs.iterdir()) == ["seed-0.json"]
    seeds.clear()
    resumed = run(tmp_path / "res")
    assert seeds == [1] and not jobs.exists()
    assert resumed.directory.name == clean.directory.name
    assert list(resumed.rows) == list(clean.rows)
    assert (resumed.directory / "results.csv").read_text() == (
        clean.directory / "results.csv"
    ).read_text()
    assert resumed.settings["unconverged_stages"] == clean.settings["unconverged_stages"]


def test_cli_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    data = make_data(tmp_path / "data")
    args = ["intermediate", "--target", "pos", "--via", "udpos,pawsx", "--model", str(tiny_bert),
            "--langs", "en,de", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "res"), "--compute", "float32", "--seeds", "0,1",
            "--max-epochs", "3"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    directory = next((tmp_path / "res" / "pos").glob("*/intermediate-mlp-en-*"))
    for name in ("results.csv", "results.json", "settings.json", "summary.txt", "intermediate.png"):
        assert (directory / name).stat().st_size > 0
    payload = json.loads((directory / "results.json").read_text())
    rows = [Row.from_dict(r) for r in payload["rows"]]
    confs = {r.config for r in rows if r.metric == "accuracy"}
    assert confs == {"none", "udpos", "pawsx", "udpos>pawsx", "udpos+pawsx"}
    # the legacy column keeps the configuration (the stage-language comparison is of none)
    assert {r.layer for r in rows if r.group != "stage-languages"} == confs
    gains = {(r.config, r.group or r.lang) for r in rows if r.metric == "gain_accuracy"}
    assert ("udpos+pawsx", "de") in gains and ("pawsx", "enf") in gains
    assert ("none", "de") not in gains
    assert {(r.config, r.eval_task) for r in rows if r.subset == "dev"} >= {
        ("udpos", "udpos"), ("pawsx", "pawsx"), ("udpos+pawsx", "udpos"), ("udpos+pawsx", "pawsx"),
    }  # fmt: skip
    assert {r.metric for r in rows if r.subset == "dev"} == {"udpos_dev_accuracy",
                                                             "pawsx_dev_accuracy",
                                                             "temperature"}  # fmt: skip
    assert any(r.metric == "gain_accuracy_sd" and r.stat == "sd" for r in rows)
    assert {r.seed for r in rows} == {None, 0, 1}  # per-seed scores kept beside the means
    assert {r.seed for r in rows if r.metric.startswith("gain_")} == {None}
    scores = {(r.config, r.lang, r.seed): r.value for r in rows if r.metric == "accuracy"}
    for (conf, lang, seed), value in scores.items():
        if seed is None:
            per_seed = [scores[(conf, lang, s)] for s in (0, 1)]
            assert value == pytest.approx(np.mean(per_seed))
    # Every gain has its paired bootstrap interval, and it brackets the gain.
    gain_rows = [r for r in rows if r.metric == "gain_accuracy"]
    assert gain_rows and all(r.ci_low is not None and r.ci_high is not None for r in gain_rows)
    assert all(r.ci_low <= r.value + 1e-12 and r.value <= r.ci_high + 1e-12  # type: ignore[operator]
               for r in gain_rows)  # fmt: skip
    assert payload["settings"]["seeds"] == [0, 1]
    assert payload["settings"]["recipe_differences"] == {}
    assert "udpos>pawsx" in out.output and "Δtargets" in out.output
    assert "95% paired bootstrap interval" in out.output and "one recipe" in out.output
    with (directory / "results.csv").open() as f:
        csv_gains = [r for r in csv.DictReader(f) if r["metric"] == "gain_accuracy"]
    assert csv_gains and all(r["ci_low"] and r["ci_high"] for r in csv_gains)


def test_finetune_mode_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.experiments.finetune import FinetuneConfig
    from probe.experiments.intermediate_finetune import (
        IntermediateFinetuneConfig,
        IntermediateFinetuneExperiment,
    )

    data = make_data(tmp_path / "data")
    args = ["intermediate", "--target", "pos", "--via", "udpos", "--model", str(tiny_bert),
            "--langs", "en,de", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "res"), "--finetune", "--epochs", "1",
            "--max-steps", "4", "--batch-size", "4", "--lr", "1e-3", "--body", "dlfa",
            "--device", "cpu"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    directory = next((tmp_path / "res" / "pos").glob("*/intermediate-ft-dlfa-en-*"))
    payload = json.loads((directory / "results.json").read_text())
    got = {(r["config"], r["lang"], r["metric"]): r["value"] for r in payload["rows"]}
    assert all(r["layer"] == r["config"] for r in payload["rows"])  # the legacy column
    stages = {(r["config"], r["eval_task"], r["metric"]) for r in payload["rows"]
              if r["subset"] == "dev"}  # fmt: skip
    assert stages == {("none", "", "pos_dev_accuracy"), ("udpos", "", "pos_dev_accuracy"),
                      ("udpos", "udpos", "udpos_dev_accuracy")}  # fmt: skip
    for conf in ("none", "udpos"):
        assert 0 <= got[(conf, "de", "accuracy")] <= 1
        assert got[(conf, "en", "pos_steps")] == 4
    assert got[("udpos", "en", "udpos_steps")] == 4
    assert ("udpos", "en", "udpos_dev_accuracy") in got
    assert ("none", "en", "udpos_dev_accuracy") not in got
    assert ("udpos", "de", "gain_accuracy") in got
    gain = next(r for r in payload["rows"] if r["metric"] == "gain_accuracy" and r["lang"] == "de")
    assert gain["ci_low"] is not None and gain["ci_low"] <= gain["value"] <= gain["ci_high"]
    assert payload["settings"]["recipe_differences"] == {}
    assert "one recipe" in out.output
    assert payload["settings"]["mode"] == "finetune"
    assert (directory / "intermediate.png").stat().st_size > 0

    ft = FinetuneConfig(model=str(tiny_bert), task="pos", data_dir=data, device="cpu")
    config = IntermediateFinetuneConfig(finetune=ft, via=("pawsx",))
    with pytest.raises(ProbeError, match="word-level tasks only"):
        IntermediateFinetuneExperiment(config, RunOptions(progress=False)).run()
    mixed = CliRunner().invoke(cli, [*args, "--schedule", "mixed"])
    assert mixed.exit_code != 0 and "sequentially only" in mixed.output
    # The configurations share the encoder loaded in this process: no workers, no cluster.
    for extra in (["--workers", "2"], ["--cluster", "tcp://localhost:8786"]):
        refused = CliRunner().invoke(cli, [*args, *extra])
        assert refused.exit_code != 0 and "drop --workers and --cluster" in refused.output


def test_finetune_mode_resumes_after_a_crash_with_only_the_missing_configurations(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fine-tuned configuration takes minutes: one that finished before a crash is
    loaded by the rerun, not trained again, and the results equal an uninterrupted run."""
    from probe.experiments import intermediate_finetune as ift
    from probe.experiments import intermediate_session
    from probe.experiments.finetune import FinetuneConfig

    data = make_data(tmp_path / "data")

    ft = FinetuneConfig(model=str(tiny_bert), task="pos", langs=("en", "de"), data_dir=data,
                        cache_root=tmp_path / "cache", device="cpu", epochs=1, max_steps=3,
                        batch_size=4)  # fmt: skip
    config = ift.IntermediateFinetuneConfig(finetune=ft, via=("udpos",))

    def run(results: Path) -> Any:
        return ift.IntermediateFinetuneExperiment(config, RunOptions(results, progress=False)).run()

    clean = run(tmp_path / "clean")

    scored: list[str] = []
    score = intermediate_session.score_languages

    def crash_on_second(*args: Any, **kwargs: Any) -> Any:
        scored.append(args[9])  # the configuration's name
        if len(scored) == 2:
            raise KeyboardInterrupt
        return score(*args, **kwargs)

    monkeypatch.setattr(intermediate_session, "score_languages", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "res")
    assert scored == ["none", "udpos"]
    jobs = next((tmp_path / "res").glob("pos/*/intermediate-ft-*/jobs"))
    assert sorted(p.name for p in jobs.iterdir()) == ["none.json"]

    scored.clear()
    resumed = run(tmp_path / "res")
    assert scored == ["udpos"]  # "none" came from its saved file
    assert not jobs.exists()  # removed once the results are written
    got = {(r.head, r.layer, r.lang, r.metric): r.value for r in resumed.rows}
    want = {(r.head, r.layer, r.lang, r.metric): r.value for r in clean.rows}
    assert got.keys() == want.keys()
    assert got == pytest.approx(want, abs=1e-6)

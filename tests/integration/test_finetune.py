"""End-to-end fine-tuning on the tiny random BERT: the loss falls, outputs land, pairs refused,
seeds vary training only, scores carry bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.experiments import finetune as finetune_module
from probe.experiments.base import RunOptions, RunResult
from probe.experiments.finetune import FinetuneConfig, FinetuneExperiment
from probe.results.rows import Row
from tests.helpers import SENTENCES, make_ud

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path: Path, tiny_bert: Path, **kw: object) -> FinetuneConfig:
    base: dict[str, object] = dict(
        model=str(tiny_bert), task="pos", langs=("en", "de"),
        data_dir=make_ud(tmp_path / "data", SENTENCES * 8), cache_root=tmp_path / "cache",
        epochs=10, batch_size=4, max_steps=30, lr=1e-3, head_lr=1e-2, warmup=0.0, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def run_finetune(config: FinetuneConfig, results: Path) -> RunResult:
    return FinetuneExperiment(config, RunOptions(results, progress=False)).run()


@pytest.mark.parametrize("fuse_layer", [None, 1])
def test_finetune_loss_falls_and_writes_results(
    tmp_path: Path, tiny_bert: Path, fuse_layer: int | None
) -> None:
    result = run_finetune(_config(tmp_path, tiny_bert, fuse_layer=fuse_layer), tmp_path / "results")
    losses = result.extras["losses"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])

    layer = "last" if fuse_layer is None else "1,2"
    assert result.directory.name.startswith(f"finetune-{'last' if fuse_layer is None else 1}-en-")
    assert result.directory.parent.name == tiny_bert.name
    for name in ("results.csv", "results.json", "settings.json", "summary.txt"):
        assert (result.directory / name).is_file()
    got = {(r.layer, r.lang, r.metric): r.value for r in result.rows}
    for lang in ("en", "de"):
        assert 0.0 <= got[(layer, lang, "accuracy")] <= 1.0
        assert got[(layer, lang, "truncated_words")] == 0
    assert ("finetune", layer) == (result.rows[0].head, result.rows[0].layer)
    assert (layer, "en", "train_loss") in got
    assert (layer, "targets", "accuracy") in got
    assert result.rows.values("layers") == [(2,) if fuse_layer is None else (1, 2)]
    targets = result.rows.one(group="targets", metric="accuracy", seed=None)
    assert targets == result.rows.one(group="targets", metric="accuracy", seed=0)  # one seed
    # The score's interval over the evaluation sentences brackets it.
    for lang in ("en", "de", "targets"):
        (mean,) = result.rows.filter(lang=lang, metric="accuracy", seed=None)
        assert mean.ci_low is not None and mean.ci_high is not None
        assert mean.ci_low <= mean.value <= mean.ci_high
        assert mean.ci_low < mean.ci_high or mean.value in (0.0, 1.0)  # all right: no spread
    assert not result.rows.filter(metric="accuracy_sd")  # no sd from one seed
    assert result.rows.values("subset", metric=lambda m: m.startswith("dev_")) == ["dev"]
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["fuse_layer"] == fuse_layer and settings["steps"] == 30
    assert "accuracy x100" in result.summary and "de" in result.summary
    assert "95% CI" in result.summary and "seed 0" in result.summary


def test_truncated_words_predicted_as_prior(tmp_path: Path, tiny_bert: Path) -> None:
    # max_length 6 leaves 4 subwords per sentence: later words are counted and still scored.
    cfg = _config(tmp_path, tiny_bert, max_length=6, max_steps=2)
    result = run_finetune(cfg, tmp_path / "results")
    got = {(r.lang, r.metric): r.value for r in result.rows}
    assert got[("en", "truncated_words")] > 0
    assert 0.0 <= got[("en", "accuracy")] <= 1.0


def test_pair_task_rejected(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="word-level tasks only"):
        run_finetune(FinetuneConfig(model="minilm", task="xnli", data_dir=tmp_path), tmp_path)


def test_fuse_layer_out_of_range(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="outside 0..2"):
        run_finetune(_config(tmp_path, tiny_bert, fuse_layer=5), tmp_path / "results")


def test_finetune_resumes_after_a_crash_without_training_again(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is one job: killed after it (here: while writing the summary), the rerun loads
    the job's rows from the journal instead of fine-tuning again, and writes the same files."""
    config = _config(tmp_path, tiny_bert, max_steps=6)
    clean = run_finetune(config, tmp_path / "clean")
    real_job, real_table = finetune_module.run_finetune_job, finetune_module.finetune_table
    ran: list[str] = []

    def counted(job: finetune_module._FinetuneJob) -> list[Row]:
        ran.append(job.task)
        return real_job(job)

    def killed(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "run_finetune_job", counted)
    monkeypatch.setattr(finetune_module, "finetune_table", killed)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, tmp_path / "res")
    assert ran == ["pos"]
    jobs = next((tmp_path / "res").glob("pos/*/finetune-*/jobs"))
    assert sorted(p.name for p in jobs.iterdir()) == ["finetune-seed-0.json"]

    monkeypatch.setattr(finetune_module, "finetune_table", real_table)
    resumed = run_finetune(config, tmp_path / "res")
    assert ran == ["pos"]  # not trained again
    assert not jobs.exists()
    assert list(resumed.rows) == list(clean.rows)
    assert resumed.extras["losses"] == clean.extras["losses"]
    assert resumed.summary == clean.summary
    for name in ("results.csv", "summary.txt"):
        assert (resumed.directory / name).read_text() == (clean.directory / name).read_text()


def test_seeds_vary_training_only_and_average(tmp_path: Path, tiny_bert: Path) -> None:
    """--seeds 0,1: one fine-tuning per seed on the same data (drawn with the first seed); the
    seed-0 run equals a run of seed 0 alone, seed 1 trains differently, and the table's
    numbers are the means with an sd and an interval over sentences and seeds."""
    one = run_finetune(_config(tmp_path, tiny_bert, max_steps=6), tmp_path / "one")
    two = run_finetune(_config(tmp_path, tiny_bert, max_steps=6, seeds=(0, 1)), tmp_path / "two")

    def scores(result: RunResult, seed: int | None) -> dict[str, float]:
        return {r.lang: r.value for r in result.rows.filter(metric="accuracy", seed=seed)}

    assert scores(two, 0) == scores(one, 0)
    assert two.extras["seed_losses"][0] == one.extras["losses"]
    assert two.extras["seed_losses"][1] != one.extras["losses"]  # init and order changed
    assert two.settings["train_sentences"] == one.settings["train_sentences"]
    for lang, value in scores(two, None).items():
        assert value == pytest.approx((scores(two, 0)[lang] + scores(two, 1)[lang]) / 2)
        sd = two.rows.one(metric="accuracy_sd", lang=lang, stat="sd")
        assert sd == pytest.approx(abs(scores(two, 0)[lang] - scores(two, 1)[lang]) / np.sqrt(2))
        (mean,) = two.rows.filter(metric="accuracy", lang=lang, seed=None)
        assert mean.ci_low is not None and mean.ci_high is not None
        assert mean.ci_low <= value <= mean.ci_high
    assert "± sd" in two.summary and "mean of seeds [0, 1]" in two.summary
    assert sorted(two.settings["seeds"]) == [0, 1]


def test_seeds_cli_validated(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    out = CliRunner().invoke(cli, ["finetune", "--task", "pos", "--model", "minilm",
                                   "--seeds", "0,0"])  # fmt: skip
    assert out.exit_code != 0 and "lists a seed twice" in out.output

"""Calibration maths against hand-computed values, and `probe calibration` on a tiny cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.bootstrap import PairedBootstrap
from probe.analysis.calibration import (
    apply_temperature,
    ece_from_sums,
    ece_item_stats,
    fit_temperature,
    log_probs,
    nll,
    reliability,
)
from probe.analysis.item_scores import metric_from_sums
from probe.analysis.metrics import expected_calibration_error
from probe.errors import ProbeError
from probe.experiments import calibration as calibration_module
from probe.experiments.base import RunOptions, RunResult
from probe.experiments.calibration import CalibrationConfig, CalibrationExperiment
from probe.experiments.pool import Journal
from probe.results.items import JobOutput
from probe.train import TrainConfig

# --- a tiny UD data directory with chosen treebanks and sentence ids --------------------------
from tests.helpers import SENTENCES, cache_fields, make_treebanks

# --- maths ---------------------------------------------------------------------------------------

PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
GOLD = np.array([0, 1, 1, 0])


def test_reliability_bins_by_hand() -> None:
    """4 bins of width 0.25: confidences 0.9, 0.8 in bin 3 (one right), 0.7, 0.55 in bin 2
    (both right). ECE = 0.5*|1 - 0.625| + 0.5*|0.5 - 0.85| = 0.3625."""
    rel = reliability(PROBS, GOLD, n_bins=4)
    assert rel.counts.tolist() == [0, 0, 2, 2]
    assert rel.accuracy[2:].tolist() == [1.0, 0.5]
    assert rel.confidence[2:] == pytest.approx([0.625, 0.85])
    assert np.isnan(rel.accuracy[:2]).all()
    assert rel.ece == pytest.approx(0.3625)
    assert rel.ece == pytest.approx(expected_calibration_error(PROBS, GOLD, n_bins=4))
    assert rel.as_dict()["accuracy"][:2] == [None, None]


def test_reliability_skips_unlabelled_and_matches_ece_on_random_data() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=500)
    gold = rng.integers(0, 5, size=500)
    gold[::7] = -100
    assert reliability(probs, gold).counts.sum() == np.sum(gold != -100)
    assert reliability(probs, gold).ece == pytest.approx(expected_calibration_error(probs, gold))


def test_nll_by_hand() -> None:
    expected = -np.mean(np.log([0.9, 0.2, 0.7, 0.55]))
    assert nll(PROBS, GOLD) == pytest.approx(expected)
    assert math.isfinite(nll(np.array([[1.0, 0.0]]), np.array([1])))  # floored, not inf


def test_perfectly_calibrated_toy_has_ece_near_zero() -> None:
    """Confidence c uniform on [0.5, 1], right with probability c: ECE is sampling noise."""
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 1.0, size=200_000)
    probs = np.stack([c, 1 - c], axis=1)
    gold = np.where(rng.random(c.shape) < c, 0, 1)
    assert reliability(probs, gold).ece < 0.005
    # The same items made overconfident are clearly miscalibrated.
    sharp = apply_temperature(log_probs(probs), 0.3)
    assert reliability(sharp, gold).ece > 0.1


def test_fit_temperature_by_hand() -> None:
    """Every item has logits (4, 0) and 3 of 4 are class 0: the NLL is lowest where
    sigmoid(4/T) = 3/4, i.e. T = 4 / ln 3."""
    logits = np.array([[4.0, 0.0]] * 4)
    gold = np.array([0, 0, 0, 1])
    assert fit_temperature(logits, gold) == pytest.approx(4 / math.log(3), rel=1e-4)


def test_temperature_scaling_fixes_an_overconfident_toy() -> None:
    """Labels drawn from softmax(z); the head reports 3z. The fit recovers T ~ 3 and lowers
    NLL and ECE; accuracy (the argmax) is unchanged."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(20_000, 4)) * 1.5
    true = apply_temperature(z, 1.0)
    gold = (rng.random((len(true), 1)) > true.cumsum(axis=1)).sum(axis=1)  # one draw per row
    over = 3 * z
    t = fit_temperature(over, gold)
    assert t == pytest.approx(3.0, rel=0.08)
    before, after = apply_temperature(over, 1.0), apply_temperature(over, t)
    assert nll(after, gold) < nll(before, gold) - 0.1
    assert reliability(after, gold).ece < reliability(before, gold).ece / 3
    assert (after.argmax(1) == before.argmax(1)).all()
    # Log-probabilities work as well as logits (softmax ignores a per-row constant).
    assert fit_temperature(log_probs(before), gold) == pytest.approx(t, rel=1e-3)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="temperature must be positive"):
        apply_temperature(PROBS, 0.0)
    with pytest.raises(ValueError, match="labelled item"):
        fit_temperature(PROBS, np.full(4, -100))
    with pytest.raises(ValueError, match="scores"):
        reliability(PROBS[:, 0], GOLD)


# --- the experiment on a tiny cache -------------------------------------------------------------

CALIBRATION_DATA = {
    "UD_English-EWT/en_ewt-ud-dev.conllu": (6, ["en-d"]),
    "UD_English-EWT/en_ewt-ud-test.conllu": (2, ["en-t"]),
    "UD_German-GSD/de_gsd-ud-dev.conllu": (4, ["de-d"]),
    "UD_German-GSD/de_gsd-ud-test.conllu": (2, ["de-t"]),
    "UD_French-GSD/fr_gsd-ud-dev.conllu": (4, ["fr-d"]),
    "UD_French-GSD/fr_gsd-ud-test.conllu": (2, ["fr-t"]),
    "UD_Turkish-IMST/tr_imst-ud-test.conllu": (2, ["tr-t"]),
}


def _config(tmp_path: Path, tiny_bert: Path, **kw: object) -> CalibrationConfig:
    make_treebanks(tmp_path / "data", CALIBRATION_DATA)
    ex = cache_fields(tmp_path, tiny_bert, langs=("en", "tr"), compute_dtype="float32")
    base: dict[str, object] = dict(
        **ex, pooled=("en", "de", "fr"), fuse_layer=1, train_split="dev",
        train=TrainConfig(max_epochs=3), dlfa_train=TrainConfig(max_epochs=2, lr=2e-3),
        seeds=(0, 1), n_boot=200,
    )  # fmt: skip
    base.update(kw)
    return CalibrationConfig(**base)  # type: ignore[arg-type]


def run_calibration(config: CalibrationConfig, tmp_path: Path) -> RunResult:
    options = RunOptions(results_dir=tmp_path / "res", progress=False)
    return CalibrationExperiment(config, options).run()


def test_calibration_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    result = run_calibration(_config(tmp_path, tiny_bert), tmp_path)
    rows = result.rows

    def value(regime: str, layers: tuple[int, ...], lang: str, metric: str, **where: str) -> float:
        return rows.one(config=regime, layers=layers, lang=lang, metric=metric, seed=None,
                        stat="", **where)  # fmt: skip

    heads = {r.head for r in rows if "@" in r.head}
    assert heads == {"linear@en", "linear@en+de+fr", "dlfa@en", "dlfa@en+de+fr"}  # legacy column
    assert set(rows.values("config")) == {"en", "en+de+fr", "en+de+fr-en"}  # + the differences
    # Every layer's probe and DLFA (1,2) scored on every language, before and after T.
    for regime, layers in (("en", (0,)), ("en+de+fr", (2,)), ("en", (1, 2))):
        for lang in ("en", "de", "fr", "tr"):
            for metric in ("accuracy", "ece", "ece_ts", "nll", "nll_ts"):
                assert rows.filter(config=regime, layers=layers, lang=lang, metric=metric,
                                   subset="", group=""), (regime, layers, lang, metric)  # fmt: skip
        # T is fitted by NLL on the head's own dev data: the dev NLL cannot get worse.
        dev = {"subset": "dev"}
        assert value(regime, layers, "dev", "nll_ts", **dev) <= value(
            regime, layers, "dev", "nll", **dev) + 1e-9  # fmt: skip
        assert value(regime, layers, "dev", "temperature", **dev) > 0
    # Held-out targets are the languages neither regime trained on: only tr here.
    assert result.settings["held_out"] == ["tr"]
    assert value("en", (1,), "held-out", "ece", group="held-out") == value("en", (1,), "tr", "ece")
    # Size matching: the pooled head sees about as many words as the English-only one.
    en_words = rows.one(config="en", metric="train_words", subset="dev")
    pooled_words = rows.one(config="en+de+fr", metric="train_words", subset="dev")
    assert 0.5 * en_words <= pooled_words <= 1.2 * en_words
    # ...as a seeded random sample of whole sentences per pooled language, ids recorded.
    subsets = json.loads((result.directory / "subsets.json").read_text())["subsets"]
    for lang in ("de", "fr"):
        (entry,) = [v for k, v in subsets.items() if k.startswith(f"pos/{lang}/dev (max ")]
        assert entry["train_ids"] and set(entry["train_ids"]).isdisjoint(entry["dev_ids"])
        assert entry["cap"] == 6 * 26 // 3 and entry["seed"] == 0  # en's words / 3 languages
    # The reliability diagram agrees with the ECE row.
    diagrams = json.loads((result.directory / "reliability.json").read_text())
    entry = diagrams["linear@en"]["2"]["de"]
    seed0 = rows.one(config="en", layers=(2,), lang="de", metric="ece", seed=0)
    assert entry["ece"] == pytest.approx(seed0)  # the diagrams show the first seed's heads
    assert sum(entry["before"]["counts"]) == sum(len(s) for s in SENTENCES * 2)  # de test words
    for name in ("results.csv", "summary.txt", "reliability_en.png", "reliability_en-de-fr.png",
                 "ece_per_layer.png"):  # fmt: skip
        assert (result.directory / name).stat().st_size > 0, name
    assert "held-out targets (tr)" in result.summary
    # The size-matched design and the split that trained, in one line of the summary.
    design = ("design: the en-only head against the en+de+fr head, each on pos/dev "
              "(--train-split dev; the task's own is train); size-matched: the pooled head "
              "trains on as many words as the en head, 52 per pooled language")  # fmt: skip
    assert design in result.summary
    # Every regime's training data opens the summary; each pooled language within the cap.
    settings = json.loads((result.directory / "settings.json").read_text())
    sizes = settings["train_size"]
    assert set(sizes) == {"en dev (en regime)", "en dev (en+de+fr regime)",
                          "de dev (en+de+fr regime)", "fr dev (en+de+fr regime)"}  # fmt: skip
    assert all(0 < n <= 52 for k, n in sizes.items() if "en+de+fr" in k)
    assert f"trained on de dev (en+de+fr regime): {sizes['de dev (en+de+fr regime)']}" in (
        result.summary
    )
    assert not rows.filter(metric=lambda m: m.startswith("bin_"))  # bins: reliability.json only
    # Seeds: per-seed rows, their mean and sd.
    per_seed = rows.filter(config="en", layers=(2,), lang="tr", metric="ece",
                           seed=lambda s: s is not None)  # fmt: skip
    assert sorted(r.seed for r in per_seed) == [0, 1]
    assert value("en", (2,), "tr", "ece") == pytest.approx(sum(r.value for r in per_seed) / 2)
    assert rows.filter(config="en", layers=(2,), lang="tr", metric="ece_sd", stat="sd")
    # The differences, on the held-out target: DLFA minus its matched baselines (last layer,
    # layer k = 1) per regime, and pooled minus source-only per head, each with an interval.
    for regime in ("en", "en+de+fr"):
        for head, layer in (("dlfa-last", 2), ("dlfa-k", 1)):
            for metric in ("accuracy", "ece"):
                (row,) = rows.filter(head=head, config=regime, lang="tr", metric=f"gain_{metric}",
                                     stat="")  # fmt: skip
                expected = value(regime, (1, 2), "tr", metric) - value(
                    regime, (layer,), "tr", metric
                )
                assert row.value == pytest.approx(expected)
                assert row.ci_low is not None and row.ci_high is not None
                assert row.ci_low <= row.ci_high
    (pooled,) = rows.filter(head="pooled-source:last", lang="tr", metric="gain_ece", stat="")
    assert pooled.config == "en+de+fr-en"
    assert pooled.value == pytest.approx(value("en+de+fr", (2,), "tr", "ece")
                                         - value("en", (2,), "tr", "ece"))  # fmt: skip
    assert "differences x100 on tr" in result.summary and "dlfa-k (en+de+fr)" in result.summary
    assert "recipes differ" in result.summary and settings["recipe_differences"]["lr"] == [
        0.01, 0.002]  # fmt: skip
    assert settings["compared_on"] == ["tr"]


def test_calibration_resumes_with_only_the_missing_heads(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its first job reruns only the other heads and writes the same
    results, reliability.json included (the bins of the saved job come from the journal)."""
    cfg = _config(tmp_path, tiny_bert, langs=("tr",), seeds=(0,), dlfa_train=None)
    whole = run_calibration(cfg, tmp_path)
    # One recipe for every head (dlfa_train None): said in the summary and settings.
    assert "recipe: every head (probes and DLFA) trains alike: 3 epochs" in whole.summary
    assert whole.settings["recipe_differences"] == {}
    reliability_json = (whole.directory / "reliability.json").read_text()
    real = calibration_module.run_head_job
    ran: list[tuple[str, str, int]] = []

    def flaky(job: calibration_module._HeadJob) -> JobOutput:
        ran.append((job.regime, job.kind, job.layer))
        if len(ran) == 2:
            raise RuntimeError("worker lost")
        return real(job)

    monkeypatch.setattr(calibration_module, "run_head_job", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_calibration(cfg, tmp_path)
    assert Journal(whole.directory / "jobs", "").saved() == ["en-linear-0-seed-0"]
    ran.clear()

    def counted(job: calibration_module._HeadJob) -> JobOutput:
        ran.append((job.regime, job.kind, job.layer))
        return real(job)

    monkeypatch.setattr(calibration_module, "run_head_job", counted)
    resumed = run_calibration(cfg, tmp_path)
    assert ("en", "linear", 0) not in ran and len(ran) == 7  # 2 regimes x (3 layers + DLFA) - 1
    assert resumed.directory == whole.directory
    assert list(resumed.rows) == list(whole.rows)
    assert (resumed.directory / "reliability.json").read_text() == reliability_json


def test_calibration_refuses_bad_setups(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="two or more"):
        run_calibration(_config(tmp_path, tiny_bert, pooled=("en",)), tmp_path)
    with pytest.raises(ProbeError, match="no files for language 'xx'"):
        run_calibration(_config(tmp_path, tiny_bert, pooled=("en", "xx")), tmp_path)


def test_ece_item_stats_recompute_the_ece_and_bootstrap_it() -> None:
    """Summed per-sentence bin statistics give back the reliability ECE (unlabelled words
    skipped); the paired bootstrap of an ECE difference is exactly 0 for a head against
    itself and excludes 0 for a head made overconfident on the same items."""
    rng = np.random.default_rng(0)
    n_words, n_classes = 600, 4
    probs = rng.dirichlet(np.ones(n_classes), size=n_words)
    gold = rng.integers(0, n_classes, size=n_words)
    gold[::17] = -100
    offsets = np.arange(0, n_words + 1, 6)  # 100 sentences of 6 words
    stats = ece_item_stats(probs, gold, offsets, n_bins=10)
    assert stats.shape == (100, 30) and stats.dtype == np.int64
    assert float(ece_from_sums(stats.sum(axis=0))) == pytest.approx(
        reliability(probs, gold, 10).ece, abs=1e-6)  # fmt: skip
    assert float(metric_from_sums("ece", stats.sum(axis=0))) == pytest.approx(
        float(ece_from_sums(stats.sum(axis=0))))  # fmt: skip
    boot = PairedBootstrap(n_boot=200)
    same = boot.delta({"tr": [stats]}, {"tr": [stats]}, "ece", ["tr"])
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    sharp = apply_temperature(log_probs(probs), 0.2)  # same argmax, far more confident
    worse = ece_item_stats(sharp, gold, offsets, n_bins=10)
    got = boot.delta({"tr": [worse]}, {"tr": [stats]}, "ece", ["tr"])
    assert got.excludes_zero and got.low > 0
    with pytest.raises(ValueError, match="offsets ending at the word count"):
        ece_item_stats(probs, gold, offsets[:-1], n_bins=10)

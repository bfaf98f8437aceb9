"""`probe intermediate`'s calibration and domain-shift scores per configuration (tiny BERT)."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from probe.analysis.calibration import apply_temperature, log_probs, reliability
from probe.analysis.metrics import expected_calibration_error
from probe.cli import cli
from probe.data.overlap import SentenceSet
from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments import intermediate, intermediate_seed
from probe.experiments.base import RunOptions
from probe.experiments.intermediate import IntermediateConfig, IntermediateExperiment
from probe.experiments.intermediate_calibration import (
    GROUP,
    MULTILINGUAL,
    OTHER_LANGUAGE,
    PAIRS,
    SOURCE_ONLY,
    matched_pairs,
    stage_group,
    stage_language_rows,
)
from probe.experiments.intermediate_domains import (
    domain_plan,
    domain_requests,
    reference_split,
    seen_domain_rows,
)
from probe.experiments.intermediate_plan import Configuration
from probe.experiments.leakage import Sentences, SplitRef
from probe.results.rows import Row
from tests.helpers import SENTENCES, cache_fields, conllu_text
from tests.integration.test_intermediate import make_data

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = replace(intermediate.INTERMEDIATE_TRAINING, max_epochs=2)


# Sentences of at least 40 characters (the leakage guard's MIN_CHARS): GUM's training
# sentences, which the udpos training file holds too (as XTREME's English udpos train does).
GUM_TRAIN = [["Sentences", "about", "something", "else", "entirely", "and", "long", str(i)]
             for i in range(3)]  # fmt: skip


def with_domains(root: Path) -> Path:
    """make_data plus English GUM (train, dev, test) and PUD and German PUD test sets (other
    domains); udpos's English train also holds GUM's train sentences."""
    make_data(root)
    sets = {"UD_English-GUM/en_gum-ud-test.conllu": SENTENCES[1:] * 2,
            "UD_English-GUM/en_gum-ud-train.conllu": GUM_TRAIN,
            "UD_English-GUM/en_gum-ud-dev.conllu": SENTENCES[:2],
            "UD_English-PUD/en_pud-ud-test.conllu": SENTENCES[2:] * 3,
            "UD_German-PUD/de_pud-ud-test.conllu": SENTENCES[::-1] * 2}  # fmt: skip
    for rel, sents in sets.items():
        path = root / "ud" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conllu_text(sents), encoding="utf-8")
    udpos = root / "xtreme" / "udpos" / "en" / "train-en.tsv"
    udpos.write_text(udpos.read_text() + "\n" + "\n\n".join(
        "\n".join(f"{w}\tNOUN" for w in s) for s in GUM_TRAIN) + "\n")  # fmt: skip
    return root


def _run(tmp_path: Path, tiny_bert: Path, data: Path, **kw: Any) -> Any:
    ex = cache_fields(tmp_path, tiny_bert, data_dir=data, compute_dtype="float32")
    config = IntermediateConfig(**ex, via=("udpos",), train=TRAIN, **kw)
    return IntermediateExperiment(config, RunOptions(tmp_path / "res", progress=False)).run()


# --- calibration ---------------------------------------------------------------------------


def test_ece_per_configuration_equals_the_calibration_modules(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every configuration's ece / ece_ts rows equal probe.analysis.calibration's ECE of the
    very predictions the head made (before, and after scaling by the run's own T)."""
    seen: list[tuple[str, str, np.ndarray, np.ndarray, float]] = []
    original = intermediate_seed.calibration_rows

    def recording(row: Any, lang: str, probs: np.ndarray, gold: np.ndarray, t: float) -> Any:
        seen.append((row.keywords["config"], lang, probs.copy(), gold.copy(), t))
        return original(row, lang, probs, gold, t)

    monkeypatch.setattr(intermediate_seed, "calibration_rows", recording)
    result = _run(tmp_path, tiny_bert, make_data(tmp_path / "data"))
    rows = {(r.config, r.lang, r.metric): r.value for r in result.rows
            if r.seed == 0 and not r.eval_task}  # fmt: skip
    assert {(c, lang) for c, lang, *_ in seen} == {(c, lang) for c in ("none", "udpos")
                                                   for lang in ("en", "de")}  # fmt: skip
    for conf, lang, probs, gold, t in seen:
        assert rows[(conf, "en", "temperature")] == t and t > 0  # fitted on the source's dev
        assert rows[(conf, lang, "ece")] == pytest.approx(reliability(probs, gold).ece, abs=1e-12)
        scaled = apply_temperature(log_probs(probs), t)
        assert rows[(conf, lang, "ece_ts")] == pytest.approx(reliability(scaled, gold).ece,
                                                             abs=1e-12)  # fmt: skip
    # The seed means carry them too, and the summary has the ECE column.
    means = {(r.config, r.metric) for r in result.rows if r.seed is None}
    assert {("none", "ece_ts"), ("udpos", "ece_ts"), ("udpos", "temperature")} <= means
    assert "ECE_ts" in result.summary and "stage languages" in result.summary


def _ece_rows(values: dict[tuple[str, str, int], float]) -> list[Row]:
    return [Row("mlp", conf, lang, metric, v, config=conf, seed=seed)
            for (conf, lang, seed), v in values.items()
            for metric in ("ece", "ece_ts")]  # fmt: skip


def test_stage_language_groups_and_matched_pairs() -> None:
    """Three groups of single-stage configurations (sets and "none" in none), their means
    with an interval over target languages and the seed sd, and each non-source stage
    against the source-only stage of its task, per target language averaged."""
    plan = [Configuration(()), Configuration(("pos",)), Configuration(("pos:tr",)),
            Configuration(("pos:en+tr+vi",)), Configuration(("panx:de",)),
            Configuration(("pos", "pos:tr"))]  # fmt: skip
    assert [stage_group(c, "en") for c in plan] == [None, SOURCE_ONLY, OTHER_LANGUAGE,
                                                    MULTILINGUAL, OTHER_LANGUAGE, None]  # fmt: skip
    # panx's English stage is not in the plan: panx:de has no pair.
    assert matched_pairs(plan, "en") == [("pos:tr", "pos"), ("pos:en+tr+vi", "pos")]
    targets = ("de", "fr", "ja")
    base = {"de": 0.10, "fr": 0.20, "ja": 0.30}
    shift = {"pos": 0.0, "pos:tr": -0.05, "pos:en+tr+vi": -0.02, "panx:de": 0.04,
             "pos>pos:tr": 0.5}  # fmt: skip
    values = {}
    for seed in (0, 1):
        for lang in ("en", *targets):
            values[("none", lang, seed)] = 0.9  # never in a group
            for conf, d in shift.items():
                values[(conf, lang, seed)] = base.get(lang, 0.5) + d + 0.01 * seed * (d < 0)
    rows = stage_language_rows(_ece_rows(values), plan, "en", n_boot=200)
    got = {(r.config, r.metric, r.stat, r.group): r for r in rows}
    assert all(r.lang == "targets" and r.group in (GROUP, PAIRS) for r in rows)
    # Group means: over the group's configurations and the targets (source left out).
    assert got[(SOURCE_ONLY, "ece", "", GROUP)].value == pytest.approx(0.20)
    other = np.mean([0.20 - 0.05 + 0.005, 0.20 + 0.04])  # pos:tr (seed mean) and panx:de
    assert got[(OTHER_LANGUAGE, "ece", "", GROUP)].value == pytest.approx(other)
    assert got[(MULTILINGUAL, "ece", "", GROUP)].value == pytest.approx(0.20 - 0.02 + 0.005)
    for g in (SOURCE_ONLY, OTHER_LANGUAGE, MULTILINGUAL):
        mean = got[(g, "ece", "", GROUP)]
        assert mean.ci_low is not None and mean.ci_high is not None
        assert mean.ci_low <= mean.value <= mean.ci_high
    assert got[(MULTILINGUAL, "ece_sd", "sd", GROUP)].value == pytest.approx(
        np.std([0.18, 0.19], ddof=1)
    )
    assert got[(SOURCE_ONLY, "ece_sd", "sd", GROUP)].value == pytest.approx(0.0)
    # Matched pairs: the stage minus its task's source-only stage (layer), per language.
    pair = got[("pos:tr", "delta_ece", "", PAIRS)]
    assert pair.layer == "pos" and pair.value == pytest.approx(-0.045)
    assert pair.ci_low <= pair.value <= pair.ci_high  # type: ignore[operator]
    assert got[("pos:tr", "delta_ece_sd", "sd", PAIRS)].value == pytest.approx(
        np.std([-0.05, -0.04], ddof=1)
    )
    assert got[("pos:en+tr+vi", "delta_ece_ts", "", PAIRS)].value == pytest.approx(-0.015)
    assert not any(r.config in ("panx:de", "pos>pos:tr") for r in rows if r.group == PAIRS)
    # Two target languages: too few to resample, so no interval (never a zero-width one).
    one = {k: v for k, v in values.items() if k[1] in ("en", "de", "fr")}
    row = next(r for r in stage_language_rows(_ece_rows(one), plan, "en")
               if r.metric == "delta_ece")  # fmt: skip
    assert row.ci_low is None and row.ci_high is None


def test_ece_matches_metrics_module_on_scaled_probs() -> None:
    """The ECE of the scaled predictions is the metrics module's ECE (same binning)."""
    from probe.experiments.intermediate_calibration import calibration_rows

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=300)
    gold = rng.integers(0, 5, 300)
    row = functools.partial(Row, "mlp", "none", config="none", seed=0)
    (ece_ts,) = calibration_rows(row, "de", probs, gold, 1.7)
    scaled = apply_temperature(log_probs(probs), 1.7)
    assert ece_ts.metric == "ece_ts" and ece_ts.lang == "de"
    assert ece_ts.value == pytest.approx(expected_calibration_error(scaled, gold), abs=1e-12)
    assert ece_ts.value == pytest.approx(reliability(scaled, gold).ece, abs=1e-12)


# --- domain shift -----------------------------------------------------------------------------


def test_domain_plan_is_found_in_the_data(tmp_path: Path) -> None:
    data = with_domains(tmp_path / "data")
    pos = get_task("pos")
    # de's pos test is GSD, so pos-gsd is its own domain there; PUD is another.
    assert domain_plan(pos, ("en", "de"), data) == (("en", ("pos-gum", "pos-pud")),
                                                    ("de", ("pos-pud",)))  # fmt: skip


def test_domain_sets_are_sampled_as_the_targets_evaluation_splits() -> None:
    """--max-eval-sentences caps the other-domain sets too (with --max-sentences)."""
    plan = (("en", ("pos-gum", "pos-pud")), ("de", ("pos-pud",)))
    requests = {r.task: r for r in domain_requests(plan, 50, 3, 7)}
    assert requests["pos-pud"].langs == ("en", "de") and requests["pos-gum"].langs == ("en",)
    for r in requests.values():
        assert (r.max_sentences, r.max_eval_sentences, r.seed) == (50, 7, 3)
        assert r.splits == ("test",)


def _sentences(*texts: str) -> Sentences:
    return Sentences(
        SentenceSet.from_texts([(t,) for t in texts], [f"s{i}" for i in range(len(texts))]), True
    )


def test_seen_domain_is_the_overlap_with_the_sets_corpus(tmp_path: Path) -> None:
    """A set is seen by a configuration when more than 1% of its corpus's train sentences
    (>= 40 characters) are in a stage's (or the target's) train/dev splits; a corpus with
    no train split stands in with its dev, then its evaluation split."""
    data = with_domains(tmp_path / "data")
    assert reference_split(get_task("pos-gum"), "en", data) == SplitRef("pos-gum", "en", "train")
    assert reference_split(get_task("pos-pud"), "en", data) == SplitRef("pos-pud", "en", "test")
    long = [f"a sentence long enough to count as a copy number {i}" for i in range(200)]
    trained = {SplitRef("udpos", "en", "train"): _sentences(*long[:3], "short"),
               SplitRef("udpos", "en", "dev"): _sentences("short"),
               SplitRef("pos", "en", "train"): _sentences(long[150]),
               SplitRef("pos", "en", "dev"): _sentences("x")}  # fmt: skip
    files = {SplitRef("pos-gum", "en", "train"): _sentences(*long[:100]),
             SplitRef("pos-pud", "en", "test"): _sentences(*long[100:200])}  # fmt: skip
    read_trained, read_files = trained.__getitem__, files.__getitem__
    plan = [Configuration(()), Configuration(("udpos",))]
    target = (SplitRef("pos", "en", "train"), SplitRef("pos", "en", "dev"))
    rows = seen_domain_rows(plan, (("en", ("pos-gum", "pos-pud")),), target, read_trained,
                            read_files, data)  # fmt: skip
    got = {(r.config, r.eval_task, r.metric): r for r in rows}
    assert got[("udpos", "pos-gum", "seen_share")].value == pytest.approx(0.03)
    assert got[("udpos", "pos-gum", "seen_domain")].value == 1.0
    assert got[("udpos", "pos-gum", "seen_domain")].subset == "train"
    assert got[("none", "pos-gum", "seen_domain")].value == 0.0  # pos's own train has none
    # The target's own train holds 1 of PUD's 100: 1%, not above the limit.
    assert got[("none", "pos-pud", "seen_share")].value == pytest.approx(0.01)
    assert got[("udpos", "pos-pud", "seen_domain")].value == 0.0
    assert got[("udpos", "pos-pud", "seen_domain")].subset == "test"


def test_eval_domains_is_refused_without_other_domain_sets(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")  # EWT and GSD only: no other domain anywhere
    with pytest.raises(ProbeError, match="--eval-domains: no language of 'pos'"):
        domain_plan(get_task("pos"), ("en", "de"), data)
    with pytest.raises(ProbeError, match="'udpos' has no other-domain"):  # not a UD-treebank task
        domain_plan(get_task("udpos"), ("en",), data)
    with pytest.raises(ProbeError, match="pass --data-dir"):
        domain_plan(get_task("pos"), ("en",), None)


def test_eval_domains_refused_by_the_cli(tmp_path: Path, tiny_bert: Path) -> None:
    data = make_data(tmp_path / "data")
    base = ["intermediate", "--target", "pos", "--via", "udpos", "--model", str(tiny_bert),
            "--langs", "en,de", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "res"), "--eval-domains"]  # fmt: skip
    out = CliRunner().invoke(cli, [*base, "--finetune"])
    assert out.exit_code != 0 and "--eval-domains scores cached-feature heads only" in out.output
    out = CliRunner().invoke(cli, base)
    assert out.exit_code != 0 and "no other-domain evaluation set" in out.output


def test_domain_shift_rows_on_the_tiny_model(tmp_path: Path, tiny_bert: Path) -> None:
    """Scores on every other-domain set, drops = in-domain minus out-of-domain per seed and
    in the mean (with an unpaired interval), drop minus none's, and the training flags."""
    result = _run(tmp_path, tiny_bert, with_domains(tmp_path / "data"), seeds=(0, 1),
                  eval_domains=True)  # fmt: skip
    rows = list(result.rows)
    score = {(r.config, r.lang, r.eval_task, r.seed): r.value for r in rows
             if r.metric == "accuracy" and not r.stat and not r.group and not r.subset}  # fmt: skip
    sets = {(lang, task) for _, lang, task, _ in score if task}
    assert sets == {("en", "pos-gum"), ("en", "pos-pud"), ("de", "pos-pud")}
    drops = [r for r in rows if r.metric == "drop_accuracy" and not r.stat and not r.group]
    assert {(r.config, r.lang, r.eval_task) for r in drops} == {
        (c, lang, task) for c in ("none", "udpos") for lang, task in sets}  # fmt: skip
    for r in drops:
        seeds = (r.seed,) if r.seed is not None else (0, 1)
        expected = np.mean([score[(r.config, r.lang, "", s)] - score[(r.config, r.lang,
                                                                          r.eval_task, s)]
                            for s in seeds])  # fmt: skip
        assert r.value == pytest.approx(expected, abs=1e-12)
        if r.seed is None:
            assert r.ci_low is not None and r.ci_high is not None
            assert r.ci_low <= r.value + 1e-12 and r.value <= r.ci_high + 1e-12
    means = {(r.config, r.lang, r.eval_task): r.value for r in drops if r.seed is None}
    pooled = {r.config: r for r in rows if r.metric == "drop_accuracy" and r.group == "sets"
              and not r.stat}  # fmt: skip
    for conf in ("none", "udpos"):
        assert pooled[conf].value == pytest.approx(
            np.mean([means[(conf, lang, task)] for lang, task in sets]), abs=1e-12
        )
    diffs = {(r.lang, r.eval_task): r for r in rows if r.metric == "dropdiff_accuracy"
             and not r.stat}  # fmt: skip
    assert {r.config for r in diffs.values()} == {"udpos"}  # none is not compared with itself
    for lang, task in sets:
        assert diffs[(lang, task)].value == pytest.approx(
            means[("udpos", lang, task)] - means[("none", lang, task)], abs=1e-12
        )
        assert diffs[(lang, task)].ci_low is not None
    assert diffs[("all", "")].value == pytest.approx(
        pooled["udpos"].value - pooled["none"].value, abs=1e-12
    )
    # Training size: en small; de has no train split in the data, so unknown (not small).
    words = {r.lang: r.value for r in rows if r.metric == "train_words"}
    small = {r.lang: r.value for r in rows if r.metric == "small_train"}
    unknown = {r.lang for r in rows if r.metric == "train_unknown" and r.value == 1.0}
    ewt_train = sum(len(s) for s in SENTENCES * 4)
    assert words == {"en": ewt_train} and small == {"en": 1.0} and unknown == {"de"}
    # udpos's train holds GUM's train sentences: en:pos-gum is a seen domain for udpos only.
    seen = {(r.config, r.lang, r.eval_task): r.value for r in rows if r.metric == "seen_domain"}
    assert seen == {(c, lang, task): float(c == "udpos" and task == "pos-gum")
                    for c in ("none", "udpos") for lang, task in sets}  # fmt: skip
    share = next(r for r in rows if r.metric == "seen_share" and r.config == "udpos"
                 and r.eval_task == "pos-gum")  # fmt: skip
    assert share.value == 1.0 and share.subset == "train"
    summary = result.summary
    assert "domain shift" in summary and "en:pos-gum" in summary
    assert "seen domains (†)" in summary and "  udpos: en:pos-gum 100% of train" in summary
    assert "unknown (no training split in the data, so neither small nor large): de" in summary
    assert result.settings["eval_domains"] is True
    assert result.settings["eval_domains_plan"] == {"en": ["pos-gum", "pos-pud"],
                                                    "de": ["pos-pud"]}  # fmt: skip


def test_calibration_interval_resamples_seeds_too() -> None:
    """Every target language alike but one seed far off: an interval over languages alone
    would have zero width; drawing the seeds as well must widen it, and two targets give
    none."""
    from probe.experiments.intermediate_calibration import _crossed_interval

    cube = np.array([[0.05] * 4, [0.05] * 4, [0.60] * 4])  # (seeds, targets)
    low, high = _crossed_interval(cube, seed=0, n_boot=500)  # type: ignore[misc]
    assert low < cube.mean() < high and high - low > 0.2
    assert _crossed_interval(cube[:, :2], seed=0, n_boot=500) is None

"""`probe domain-shift` on a tiny cache: drops, genres, DLFA, skipped languages, new corpora."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe import cache as store
from probe.analysis.bootstrap import PairedBootstrap, drop_delta, unpaired_delta
from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments import domain_shift as domain_shift_module
from probe.experiments.base import RunOptions, RunResult
from probe.experiments.domain_shift import DomainShiftConfig, DomainShiftExperiment, drops
from probe.experiments.pool import Journal
from probe.results.items import JobOutput
from probe.results.rows import Row
from probe.runtime.fileid import files_sha256
from probe.train import TrainConfig
from tests.helpers import cache_fields, config, extract, make_treebanks

EWT = ["email-a-", "reviews-b-"]  # EWT ids encode the genre
DATA = {
    "UD_English-EWT/en_ewt-ud-dev.conllu": (6, EWT),
    "UD_English-EWT/en_ewt-ud-test.conllu": (2, EWT),
    "UD_English-GUM/en_gum-ud-test.conllu": (2, ["GUM_academic_x-", "GUM_news_y-"]),
    "UD_English-PUD/en_pud-ud-test.conllu": (2, ["n0100", "w0100"]),
    "UD_German-GSD/de_gsd-ud-dev.conllu": (4, ["train-s"]),
    "UD_German-GSD/de_gsd-ud-test.conllu": (2, ["test-s"]),
    "UD_German-PUD/de_pud-ud-test.conllu": (2, ["n0100"]),
    "UD_Spanish-GSD/es_gsd-ud-dev.conllu": (2, ["train-s"]),
    "UD_Spanish-GSD/es_gsd-ud-test.conllu": (2, ["test-s"]),  # no Spanish PUD: skipped
}


def _config(tmp_path: Path, tiny_bert: Path, **kw: object) -> DomainShiftConfig:
    make_treebanks(tmp_path / "data", DATA)
    ex = cache_fields(tmp_path, tiny_bert, langs=("all",), compute_dtype="float32")
    base: dict[str, object] = dict(
        **ex, fuse_layer=1, train=TrainConfig(max_epochs=3),
        dlfa_train=TrainConfig(max_epochs=2, lr=2e-3), small_train_words=120, train_split="dev",
        seeds=(0, 1), n_boot=200,
    )  # fmt: skip
    base.update(kw)
    return DomainShiftConfig(**base)  # type: ignore[arg-type]


def run_domain_shift(config: DomainShiftConfig, tmp_path: Path) -> RunResult:
    options = RunOptions(results_dir=tmp_path / "res", progress=False)
    return DomainShiftExperiment(config, options).run()


def test_drop_is_in_domain_minus_out_of_domain() -> None:
    task = get_task("pos")
    linear, dlfa = {"layers": (0,), "config": "en"}, {"layers": (1, 2), "config": "en"}
    rows = [
        Row("linear", "0", "en:pos", "accuracy", 0.9, **linear),
        Row("linear", "0", "en:pos-gum", "accuracy", 0.7, eval_task="pos-gum", **linear),
        Row("linear", "0", "en:pos-pud", "accuracy", 0.95, eval_task="pos-pud", **linear),
        Row("dlfa", "1,2", "en:pos", "accuracy", 0.8, **dlfa),
        Row("dlfa", "1,2", "en:pos-gum", "accuracy", 0.75, eval_task="pos-gum", **dlfa),
        # genre rows are no domain
        Row("linear", "0", "en:pos#email", "accuracy", 0.5, subset="email", **linear),
    ]  # fmt: skip
    plan = {"en": ["pos-gum", "pos-pud"]}
    got = {(r.head, r.layers, r.config, r.eval_task): r.value for r in drops(rows, task, plan)}
    assert got == pytest.approx({
        ("linear", (0,), "en", "pos-gum"): 0.2,
        ("linear", (0,), "en", "pos-pud"): -0.05,
        ("dlfa", (1, 2), "en", "pos-gum"): 0.05,
    })  # fmt: skip
    # The legacy columns keep their strings.
    assert {(r.layer, r.lang) for r in drops(rows, task, plan)} == {
        ("0", "en:pos-gum"), ("0", "en:pos-pud"), ("1,2", "en:pos-gum")}  # fmt: skip
    assert all(r.metric == "drop_accuracy" for r in drops(rows, task, plan))


def test_domain_shift_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    result = run_domain_shift(_config(tmp_path, tiny_bert), tmp_path)
    assert result.settings["languages"] == {"en": ["pos-gum", "pos-pud"], "de": ["pos-pud"]}
    # A language that does not run is said, with its reason, in settings.json and the summary.
    reason = "no out-of-domain corpus among pos-gum, pos-pud"
    assert result.settings["skipped"] == {"es": reason}
    saved = json.loads((result.directory / "settings.json").read_text())
    assert saved["skipped"] == {"es": reason}
    assert f"skipped: es ({reason})" in result.summary.splitlines()
    assert ("design: every language's heads train on its own pos/dev (--train-split dev; the "
            "task's own is train); not size-matched") in result.summary  # fmt: skip
    rows = result.rows

    def value(head: str, layers: tuple[int, ...], lang: str, metric: str, eval_task: str = "",
              genre: str = "") -> float:  # fmt: skip
        return rows.one(head=head, layers=layers, config=lang, metric=metric,
                        eval_task=eval_task, subset=genre, seed=None, stat="")  # fmt: skip

    # Every layer's probe and DLFA (1,2), in and out of domain, and the drop between them.
    for head, layers in [("linear", (0,)), ("linear", (1,)), ("linear", (2,)), ("dlfa", (1, 2))]:
        for lang, outs in (("en", ("pos-gum", "pos-pud")), ("de", ("pos-pud",))):
            inside = value(head, layers, lang, "accuracy")  # in-domain: eval_task ""
            for out in outs:
                drop = value(head, layers, lang, "drop_accuracy", out)
                assert drop == pytest.approx(inside - value(head, layers, lang, "accuracy", out))
    # Genres from sentence ids: EWT test has email and reviews; their word-weighted mean is
    # the whole set's accuracy (every sentence belongs to one genre here).
    genre = {g: value("linear", (2,), "en", "accuracy", "", g) for g in ("email", "reviews")}
    n_email = n_reviews = 0
    from tests.helpers import SENTENCES

    for i, sent in enumerate(SENTENCES * 2):
        if i % 2 == 0:
            n_email += len(sent)
        else:
            n_reviews += len(sent)
    mean = (genre["email"] * n_email + genre["reviews"] * n_reviews) / (n_email + n_reviews)
    assert mean == pytest.approx(value("linear", (2,), "en", "accuracy"))
    assert rows.filter(head="linear", layers=(2,), config="en", eval_task="pos-pud",
                       subset="news", metric="accuracy")  # fmt: skip
    assert not rows.filter(config="de", eval_task="", subset=bool)  # GSD ids carry no genre
    # The legacy lang column still names the set and its genre.
    (news,) = rows.filter(head="linear", layers=(2,), subset="news", eval_task="pos-pud",
                          seed=None, stat="")  # fmt: skip
    assert (news.lang, news.layer) == ("en:pos-pud#news", "2")
    # Training data sizes and the small-training-set flag (threshold 120 words: en has 156, de 104).
    assert value("data", (), "en", "small_train") == 0.0
    assert value("data", (), "de", "small_train") == 1.0
    assert value("data", (), "de", "train_words") == sum(len(s) for s in SENTENCES * 4)
    for name in ("results.csv", "summary.txt", "domain_shift.png", "drop_per_layer.png"):
        assert (result.directory / name).stat().st_size > 0, name
    assert "last-D" in result.summary and "per genre" in result.summary
    # Seeds: per-seed rows for every head, the mean over them, and an sd row (two seeds).
    per_seed = rows.filter(head="linear", layers=(1,), config="en", metric="accuracy",
                           eval_task="pos-gum", subset="",
                           seed=lambda s: s is not None)  # fmt: skip
    assert sorted(r.seed for r in per_seed) == [0, 1]
    mean = value("linear", (1,), "en", "accuracy", "pos-gum")
    assert mean == pytest.approx(sum(r.value for r in per_seed) / 2)
    assert rows.filter(head="linear", layers=(1,), config="en", eval_task="pos-gum", subset="",
                       metric="accuracy_sd", stat="sd")  # fmt: skip
    # Every mean drop carries its interval, around its value.
    for r in rows.filter(metric="drop_accuracy", seed=None, stat=""):
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low <= r.value + 1e-9 and r.value <= r.ci_high + 1e-9
    # The matched baselines: last-D and k-D per set and over all sets, the seed mean of
    # (probe drop - DLFA drop), with an interval; k = 1 here, so k-D uses layer 1's drops.
    for which, layer in (("last-D", 2), ("k-D", 1)):
        for lang, out in (("en", "pos-gum"), ("en", "pos-pud"), ("de", "pos-pud")):
            (row,) = rows.filter(head=which, config=lang, eval_task=out, stat="",
                                 metric="dropdiff_accuracy")  # fmt: skip
            expected = (value("linear", (layer,), lang, "drop_accuracy", out)
                        - value("dlfa", (1, 2), lang, "drop_accuracy", out))  # fmt: skip
            assert row.value == pytest.approx(expected)
            assert row.ci_low is not None and row.ci_low <= row.value + 1e-9 <= row.ci_high + 2e-9
        assert rows.filter(head=which, lang="all", group="sets", metric="dropdiff_accuracy")
    assert "DLFA against its matched single-layer baselines" in result.summary
    # The recipes differ here (the test gives DLFA its own): the summary and settings say how.
    assert "recipes differ" in result.summary and "max_epochs 3 (probes) vs 2 (DLFA)" in (
        result.summary
    )
    assert saved["recipe_differences"]["max_epochs"] == [3, 2]
    assert "seeds 0,1: every head trains once per seed" in result.summary


def test_language_without_the_training_split_is_skipped_with_the_way_round(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """pos trains on train by default: German GSD (dev and test only here) does not run, and
    settings.json and the summary say so and name --train-split dev; with --max-train-words
    the design line says the languages are size-matched."""
    data = {**DATA, "UD_English-EWT/en_ewt-ud-train.conllu": (6, EWT)}
    make_treebanks(tmp_path / "data", data)
    cfg = _config(tmp_path, tiny_bert, train_split=None, genres=False, max_train_words=40,
                  dlfa_train=None, seeds=(0,))  # fmt: skip
    from dataclasses import replace

    cfg = replace(cfg, langs=("en", "de"))
    result = run_domain_shift(cfg, tmp_path)
    why = "pos has no train split here (--train-split dev trains on its dev split)"
    assert result.settings["skipped"] == {"de": why}
    assert list(result.settings["languages"]) == ["en"]
    lines = result.summary.splitlines()
    assert f"skipped: de ({why})" in lines
    assert any(line.startswith("design: every language's heads train on its own pos/train; "
                               "size-matched") and "40 words" in line
               for line in lines)  # fmt: skip
    # One recipe (dlfa_train None): every head trains with `train`, and the summary says so.
    assert result.settings["recipe_differences"] == {}
    assert any(line.startswith("recipe: every head (probes and DLFA) trains alike: 3 epochs")
               for line in lines)  # fmt: skip
    assert "seed 0 (one per head: no sd" in result.summary
    # With no language left, the one-line error carries every reason.
    with pytest.raises(ProbeError, match=r"de: pos has no train split here \(--train-split dev"):
        run_domain_shift(replace(cfg, langs=("de",)), tmp_path)


def test_domain_shift_best_k_picks_lowest_dev_loss(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = _config(tmp_path, tiny_bert, fuse_layer="best", genres=False)
    from dataclasses import replace

    cfg = replace(cfg, langs=("de",))
    result = run_domain_shift(cfg, tmp_path)
    for seed in (0, 1):  # each seed's DLFA picks its own k by its own dev losses
        losses = {r.layers: r.value for r in result.rows.filter(metric="dev_loss", seed=seed)}
        assert set(losses) == {(0, 2), (1, 2)}
        chosen = set(result.rows.values("layers", head="dlfa", metric="accuracy", seed=seed))
        assert chosen == {min(losses, key=losses.__getitem__)}


def test_domain_shift_resumes_with_only_the_missing_languages(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its first job reruns only the second, and gives the same results."""
    cfg = _config(tmp_path, tiny_bert, genres=False, seeds=(3,))
    whole = run_domain_shift(cfg, tmp_path)
    first, second = (f"{lang}-seed-3" for lang in whole.settings["languages"])  # de, en
    real = domain_shift_module.run_language_job
    ran: list[str] = []

    def flaky(job: domain_shift_module._LanguageJob) -> JobOutput:
        ran.append(f"{job.lang}-seed-{job.seed}")
        if len(ran) == 2:
            raise RuntimeError("worker lost")
        return real(job)

    monkeypatch.setattr(domain_shift_module, "run_language_job", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_domain_shift(cfg, tmp_path)
    assert Journal(whole.directory / "jobs", "").saved() == [first]
    ran.clear()

    def counted(job: domain_shift_module._LanguageJob) -> JobOutput:
        ran.append(f"{job.lang}-seed-{job.seed}")
        return real(job)

    monkeypatch.setattr(domain_shift_module, "run_language_job", counted)
    resumed = run_domain_shift(cfg, tmp_path)
    assert ran == [second]
    assert resumed.directory == whole.directory
    assert list(resumed.rows) == list(whole.rows)
    assert resumed.summary == whole.summary


def test_domain_shift_refuses_bad_setups(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="label set"):
        run_domain_shift(_config(tmp_path, tiny_bert, out_tasks=("ner",)), tmp_path)
    with pytest.raises(ProbeError, match="in-domain task itself"):
        run_domain_shift(_config(tmp_path, tiny_bert, out_tasks=("pos",)), tmp_path)
    cfg = _config(tmp_path, tiny_bert)
    from dataclasses import replace

    with pytest.raises(ProbeError, match="out-of-domain corpus"):
        run_domain_shift(replace(cfg, langs=("es",)), tmp_path)


def test_new_corpus_is_cached_as_its_own_task(tmp_path: Path, tiny_bert: Path) -> None:
    """pos-pud shards live beside pos's, carry the PUD file's hash, and a changed PUD file
    is re-extracted (never served from the old cache)."""
    data = make_treebanks(tmp_path / "data", DATA)
    ex = config(tmp_path, tiny_bert, task="pos-pud", langs=("en",), data_dir=data,
                dtype="float16")  # fmt: skip
    first = extract(ex, progress=False)
    (shard,) = first.shards
    assert shard.path.parts[-3:] == ("pos-pud", "en", "test.h5")
    pud = data / "ud" / "UD_English-PUD" / "en_pud-ud-test.conllu"
    with store.open_shard(shard.path) as opened:
        assert opened.attrs["source_hash"] == files_sha256([pud])
    assert all(s.skipped for s in extract(ex, progress=False).shards)
    pud.write_text(pud.read_text().replace("\tdog\t", "\tcat\t"), encoding="utf-8")
    assert not any(s.skipped for s in extract(ex, progress=False).shards)


def test_cli_parses_fuse_layer(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    args = ["domain-shift", "--task", "pos", "--model", "minilm", "--data-dir", str(tmp_path)]
    bad = CliRunner().invoke(cli, [*args, "--fuse-layer", "top"])
    assert bad.exit_code == 2 and "expected a layer number, 'best' or 'none'" in bad.output
    # A wrong out-of-domain task is a one-line user error, not a traceback.
    wrong = CliRunner().invoke(cli, [*args, "--out-tasks", "xnli", "--fuse-layer", "none"])
    assert wrong.exit_code == 1 and "label set" in wrong.output


def _accuracy_items(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """(n sentences, [correct, labelled]) with 5 words each, each right with probability p."""
    return np.stack([rng.binomial(5, p, size=n), np.full(n, 5)], axis=1)


def test_unpaired_delta_covers_a_known_drop_at_about_the_nominal_rate() -> None:
    """One head scored on two independent test sets (true accuracies 0.8 and 0.7): the
    interval of the drop covers 0.1 about 95% of the time, and is wider than a paired
    interval would be (no shared items to cancel)."""
    rng = np.random.default_rng(0)
    covered, runs = 0, 200
    for i in range(runs):
        boot = PairedBootstrap(n_boot=300, seed=i)
        inside = {"en:pos": [_accuracy_items(rng, 60, 0.8)]}
        outside = {"en:pos-gum": [_accuracy_items(rng, 60, 0.7)]}
        got = unpaired_delta(boot, inside, outside, "accuracy", ["en:pos"], ["en:pos-gum"])
        covered += got.low <= 0.1 <= got.high
    assert 0.88 <= covered / runs <= 0.99
    with pytest.raises(ValueError, match="two different test sets"):
        unpaired_delta(boot, inside, inside, "accuracy", ["en:pos"], ["en:pos"])


def test_drop_delta_is_paired_within_each_set() -> None:
    """Two heads' drops: identical heads differ by exactly 0 on every replicate; a head
    that is 10 points worse out of domain on the very same items drops 0.1 more, with a
    tight interval (the items both share cancel)."""
    rng = np.random.default_rng(1)
    inside, outside = _accuracy_items(rng, 80, 0.8), _accuracy_items(rng, 80, 0.8)
    a = {"in": [inside], "out": [outside]}
    got = drop_delta(PairedBootstrap(n_boot=200), a, a, "accuracy", ["in"], ["out"])
    assert (got.estimate, got.low, got.high) == (0.0, 0.0, 0.0)
    worse = outside.copy()
    worse[:, 0] = np.maximum(worse[:, 0] - 1, 0)  # one more error per sentence, where possible
    b = {"in": [inside], "out": [worse]}
    got = drop_delta(PairedBootstrap(n_boot=200), b, a, "accuracy", ["in"], ["out"])
    exact = (outside[:, 0].sum() - worse[:, 0].sum()) / outside[:, 1].sum()
    assert got.estimate == pytest.approx(exact)
    assert got.low > 0 and got.high - got.low < 0.05

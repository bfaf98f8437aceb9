"""`probe domain-shift` on a tiny cache: drops, genres, DLFA, skipped languages, new corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe import cache as store
from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments.domain_shift import DomainShiftConfig, drops, run_domain_shift
from probe.results.report import Row
from probe.runtime.fileid import files_sha256
from probe.train import TrainConfig
from tests.test_calibration import make_treebanks
from tests.test_extract import cache_fields, config, extract

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
        **ex, fuse_layer=1, results_dir=tmp_path / "res", train=TrainConfig(max_epochs=3),
        dlfa_train=TrainConfig(max_epochs=2, lr=2e-3), low_resource_words=120,
    )  # fmt: skip
    base.update(kw)
    return DomainShiftConfig(**base)  # type: ignore[arg-type]


def test_drop_is_in_domain_minus_out_of_domain() -> None:
    task = get_task("pos")
    rows = [
        Row("linear", "0", "en:pos", "accuracy", 0.9),
        Row("linear", "0", "en:pos-gum", "accuracy", 0.7),
        Row("linear", "0", "en:pos-pud", "accuracy", 0.95),
        Row("dlfa", "1,2", "en:pos", "accuracy", 0.8),
        Row("dlfa", "1,2", "en:pos-gum", "accuracy", 0.75),
        Row("linear", "0", "en:pos#email", "accuracy", 0.5),  # genre rows are no domain
    ]
    plan = {"en": [get_task("pos-gum"), get_task("pos-pud")]}
    got = {(r.head, r.layer, r.lang): r.value for r in drops(rows, task, plan)}
    assert got == pytest.approx({
        ("linear", "0", "en:pos-gum"): 0.2,
        ("linear", "0", "en:pos-pud"): -0.05,
        ("dlfa", "1,2", "en:pos-gum"): 0.05,
    })  # fmt: skip
    assert all(r.metric == "drop_accuracy" for r in drops(rows, task, plan))


def test_domain_shift_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    result = run_domain_shift(_config(tmp_path, tiny_bert), progress=False)
    assert result.settings["languages"] == {"en": ["pos-gum", "pos-pud"], "de": ["pos-pud"]}
    value = {(r.head, r.layer, r.lang, r.metric): r.value for r in result.rows}
    # Every layer's probe and DLFA (1,2), in and out of domain, and the drop between them.
    for head, layer in [("linear", "0"), ("linear", "1"), ("linear", "2"), ("dlfa", "1,2")]:
        for lang, outs in (("en", ("pos-gum", "pos-pud")), ("de", ("pos-pud",))):
            inside = value[(head, layer, f"{lang}:pos", "accuracy")]
            for out in outs:
                drop = value[(head, layer, f"{lang}:{out}", "drop_accuracy")]
                assert drop == pytest.approx(inside - value[(head, layer, f"{lang}:{out}",
                                                                "accuracy")])  # fmt: skip
    # Genres from sentence ids: EWT test has email and reviews; their word-weighted mean is
    # the whole set's accuracy (every sentence belongs to one genre here).
    genre = {g: value[("linear", "2", f"en:pos#{g}", "accuracy")] for g in ("email", "reviews")}
    n_email = n_reviews = 0
    from tests.test_extract import SENTENCES

    for i, sent in enumerate(SENTENCES * 2):
        if i % 2 == 0:
            n_email += len(sent)
        else:
            n_reviews += len(sent)
    mean = (genre["email"] * n_email + genre["reviews"] * n_reviews) / (n_email + n_reviews)
    assert mean == pytest.approx(value[("linear", "2", "en:pos", "accuracy")])
    assert ("linear", "2", "en:pos-pud#news", "accuracy") in value
    assert not any("de:pos#" in r.lang for r in result.rows)  # GSD ids carry no genre
    # Training data sizes and the low-resource flag (threshold 120 words: en has 156, de 104).
    assert value[("data", "-", "en", "low_resource")] == 0.0
    assert value[("data", "-", "de", "low_resource")] == 1.0
    assert value[("data", "-", "de", "train_words")] == sum(len(s) for s in SENTENCES * 4)
    for name in ("results.csv", "summary.txt", "domain_shift.png", "drop_per_layer.png"):
        assert (result.directory / name).stat().st_size > 0, name
    assert "last-D" in result.table and "per genre" in result.table


def test_domain_shift_best_k_picks_lowest_dev_loss(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = _config(tmp_path, tiny_bert, fuse_layer="best", genres=False)
    from dataclasses import replace

    cfg = replace(cfg, langs=("de",))
    result = run_domain_shift(cfg, progress=False)
    losses = {r.layer: r.value for r in result.rows if r.metric == "dev_loss"}
    assert set(losses) == {"0,2", "1,2"}
    chosen = {r.layer for r in result.rows if r.head == "dlfa" and r.metric == "accuracy"}
    assert chosen == {min(losses, key=losses.__getitem__)}


def test_domain_shift_refuses_bad_setups(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="label set"):
        run_domain_shift(_config(tmp_path, tiny_bert, out_tasks=("ner",)), progress=False)
    with pytest.raises(ProbeError, match="in-domain task itself"):
        run_domain_shift(_config(tmp_path, tiny_bert, out_tasks=("pos",)), progress=False)
    cfg = _config(tmp_path, tiny_bert)
    from dataclasses import replace

    with pytest.raises(ProbeError, match="out-of-domain corpus"):
        run_domain_shift(replace(cfg, langs=("es",)), progress=False)


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

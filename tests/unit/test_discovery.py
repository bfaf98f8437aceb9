"""Languages and treebanks come from the files on disk; splits that may train are declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.data.discovery import (
    check_language,
    discover_languages,
    expand_languages,
    languages_for,
)
from probe.data.layout import PathPattern
from probe.data.tasks import get_task, local_files, read_split
from probe.data.ud import parse_picks, ud_index
from probe.errors import DataError, ProbeError
from tests.helpers import SENTENCES, conllu_text


def _write(root: Path, rel: str, text: str = "x\tO\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _ud(root: Path, rel: str, copies: int = 1) -> Path:
    return _write(root / "ud", rel, conllu_text(SENTENCES * copies))


def test_pattern_finds_languages_and_splits_with_a_repeated_field(tmp_path: Path) -> None:
    _write(tmp_path, "xtreme/panx/th/dev-th.tsv")
    _write(tmp_path, "xtreme/panx/en/train-en.tsv")
    _write(tmp_path, "xtreme/panx/en/dev-en.tsv")
    _write(tmp_path, "xtreme/panx/_hf_labeled/test-de.tsv")  # folder and file disagree
    found = PathPattern("xtreme/panx/{lang}/{split}-{lang}.tsv").found(tmp_path)
    assert found == {"en": frozenset({"train", "dev"}), "th": frozenset({"dev"})}
    with pytest.raises(ProbeError, match="no \\{lang\\}"):
        PathPattern("data/{split}.tsv")
    with pytest.raises(ProbeError, match="unknown field"):
        PathPattern("{lang}/{genre}.tsv")


def test_a_language_the_catalogue_lacks_is_found_and_an_absent_one_lists_the_found(
    tmp_path: Path,
) -> None:
    panx = get_task("panx")
    assert "xx" not in panx.languages
    _write(tmp_path, "xtreme/panx/en/train-en.tsv")
    _write(tmp_path, "xtreme/panx/xx/dev-xx.tsv")  # no catalogue knows "xx"
    assert languages_for(panx, tmp_path) == ("xx",)  # `all`: those with the eval split (dev)
    assert expand_languages(panx, ["en,xx"], tmp_path) == ("en", "xx")
    with pytest.raises(ProbeError, match=r"no files for language 'th'.*found: en, xx$"):
        expand_languages(panx, ["th"], tmp_path)
    # `all` beside codes is the union, each code checked as if alone.
    assert expand_languages(panx, ["all,en"], tmp_path) == ("xx", "en")
    assert expand_languages(panx, ["en", "all"], tmp_path) == ("en", "xx")
    with pytest.raises(ProbeError, match=r"no files for language 'th'"):
        expand_languages(panx, ["all,th"], tmp_path)
    # MasakhaNER's 20 are the catalogue; a local tsn folder is read whatever the list says.
    ner = get_task("ner")
    for split in ("train", "dev", "test"):
        _write(tmp_path, f"masakhaner2/tsn/{split}.txt", "Gaborone B-LOC\n")
    assert languages_for(ner, tmp_path) == ("tsn",)
    assert read_split(ner, tmp_path, "tsn", "test")[0].tags == ("B-LOC",)


def test_hub_mode_uses_the_hub_catalogue_not_the_files() -> None:
    panx = get_task("panx")
    assert "th" in languages_for(panx, None)  # XTREME's PAN-X has Thai
    check_language(panx, "th", None)
    with pytest.raises(ProbeError, match="no language 'xx' on the hub"):
        check_language(panx, "xx", None)


def test_ud_index_maps_languages_to_treebanks_and_the_default_rule(tmp_path: Path) -> None:
    _ud(tmp_path, "UD_Czech-PDT/cs_pdt-ud-train.conllu", copies=3)
    _ud(tmp_path, "UD_Czech-PDT/cs_pdt-ud-test.conllu")
    _ud(tmp_path, "UD_Czech-CAC/cs_cac-ud-train.conllu", copies=1)  # smaller train
    _ud(tmp_path, "UD_Czech-CAC/cs_cac-ud-test.conllu", copies=9)
    _ud(tmp_path, "UD_Czech-PUD/cs_pud-ud-test.conllu", copies=20)
    _ud(tmp_path, "UD_Basque-BDT/eu_bdt-ud-test.conllu")  # no train: its largest
    _ud(tmp_path, "UD_Czech-GUM/cs_gum-ud-test.conllu")
    index = ud_index(tmp_path)
    assert sorted(tb.name for tb in index.of_language("cs")) == [
        "cs_cac", "cs_gum", "cs_pdt", "cs_pud",
    ]  # fmt: skip
    pos = get_task("pos")
    assert pos.treebanks_used(tmp_path, "cs") == ("cs_pdt",)  # largest train file, not PUD
    assert pos.treebanks_used(tmp_path, "eu") == ("eu_bdt",)
    assert pos.treebanks_used(tmp_path, "cs", ("cs_cac",)) == ("cs_cac",)
    assert set(languages_for(pos, tmp_path)) == {"cs", "eu"}
    # Domain tasks are rules over the same index, for any language present.
    assert languages_for(get_task("pos-gum"), tmp_path) == ("cs",)
    assert get_task("pos-pud").treebanks_used(tmp_path, "cs") == ("cs_pud",)
    with pytest.raises(ProbeError, match="this task reads treebanks named \\*_gum"):
        get_task("pos-gum").files(tmp_path, "cs", "test", ("cs_pdt",))


def test_treebank_picks_concatenate_per_split_and_change_the_files(tmp_path: Path) -> None:
    _ud(tmp_path, "UD_English-EWT/en_ewt-ud-test.conllu", copies=2)
    _ud(tmp_path, "UD_English-GUM/en_gum-ud-test.conllu", copies=1)
    pos = get_task("pos")
    both = local_files(pos, tmp_path, "en", "test", ("en_gum+en_ewt",))
    assert [p.name for p in both] == ["en_gum-ud-test.conllu", "en_ewt-ud-test.conllu"]
    assert len(read_split(pos, tmp_path, "en", "test", ("en_gum+en_ewt",))) == 3 * len(SENTENCES)
    with pytest.raises(ProbeError, match="of one language"):
        parse_picks(("en_ewt+cs_pdt",))
    with pytest.raises(ProbeError, match="no such treebank.*'en' has: en_ewt, en_gum"):
        pos.files(tmp_path, "en", "test", ("en_lines",))
    _ud(tmp_path, "UD_Czech-PDT/cs_pdt-ud-test.conllu")
    with pytest.raises(ProbeError, match="picks cs, which the languages"):
        expand_languages(pos, ["en"], tmp_path, ("cs_pdt",))
    with pytest.raises(ProbeError, match="reads no UD treebanks"):
        get_task("panx").files(tmp_path, "en", "dev", ("en_ewt",))


def test_a_split_in_parts_is_one_split_read_in_sorted_order(tmp_path: Path) -> None:
    _ud(tmp_path, "UD_Czech-PDT/cs_pdt-ud-train-ca.conllu", copies=2)  # UD's PDT layout
    _write(tmp_path / "ud", "UD_Czech-PDT/cs_pdt-ud-train-c.conllu", conllu_text(SENTENCES[::-1]))
    _ud(tmp_path, "UD_Czech-PDT/cs_pdt-ud-test.conllu")
    _ud(tmp_path, "UD_German-HDT/de_hdt-ud-train-a-1.conllu")
    _ud(tmp_path, "UD_German-HDT/de_hdt-ud-train-b-1.conllu")
    _ud(tmp_path, "UD_German-HDT/de_hdt-ud-dev.conllu")
    _ud(tmp_path, "UD_German-HDT/de_hdt-ud-test.conllu")
    _ud(tmp_path, "UD_Czech-CAC/cs_cac-ud-train.conllu", copies=2)  # smaller than PDT's parts
    pos = get_task("pos")
    found = discover_languages(pos, tmp_path)
    assert found["cs"] == frozenset({"train", "test"})  # the train split is not lost
    assert pos.treebanks_used(tmp_path, "cs") == ("cs_pdt",)  # by all parts' size together
    train = local_files(pos, tmp_path, "cs", "train")
    assert [p.name for p in train] == ["cs_pdt-ud-train-c.conllu", "cs_pdt-ud-train-ca.conllu"]
    records = read_split(pos, tmp_path, "cs", "train")
    assert len(records) == 3 * len(SENTENCES)
    assert list(records[0].words) == SENTENCES[-1]  # the -c part first
    with pytest.raises(DataError, match="cs_pdt-ud-dev.conllu: missing split 'dev'"):
        local_files(pos, tmp_path, "cs", "dev")
    assert [p.name for p in local_files(pos, tmp_path, "de", "train")] == [
        "de_hdt-ud-train-a-1.conllu", "de_hdt-ud-train-b-1.conllu",
    ]  # fmt: skip


def test_a_treebank_without_word_forms_is_refused_in_one_line(tmp_path: Path) -> None:
    bare = [["_"] * len(words) for words in SENTENCES]
    for split in ("train", "test"):
        _write(tmp_path / "ud", f"UD_Japanese-BCCWJ/ja_bccwj-ud-{split}.conllu",
               conllu_text(bare * 50))  # fmt: skip
    _ud(tmp_path, "UD_Japanese-GSD/ja_gsd-ud-test.conllu")  # smaller, but has its text
    _write(tmp_path / "ud", "UD_English-ESL/en_esl-ud-test.conllu", conllu_text(bare))
    pos = get_task("pos")
    assert pos.treebanks_used(tmp_path, "ja") == ("ja_gsd",)  # the default skips it
    assert "en" not in discover_languages(pos, tmp_path)
    with pytest.raises(ProbeError, match=r"^treebank ja_bccwj has no word forms \(every FORM"):
        pos.files(tmp_path, "ja", "train", ("ja_bccwj",))
    with pytest.raises(ProbeError, match=r"^treebank en_esl has no word forms"):
        expand_languages(pos, ["en"], tmp_path)
    # Records read elsewhere (the hub) pass the same check.
    from probe.data.checks import check_records
    from probe.data.sources.conllu import read_conllu

    path = tmp_path / "ud/UD_English-ESL/en_esl-ud-test.conllu"
    with pytest.raises(ProbeError, match="split 'test': treebank en_esl has no word forms"):
        check_records(pos, read_conllu(path), (path,), "test")


def test_splits_that_may_train_are_declared() -> None:
    pos = get_task("pos")
    assert (pos.train_split, pos.dev_split, pos.eval_split) == ("train", "dev", "test")
    assert get_task("udpos").train_split == "train"
    with pytest.raises(ProbeError, match="cannot train on 'test' \\(its evaluation split\\)"):
        pos.training_on("test")
    small = pos.training_on("dev")  # the small-data setting: dev is then a hold-out of it
    assert (small.train_split, small.dev_split) == ("dev", None)
    pud = get_task("pos-pud")
    assert pud.evaluation_only and pud.may_train == ()
    with pytest.raises(ProbeError, match="'pos-pud' is evaluation-only"):
        pud.training_split()
    with pytest.raises(ProbeError, match="evaluation-only"):
        pud.training_on("test")
    xnli = get_task("xnli")  # declared, not implicit: trains on English test
    assert xnli.may_train == ("test",) and "leakage guard" in xnli.split_note


def test_pos_resolves_to_ewt_train_dev_test_on_the_shared_layout(shared_data: Path) -> None:
    pos = get_task("pos")
    assert pos.splits_for("en") == ("train", "dev", "test")
    names = [local_files(pos, shared_data, "en", s)[0].name for s in pos.splits_for("en")]
    assert names == ["en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu"]
    found = discover_languages(pos, shared_data)
    assert "th" not in found  # only PUD: pos-pud's, never pos's
    assert found["eu"] == frozenset({"dev", "test"})


def test_via_all_skips_evaluation_only_tasks_and_naming_one_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from probe.experiments.intermediate_plan import resolve_via

    for split in ("train", "dev", "test"):
        _ud(tmp_path, f"UD_English-GUM/en_gum-ud-{split}.conllu")
    _ud(tmp_path, "UD_English-PUD/en_pud-ud-test.conllu")
    target = get_task("udpos")
    with caplog.at_level("WARNING"):
        via = resolve_via(["all"], target, tmp_path)
    assert "pos-gum" in via and "pos" in via and "pos-pud" not in via
    assert "skips the evaluation-only task(s) pos-pud" in caplog.text
    with pytest.raises(ProbeError, match="'pos-pud' is evaluation-only"):
        resolve_via(["pos-pud"], target, tmp_path)


def test_the_shipped_example_task_file_finds_its_own_data() -> None:
    from probe.data.taskfile import load_task_file

    example = Path(__file__).parents[2] / "examples" / "tasks" / "my_pos.toml"
    task = load_task_file(example)
    assert languages_for(task, None) == ("de", "en")  # its root, whatever --data-dir says
    train = read_split(task, Path("/nonexistent"), "en", "train")
    assert task.labels == tuple(sorted({t for s in train for t in s.tags}))
    for lang, split in [("en", "dev"), ("en", "test"), ("de", "test")]:
        assert len(read_split(task, Path("/nonexistent"), lang, split)) == 3

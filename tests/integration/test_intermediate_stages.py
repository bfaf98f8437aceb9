"""`probe intermediate` stages in any language (`task:lang`, `task:l1+l2`) and task suites."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.analysis.bootstrap import PairedBootstrap
from probe.cli import cli
from probe.data.subsets import sample_sentences
from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.experiments import intermediate_suites
from probe.experiments.intermediate_gains import configuration_gains
from probe.experiments.intermediate_parallel import (
    disjoint_items,
    distinct_items,
    is_parallel,
    parallel_key,
)
from probe.experiments.intermediate_plan import (
    Stage,
    extraction_budgets,
    language_budgets,
    parse_stage,
    plan_configurations,
    require_budget,
    resolve_stages,
    resolve_via,
    set_sizes,
    split_set,
    word_tasks,
)
from probe.experiments.intermediate_seed import TRAINING
from probe.experiments.intermediate_set_sizes import extreme_sets, set_size_deltas
from probe.experiments.intermediate_stages import short_stages, stage_settings
from probe.results.items import ItemSet
from probe.results.render.intermediate import SET_SIZE_CSV, gain_per_set_size
from probe.results.rows import Row
from probe.results.table import Table
from tests.helpers import SENTENCES, make_ud

pytestmark = pytest.mark.usefixtures("one_thread")

UDPOS_TAGS = ["DET", "NOUN", "VERB", "ADP"]
# German udpos sentences, all of three words (so a sample's size tells its language) and
# none of them a sentence of the target's German test set.
GERMAN = [[d, n, "ist"] for d in ("der", "die", "das", "ein", "eine")
          for n in ("hund", "katze", "haus", "maus")]  # fmt: skip


def _udpos(root: Path, lang: str, sentences: list[list[str]]) -> None:
    for split in ("train", "dev"):
        path = root / "xtreme" / "udpos" / lang / f"{split}-{lang}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join("\n".join(f"{w}\t{UDPOS_TAGS[i % 4]}"
                                              for i, w in enumerate(s))
                                    for s in sentences) + "\n")  # fmt: skip


def make_data(root: Path) -> Path:
    """UD pos (en train/dev/test, de test) as the target; udpos in en and de (train, dev)."""
    make_ud(root, SENTENCES * 4)
    _udpos(root, "en", SENTENCES * 3)
    _udpos(root, "de", GERMAN)
    return root


# --- stage specs --------------------------------------------------------------------------


def test_parse_stage_names_spell_the_default_source_bare() -> None:
    assert parse_stage("panx") == Stage("panx", ("en",)) and parse_stage("panx").name == "panx"
    assert parse_stage("panx:en").name == "panx"  # the default source, spelled bare
    de = parse_stage("panx:de")
    assert de.name == "panx:de" and not de.multilingual
    multi = parse_stage(" panx : en + de + fr ")
    assert multi.langs == ("en", "de", "fr") and multi.multilingual
    assert multi.name == "panx:en+de+fr"
    refused = {"panx:": "expected task:lang", "panx:de+": "expected task:lang",
               "panx:de+de": "listed twice", "pnax:de": "Did you mean 'panx'"}  # fmt: skip
    for bad, match in refused.items():
        with pytest.raises(ProbeError, match=match):
            parse_stage(bad)


def test_resolve_via_checks_each_stages_languages(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    pos, deprel = get_task("pos"), get_task("deprel")
    got = resolve_via(("udpos,udpos:de,udpos:en+de",), deprel, data)
    assert got == ("udpos", "udpos:de", "udpos:en+de")
    with pytest.raises(ProbeError, match=r"no train\+dev split for fr.*languages with one: de, en"):
        resolve_via(("udpos:de+fr",), deprel, data)
    # The target task in another language would train on what the target evaluates.
    with pytest.raises(ProbeError, match="its own intermediate task, in any language"):
        resolve_via(("pos:de",), pos, data)
    with pytest.raises(ProbeError, match="lists udpos twice"):
        resolve_via(("udpos,udpos:en",), pos, data)  # one stage, spelled twice
    # One language set in two orders is one stage.
    with pytest.raises(ProbeError, match=r"lists udpos:en\+de \(as udpos:de\+en\) twice"):
        resolve_via(("udpos:en+de,udpos:de+en",), deprel, data)
    with pytest.raises(ProbeError, match="all stands alone"):
        resolve_via(("all,udpos:de",), pos, data)
    with pytest.raises(ProbeError, match="no labels"):
        resolve_via(("tatoeba:de",), pos, data)


def test_twins_of_the_target_train_only_in_its_source(tmp_path: Path) -> None:
    """udpos is more of pos: in en (pos's source) it may be named, in de it would train on
    what pos scores zero-shot; pos-gsd (German) likewise."""
    data = make_data(tmp_path)
    pos = get_task("pos")
    assert intermediate_suites.is_twin(get_task("udpos"), pos)
    assert intermediate_suites.is_twin(get_task("pos-pud-transfer"), pos)
    assert not intermediate_suites.is_twin(get_task("deprel"), pos)
    assert not intermediate_suites.is_twin(get_task("morph-Reflex"), get_task("morph-Poss"))
    assert resolve_via(("udpos",), pos, data) == ("udpos",)
    for bad in ("udpos:de", "udpos:en+de", "pos-gsd", "pos-pud-transfer:tr"):
        with pytest.raises(ProbeError, match="is a twin of the target pos"):
            resolve_via((bad,), pos, data)
    # With German as the target's source, German udpos is the source; English is not.
    assert resolve_via(("udpos:de",), pos, data, source="de") == ("udpos:de",)
    with pytest.raises(ProbeError, match="trains in en, not only the target's source de"):
        resolve_via(("udpos",), pos, data, source="de")


def test_stages_outside_the_source_need_a_budget() -> None:
    require_budget(("udpos", "panx"), None)  # source-only stages: nothing to match
    require_budget(("udpos", "panx:de"), 100)
    for via in (("panx:de",), ("udpos", "panx:en+de")):
        with pytest.raises(ProbeError, match="needs --max-train-words N"):
            require_budget(via, None)


def test_stage_settings_flag_a_stage_short_of_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def sizes(stage: str, lang: str, words: int) -> list[Row]:
        return [Row(TRAINING, stage, lang, "train_items", words, seed=0),
                Row(TRAINING, stage, lang, "train_sentences", words // 10, seed=0)]  # fmt: skip

    rows = [*sizes("pos:tr", "tr", 95), *sizes("pos:en+tr+vi", "en", 34),
            *sizes("pos:en+tr+vi", "tr", 33), *sizes("pos:en+tr+vi", "vi", 13)]  # fmt: skip
    got = stage_settings(("pos:tr", "pos:en+tr+vi"), rows, 100)
    assert got["pos:tr"]["short"] is False and got["pos:tr"]["budget_total"] == 100
    multi = got["pos:en+tr+vi"]
    assert multi["train_total"] == 80 and multi["short"] is True
    with caplog.at_level("WARNING"):
        lines = short_stages(got)
    assert lines == ["short stage pos:en+tr+vi (en+tr+vi): 80 of its 100 words (en 34/34, "
                     "tr 33/33, vi 13/33); below 90% of the budget, so its comparisons mix in "
                     "data size"]  # fmt: skip
    assert "short stage pos:en+tr+vi" in caplog.text


def test_parallel_items_are_sliced_disjointly_across_languages() -> None:
    ids = {lang: [f"dev-{lang}.tsv:{i}" for i in range(12)] for lang in ("en", "de", "fr")}
    assert is_parallel(ids)
    got = disjoint_items(ids, {"en": 4, "de": 4, "fr": 3}, seed=0)
    keys = [{parallel_key(ids[lang][i], lang) for i in got[lang]} for lang in got]
    assert [len(k) for k in keys] == [4, 4, 3]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert distinct_items({k: [ids[k][i] for i in v] for k, v in got.items()}, True) == 11
    # The plain sampler draws the same items in every language: translations of each other.
    same = {lang: sample_sentences(ids[lang], 4, 0) for lang in ids}
    assert all((same[lang] == same["en"]).all() for lang in ids)
    assert distinct_items({k: [ids[k][i] for i in v] for k, v in same.items()}, True) == 4
    # Not parallel: different treebanks.
    assert not is_parallel({"en": ["weblog-1", "weblog-2"], "de": ["train-s1", "train-s2"]})
    # A multilingual pair stage extracts its whole splits, so the slices are cached.
    stages = [parse_stage("pawsx:en+de"), parse_stage("pawsx")]
    assert extraction_budgets(stages, 100) == {("pawsx", "en"): None, ("pawsx", "de"): None}


def test_language_budgets_split_the_stage_total() -> None:
    multi = parse_stage("panx:en+de+fr")
    assert language_budgets(multi, 100) == {"en": 34, "de": 33, "fr": 33}
    assert sum(language_budgets(multi, 100).values()) == 100  # type: ignore[arg-type]
    assert language_budgets(parse_stage("panx"), 100) == {"en": 100}
    assert language_budgets(multi, None) == {"en": None, "de": None, "fr": None}
    with pytest.raises(ProbeError, match="cannot be split over the 3 languages"):
        language_budgets(multi, 2)
    # One split is extracted once: with the largest share any stage takes there.
    stages = [parse_stage("panx"), parse_stage("panx:en+de")]
    assert extraction_budgets(stages, 100) == {("panx", "en"): 100, ("panx", "de"): 50}


# --- explicit sets ------------------------------------------------------------------------


def test_explicit_sets_match_stage_names_not_plus_signs() -> None:
    via = ("panx", "panx:en+de", "udpos")
    assert split_set("panx:en+de+udpos", via) == ("panx:en+de", "udpos")
    assert split_set("udpos + panx", via) == ("udpos", "panx")
    names = [c.name for c in plan_configurations(via, "panx:en+de+udpos", ("sequential",))]
    assert names[-1] == "panx:en+de>udpos"
    with pytest.raises(ProbeError, match="distinct tasks of --via"):
        split_set("panx:en+fr", via)
    with pytest.raises(ProbeError, match="distinct tasks of --via"):
        split_set("udpos+udpos", via)
    # Two spellings of one item: refused, naming both.
    with pytest.raises(ProbeError, match=r"ambiguous: it reads as a:x\+b or a:x & b"):
        split_set("a:x+b", ("a:x+b", "a:x", "b"))


def test_set_sizes_are_the_prefixes_and_explicit_sets() -> None:
    via = ("a", "b", "c")
    plan = plan_configurations(via, "2,3,c+a", ("sequential", "mixed"))
    assert set_sizes(plan, via) == [
        (1, "", "a"), (2, "sequential", "a>b"), (2, "sequential", "c>a"), (2, "mixed", "a+b"),
        (2, "mixed", "c+a"), (3, "sequential", "a>b>c"), (3, "mixed", "a+b+c"),
    ]  # fmt: skip


# --- suites -------------------------------------------------------------------------------

EVERY = {"udpos", "pos", "xnli", "panx", "ner", "morph-Number", "deprel", "pawsx", "morph-Case",
         "deprel-arc", "morph-Tense", "morph-VerbForm"}  # fmt: skip


@pytest.fixture()
def with_data(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The suite tasks whose source training split 'exists' (edit the set in a test)."""
    have = set(EVERY)
    monkeypatch.setattr(intermediate_suites, "has_training_data",
                        lambda task, data_dir: task.name in have)  # fmt: skip
    return have


def test_suites_span_domains_and_suite3_is_suite9s_start(with_data: set[str]) -> None:
    ner = get_task("ner")
    nine = resolve_via(("suite9",), ner, None)
    assert nine == ("udpos", "xnli", "panx", "morph-Number", "deprel", "pawsx", "morph-Case",
                    "deprel-arc", "morph-Tense")  # fmt: skip
    assert resolve_via(("suite3",), ner, None) == nine[:3]
    domains = [intermediate_suites.task_domain(t) for t in nine]
    assert len(set(domains[:3])) == 3 and len(set(domains[:6])) == 4 and len(set(domains)) == 4
    assert resolve_via(("suite3,morph-Case",), ner, None) == (*nine[:3], "morph-Case")
    with pytest.raises(ProbeError, match="lists udpos twice"):
        resolve_via(("suite3,udpos",), ner, None)
    assert "morph-Tense" in intermediate_suites.suites_table()


def test_suite_entries_replace_the_target_or_are_dropped(with_data: set[str]) -> None:
    # The target and its twins are replaced by the entry's next candidate: for udpos, pos
    # is a twin (more of the target, not another domain), so syntax falls to deprel.
    assert resolve_via(("suite3",), get_task("udpos"), None) == ("deprel", "xnli", "panx")
    assert resolve_via(("suite3",), get_task("panx"), None) == ("udpos", "xnli", "ner")
    # ... or, with none left, the entry is dropped: pawsx|xnli has the target and a task
    # already in the set.
    pawsx = resolve_stages(("suite9",), get_task("pawsx"), None)
    assert len(pawsx.names) == 8 and "pawsx" not in pawsx.names
    assert pawsx.dropped == ("suite9: semantics pawsx|xnli (pawsx is the target; xnli is "
                             "already in the set)",)  # fmt: skip
    # A missing source training split drops a candidate too.
    with_data.discard("morph-Tense")
    shrunk = resolve_stages(("suite9",), get_task("ner"), None)
    assert len(shrunk.names) == 8 and "no en training data" in shrunk.dropped[0]
    plan_configurations(shrunk.names, "3,6,8", ("sequential",), shrunk.dropped)
    with pytest.raises(ProbeError, match=r"--sets 9: a set size is 1..8 .*morph-Tense has no en"):
        plan_configurations(shrunk.names, "3,6,9", ("sequential",), shrunk.dropped)


@pytest.mark.parametrize(
    ("target", "nine"),
    [
        ("pos", ("deprel", "xnli", "panx", "morph-Number", "deprel-arc", "pawsx", "morph-Case",
                 "morph-VerbForm", "morph-Tense")),
        ("panx", ("udpos", "xnli", "ner", "morph-Number", "deprel", "pawsx", "morph-Case",
                  "deprel-arc", "morph-Tense")),
        ("xnli", ("udpos", "pawsx", "panx", "morph-Number", "deprel", "morph-Case",
                  "deprel-arc", "morph-Tense")),
        ("pawsx", ("udpos", "xnli", "panx", "morph-Number", "deprel", "morph-Case",
                   "deprel-arc", "morph-Tense")),
    ],
)  # fmt: skip
def test_suite3_is_suite9s_first_three_for_every_target(
    with_data: set[str], target: str, nine: tuple[str, ...]
) -> None:
    task = get_task(target)
    got = resolve_via(("suite9",), task, None)
    assert got == nine and len(set(got)) == len(got)
    assert not any(intermediate_suites.is_twin(get_task(t), task) for t in got)
    three = resolve_via(("suite3",), task, None)
    assert three == got[:3]
    assert len({intermediate_suites.task_domain(t) for t in three}) == 3  # three domains


def test_finetune_refuses_other_languages_and_drops_suite_pair_tasks() -> None:
    with pytest.raises(ProbeError, match="default source language only; panx:de"):
        word_tasks(("udpos", "panx:de"), ("udpos,panx:de",))
    assert word_tasks(("udpos", "xnli", "panx"), ("suite3",)) == ("udpos", "panx")
    with pytest.raises(ProbeError, match="xnli is a pair task"):
        word_tasks(("udpos", "xnli", "panx", "pawsx"), ("suite3,xnli",))  # named: refused


# --- the summary: gain per set size per family -----------------------------------------------


def test_gain_per_set_size_table_and_csv(tmp_path: Path) -> None:
    pos = get_task("pos")  # accuracy; source en; de, fr Indo-European, tr Turkic
    scores = {"none": {"en": 0.9, "de": 0.5, "fr": 0.6, "tr": 0.4},
              "a": {"en": 0.9, "de": 0.55, "fr": 0.6, "tr": 0.4},
              "a>b": {"en": 0.9, "de": 0.6, "fr": 0.7, "tr": 0.3},
              "a>b>c": {"en": 0.9, "de": 0.7, "fr": 0.7, "tr": 0.5}}  # fmt: skip
    rows = [Row("mlp", c, lang, "accuracy", v, config=c)
            for c, d in scores.items() for lang, v in d.items()]  # fmt: skip
    gains = configuration_gains(pos, rows, ItemSet(), "en", PairedBootstrap(10))
    sets = [(1, "", "a"), (2, "sequential", "a>b"), (3, "sequential", "a>b>c")]
    assert extreme_sets(sets) == [("sequential", "a>b>c", "a>b")]  # size 1 has no schedule
    deltas = set_size_deltas(pos, rows, ItemSet(), "en", PairedBootstrap(10), sets)
    table = Table([*rows, *gains, *deltas])
    text = gain_per_set_size(pos, table, "en", sets, tmp_path)
    lines = text.splitlines()
    assert "per set size and language family" in lines[1]
    assert lines[2].split() == ["set", "Indo-European", "Turkic", "targets"]
    assert lines[3].split()[:2] == ["1", "+2.5"] and lines[4].split()[:3] == ["2", "sequential",
                                                                            "+10.0"]  # fmt: skip
    with (tmp_path / SET_SIZE_CSV).open() as f:
        got = {(r["config"], r["group"]): r for r in csv.DictReader(f)}
    assert float(got[("a>b", "Turkic")]["gain"]) == pytest.approx(-0.1)
    assert float(got[("a>b", "targets")]["gain"]) == pytest.approx((0.1 + 0.1 - 0.1) / 3)
    assert got[("a>b", "Indo-European")]["langs"] == "de+fr"
    assert got[("a>b", "targets")]["size"] == "2"
    # The largest minus the smallest set of the schedule, in the table and the CSV.
    assert "larger set minus smaller set" in lines[6]
    assert lines[7].split()[:2] == ["3-2", "sequential"]
    assert [x for x in lines[7].split() if x[0] in "+-"] == ["+5.0", "+20.0", "+10.0"]
    with (tmp_path / SET_SIZE_CSV).open() as f:
        diff = {r["group"]: r for r in csv.DictReader(f) if r["minus"]}
    assert diff["Turkic"]["config"] == "a>b>c" and diff["Turkic"]["minus"] == "a>b"
    assert float(diff["Turkic"]["gain"]) == pytest.approx(0.2)
    assert float(diff["targets"]["gain"]) == pytest.approx((0.1 + 0.0 + 0.2) / 3)
    assert gain_per_set_size(pos, Table(rows), "en", [(1, "", "a")], tmp_path) == ""


# --- end to end on the tiny BERT ----------------------------------------------------------


def test_a_stage_trains_in_its_languages_at_the_matched_size(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """udpos (en), udpos:de and udpos:en+de with --max-train-words 30: each stage trains on
    its languages' data and 30 words in all (15 per language for the pooled stage). The
    target is deprel (not pos: udpos is pos's twin, refused in German)."""
    data = make_data(tmp_path / "data")
    args = ["intermediate", "--target", "deprel", "--via", "udpos,udpos:de,udpos:en+de",
            "--model", str(tiny_bert), "--langs", "en,de", "--data-dir", str(data),
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"),
            "--compute", "float32", "--max-epochs", "2", "--schedule", "sequential",
            "--max-train-words", "30"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    directory = next((tmp_path / "res" / "deprel").glob("*/intermediate-mlp-en-*"))
    payload = json.loads((directory / "results.json").read_text())
    settings = payload["settings"]
    assert settings["via"] == ["udpos", "udpos:de", "udpos:en+de"]
    assert settings["via_sources"] == {"udpos": "en", "udpos:de": "de", "udpos:en+de": "en+de"}
    stages = settings["stages"]
    # German: 20 three-word sentences; a 30-word sample is 10 of them, a 15-word one 5,
    # exactly as the seeded sampler draws them from the German file.
    ids = [f"s{i}" for i in range(len(GERMAN))]
    assert len(sample_sentences(ids, 30, 0, [3] * len(GERMAN))) == 10
    de = stages["udpos:de"]
    assert de["langs"] == ["de"] and de["multilingual"] is False and de["domain"] == "syntax"
    assert de["train_items"] == {"de": 30} and de["train_sentences"] == {"de": 10}
    # distinct_items counts sentences (pairs): 10 German sentences, none a translation.
    assert de["distinct_items"] == 10 and de["short"] is False and de["budget_total"] == 30
    assert de["dev_items"] == {"de": 60}  # the whole German dev split
    en = stages["udpos"]
    assert set(en["train_items"]) == {"en"} and 0 < en["train_total"] <= 30
    # Whole sentences undershoot a tiny budget: below 90% the stage is flagged and named.
    assert en["short"] is (en["train_total"] < 27)
    assert (f"short stage udpos (en): {en['train_total']} of its 30 words" in out.output) is (
        en["short"]
    )
    multi = stages["udpos:en+de"]
    assert multi["multilingual"] is True and multi["budget"] == {"en": 15, "de": 15}
    assert multi["train_items"]["de"] == 15 and multi["train_sentences"]["de"] == 5
    assert 0 < multi["train_items"]["en"] <= 15
    assert multi["train_total"] == multi["train_items"]["en"] + 15 <= 30
    assert multi["dev_items"] == {"en": en["dev_items"]["en"], "de": 60}  # both dev splits
    # The cache holds German udpos, and each stage's dev score is in its language(s).
    assert list((tmp_path / "cache").glob("*/udpos/de/train*.h5"))
    rows = [Row.from_dict(r) for r in payload["rows"]]
    dev = {(r.config, r.lang) for r in rows if r.metric == "udpos_dev_accuracy"}
    assert {("udpos", "en"), ("udpos:de", "de"), ("udpos:en+de", "en+de")} <= dev
    assert ("udpos>udpos:de>udpos:en+de", "de") in dev  # one head per stage of a task
    confs = {r.config for r in rows if r.metric == "accuracy"}
    assert confs == {"none", "udpos", "udpos:de", "udpos:en+de", "udpos>udpos:de",
                     "udpos>udpos:de>udpos:en+de"}  # fmt: skip
    # The summary's gain per set size, and its CSV.
    assert "per set size and language family" in out.output
    with (directory / SET_SIZE_CSV).open() as f:
        written = list(csv.DictReader(f))
    sizes = {(r["size"], r["group"]) for r in written}
    assert {("1", "targets"), ("2", "targets"), ("3", "targets"), ("3-2", "targets")} <= sizes
    # The 3-set minus the 2-set, paired over the same items and seeds: with an interval.
    (diff,) = [r for r in written if r["size"] == "3-2" and r["group"] == "targets"]
    assert diff["minus"] == "udpos>udpos:de" and diff["ci_low"] != ""
    assert float(diff["ci_low"]) <= float(diff["gain"]) <= float(diff["ci_high"])


def test_a_multilingual_stage_on_parallel_pairs_trains_on_distinct_items(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """pawsx:en+de on a tiny PAWS-X whose two languages hold the same 24 pairs: with 12
    pairs in all, the two languages' 6 each are different pairs, not translations."""
    data = make_ud(tmp_path / "data", SENTENCES * 4)
    for lang in ("en", "de"):
        path = data / "xtreme" / "pawsx" / lang / f"dev-{lang}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{lang} satz {i} eins\t{lang} satz {i} zwei\t{i % 2}\n"
                                for i in range(24)))  # fmt: skip
    args = ["intermediate", "--target", "pos", "--via", "pawsx:en+de", "--model",
            str(tiny_bert), "--langs", "en,de", "--data-dir", str(data), "--cache-dir",
            str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"), "--compute",
            "float32", "--max-epochs", "1", "--max-train-words", "12"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    directory = next((tmp_path / "res" / "pos").glob("*/intermediate-mlp-en-*"))
    stage = json.loads((directory / "results.json").read_text())["settings"]["stages"]
    multi = stage["pawsx:en+de"]
    assert multi["budget"] == {"en": 6, "de": 6} and multi["unit"] == "pairs"
    # The dev hold-out comes out of each slice, so training keeps fewer than 6 per language;
    # every trained pair is a different item.
    assert 0 < multi["train_items"]["en"] <= 6 and 0 < multi["train_items"]["de"] <= 6
    assert multi["distinct_items"] == multi["train_total"]
    # Without a budget a non-source stage is refused (matched size needs one).
    refused = CliRunner().invoke(cli, args[:-2])
    assert refused.exit_code != 0 and "needs --max-train-words N" in refused.output

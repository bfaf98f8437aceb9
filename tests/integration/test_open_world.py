"""A data directory with languages and treebanks no catalogue or shared copy has: every
command runs on it as laid out (issue 17's done test), with the tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.data import taskfile
from probe.data.sources.conllu import read_conllu
from probe.data.tasks import TASKS
from tests.helpers import SENTENCES, TATOEBA, conllu_text, make_ud

EXAMPLE = Path(__file__).parents[2] / "examples" / "tasks" / "my_pos.toml"
NER_TAGS = ("B-PER", "O", "B-LOC", "I-LOC", "O")
UPOS = ("DET", "NOUN", "VERB", "ADJ", "NOUN")
N_TRAIN = 2 * sum(map(len, SENTENCES))  # every English training split holds SENTENCES twice


def _token_tag(path: Path, tags: tuple[str, ...], sep: str, copies: int = 1) -> None:
    lines = []
    for words in SENTENCES * copies:
        lines += [f"{w}{sep}{tags[i % len(tags)]}" for i, w in enumerate(words)] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def _ud(root: Path, rel: str, copies: int = 1) -> None:
    path = root / "ud" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(conllu_text(SENTENCES * copies), encoding="utf-8")


@pytest.fixture(scope="module")
def open_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Standard layouts, languages the catalogues lack or the shared data does not hold."""
    root = make_ud(tmp_path_factory.mktemp("open") / "data", SENTENCES * 2)
    # Czech PDT (UD has it; the shared data does not), its train split in parts like UD's.
    _ud(root, "UD_Czech-PDT/cs_pdt-ud-train-c.conllu")
    _ud(root, "UD_Czech-PDT/cs_pdt-ud-train-ca.conllu")
    for split in ("dev", "test"):
        _ud(root, f"UD_Czech-PDT/cs_pdt-ud-{split}.conllu", copies=2)
    _ud(root, "UD_Czech-CAC/cs_cac-ud-test.conllu")  # a second Czech treebank, no train
    _ud(root, "UD_Czech-GUM/cs_gum-ud-test.conllu")  # pos-gum is *_gum, any language
    _ud(root, "UD_Czech-PUD/cs_pud-ud-test.conllu")  # pos-pud's, never pos's
    _ud(root, "UD_English-GUM/en_gum-ud-test.conllu")
    _token_tag(root / "xtreme/panx/en/train-en.tsv", NER_TAGS, "\t", 2)
    _token_tag(root / "xtreme/panx/en/dev-en.tsv", NER_TAGS, "\t")
    _token_tag(root / "xtreme/panx/th/dev-th.tsv", NER_TAGS, "\t")  # not in the shared data
    for split in ("train", "dev", "test"):
        _token_tag(root / f"masakhaner2/tsn/{split}.txt", NER_TAGS, " ", 2)  # not in the list
        _token_tag(root / f"masakhaner2/pcm/{split}.txt", NER_TAGS, " ", 2)
        _token_tag(root / f"xtreme/udpos/en/{split}-en.tsv", UPOS, "\t", 2)
    _token_tag(root / "xtreme/udpos/zu/test-zu.tsv", UPOS, "\t")  # XTREME has no Zulu
    folder = root / "tatoeba"
    folder.mkdir(parents=True)
    xx, eng = TATOEBA["deu"]
    (folder / "tatoeba.ces-eng.ces").write_text("\n".join(xx) + "\n", encoding="utf-8")
    (folder / "tatoeba.ces-eng.eng").write_text("\n".join(eng) + "\n", encoding="utf-8")
    return root


def _probe(tmp: Path, model: Path, data: Path, *args: str) -> str:
    common = ["--model", str(model), "--data-dir", str(data), "--cache-dir",
              str(tmp / "cache"), "--compute", "float32", "--dtype", "float32"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, *common], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def _settings(results: Path, command: str) -> dict[str, object]:
    path = next(results.glob(f"**/{command}-*/settings.json"))
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_every_command_runs_on_languages_and_treebanks_found_on_disk(
    tmp_path: Path, tiny_bert: Path, open_data: Path
) -> None:
    res = ["--results-dir", str(tmp_path / "res")]
    out = _probe(tmp_path, tiny_bert, open_data, "extract", "--task", "panx", "--langs", "all")
    assert "panx/th/dev.h5" in out and "panx/en/train.h5" in out
    out = _probe(tmp_path, tiny_bert, open_data, "extract", "--task", "ner", "--langs", "tsn",
                 "--source", "tsn")  # fmt: skip
    assert "ner/tsn/train.h5" in out

    out = _probe(tmp_path, tiny_bert, open_data, "layers", "--task", "pos", "--langs", "en,cs",
                 "--no-mix", *res)  # fmt: skip
    assert f"trained on en train: {N_TRAIN} words" in out
    settings = _settings(tmp_path / "res", "layers")
    assert (settings["train_split"], settings["dev_split"], settings["eval_split"]) == (
        "train", "dev", "test",
    )  # fmt: skip
    assert settings["treebanks"] == {"en": ["en_ewt"], "cs": ["cs_pdt"]}
    assert settings["train_size"] == {"en train": N_TRAIN}

    out = _probe(tmp_path, tiny_bert, open_data, "grid", "--task", "udpos", "--langs", "en,zu",
                 "--max-epochs", "2", "--workers", "1", *res)  # fmt: skip
    assert f"trained on en train: {N_TRAIN} words" in out
    out = _probe(tmp_path, tiny_bert, open_data, "map", "--task", "pos", "--langs", "en,cs",
                 "--net-steps", "5", *res)  # fmt: skip
    assert "trained on en train" in out
    out = _probe(tmp_path, tiny_bert, open_data, "domain-shift", "--task", "pos", "--langs",
                 "en,cs", "--out-tasks", "pos-gum", "--fuse-layer", "none", "--max-epochs", "2",
                 *res)  # fmt: skip
    assert f"trained on cs train: {N_TRAIN} words" in out  # each language trains its own
    shift = _settings(tmp_path / "res", "domain-shift")
    assert shift["train_split"] == "train" and set(shift["languages"]) == {"en", "cs"}  # type: ignore[arg-type]
    _probe(tmp_path, tiny_bert, open_data, "calibration", "--task", "pos", "--langs", "en,cs",
           "--pooled", "en,cs", "--fuse-layer", "none", "--max-epochs", "2", *res)  # fmt: skip
    assert _settings(tmp_path / "res", "calibration")["train_split"] == "train"
    out = _probe(tmp_path, tiny_bert, open_data, "intermediate", "--target", "pos", "--via",
                 "udpos", "--langs", "en,cs", "--max-epochs", "2", "--sets", "1",
                 "--schedule", "sequential", *res)  # fmt: skip
    assert f"trained on en train: {N_TRAIN} words" in out
    out = CliRunner().invoke(cli, [
        "finetune", "--task", "pos", "--model", str(tiny_bert), "--langs", "en,cs",
        "--treebank", "cs_cac", "--data-dir", str(open_data), "--max-steps", "2",
        "--epochs", "1", "--device", "cpu", *res,
    ], env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert f"trained on en train: {N_TRAIN} words" in out.output
    assert _settings(tmp_path / "res", "finetune")["treebanks"] == {
        "en": ["en_ewt"], "cs": ["cs_cac"],
    }  # fmt: skip


def test_treebank_choice_is_other_data_and_small_data_and_refusals(
    tmp_path: Path, tiny_bert: Path, open_data: Path
) -> None:
    res = ["--results-dir", str(tmp_path / "res")]
    args = ["layers", "--task", "pos", "--langs", "en,cs", "--no-mix", "--no-control", *res]
    _probe(tmp_path, tiny_bert, open_data, *args)
    # Another treebank is other files: re-extracted, never mixed with the first one's shard.
    out = _probe(tmp_path, tiny_bert, open_data, "extract", "--task", "pos", "--langs", "en,cs",
                 "--treebank", "cs_cac", "--splits", "test")  # fmt: skip
    assert "pos/cs/test.h5" in out and "nothing to do" not in out
    # The small-data setting: train on dev, the dev set a seeded hold-out of it.
    out = _probe(tmp_path, tiny_bert, open_data, *args, "--train-split", "dev")
    small = [s for s in (tmp_path / "res").glob("**/settings.json")
             if json.loads(s.read_text())["train_split"] == "dev"]  # fmt: skip
    assert len(small) == 1 and "trained on en dev:" in out
    assert json.loads(small[0].read_text())["dev_split"] == "10% of dev"
    for bad, message in [
        (["--train-split", "test"], "cannot train on 'test' (its evaluation split)"),
        (["--treebank", "cs_pud"], "this task reads every treebank except *_pud"),
    ]:
        result = CliRunner().invoke(cli, [*args, "--model", str(tiny_bert), "--data-dir",
                                          str(open_data), *bad])  # fmt: skip
        assert result.exit_code == 1 and message in result.output, result.output
    result = CliRunner().invoke(cli, ["layers", "--task", "pos-pud", "--model", str(tiny_bert),
                                      "--data-dir", str(open_data)])  # fmt: skip
    assert result.exit_code == 1 and "'pos-pud' is evaluation-only" in result.output


def test_the_documented_task_file_example_runs_as_shipped(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/guide.md's command on examples/tasks/my_pos.toml and its shipped data/."""
    monkeypatch.delenv(taskfile.ENV, raising=False)
    train = read_conllu(EXAMPLE.parent / "data/en/en-train.conllu")
    try:
        result = CliRunner().invoke(cli, [
            "--task-file", str(EXAMPLE), "layers", "--task", "my-pos", "--langs", "all",
            "--model", str(tiny_bert), "--data-dir", str(tmp_path / "elsewhere"),
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"),
            "--compute", "float32", "--no-mix",
        ], env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"trained on en train: {sum(len(s.words) for s in train)} words" in result.output
        settings = _settings(tmp_path / "res", "layers")
        assert settings["languages"] == ["en", "de"]  # source first; under its root, not D
        shards = {p.relative_to(tmp_path / "cache").parts[-3:] for p in
                  (tmp_path / "cache").glob("**/*.h5")}  # fmt: skip
        assert {("my-pos", "en", "train.h5"), ("my-pos", "de", "test.h5")} <= shards
    finally:
        TASKS._entries.pop("my-pos", None)
        taskfile._loaded.clear()

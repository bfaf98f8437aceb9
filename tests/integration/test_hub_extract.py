"""With no data directory, extraction reads the hub; a fake hub serving the local files as
`datasets` objects with the published features gives shards identical to the local run.

The fake replaces the one function that touches the network (`probe.data.sources.hub._load`)
and builds each config's split from a few sentences of ../shared/data: UD rows are parsed
from the raw CoNLL-U (multiword tokens and empty nodes included, as the UD dataset keeps
them), the other sources from the local readers' records, re-encoded as ClassLabel ids in
each dataset's own label order (Tatoeba rows keep their line ends, as on the Hub).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from probe.data.sources import hub
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.tasks import get_task, read_split
from probe.errors import ProbeError
from probe.extract import CachePaths, ExtractOptions, ExtractRequest, ExtractSpec, ensure_cached

pytestmark = pytest.mark.usefixtures("one_thread")

N = 3  # sentences (or pairs) per split: enough to fill a batch and show an order
UPOS_XTREME = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
               "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]  # fmt: skip
UPOS_UD = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
           "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]  # fmt: skip
PANX_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
MASAKHANER_TAGS = [*PANX_TAGS, "B-DATE", "I-DATE"]
LOCAL_SPLIT = {"train": "train", "validation": "dev", "test": "test"}

# task -> (languages, local files to copy: (relative path, kind))
TASK_FILES: dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]] = {
    "panx": (("en", "de"), [("xtreme/panx/en/train-en.tsv", "blocks"),
                            ("xtreme/panx/en/dev-en.tsv", "blocks"),
                            ("xtreme/panx/de/dev-de.tsv", "blocks")]),
    "udpos": (("en", "fr"), [(f"xtreme/udpos/en/{s}-en.tsv", "blocks")
                             for s in ("train", "dev", "test")]
              + [("xtreme/udpos/fr/test-fr.tsv", "blocks")]),
    "pos": (("en", "de"), [(f"ud/UD_English-EWT/en_ewt-ud-{s}.conllu", "conllu")
                           for s in ("train", "dev", "test")]
            + [(f"ud/UD_German-GSD/de_gsd-ud-{s}.conllu", "conllu") for s in ("dev", "test")]
            + [("ud/UD_English-GUM/en_gum-ud-test.conllu", "conllu"),
               ("ud/UD_English-PUD/en_pud-ud-test.conllu", "conllu")]),
    "ner": (("pcm", "swa"), [(f"masakhaner2/pcm/{s}.txt", "blocks")
                             for s in ("train", "dev", "test")]
            + [("masakhaner2/swa/test.txt", "blocks")]),
    "xnli": (("en", "de"), [("xtreme/xnli/en/test-en.tsv", "lines"),
                            ("xtreme/xnli/en/dev-en.tsv", "lines"),
                            ("xtreme/xnli/de/dev-de.tsv", "lines"),
                            ("xtreme/xnli/_myxnli/my.genre.test.tsv", "header"),
                            ("xtreme/xnli/_myxnli/my.genre.dev.tsv", "header")]),
    "pawsx": (("en", "de"), [("xtreme/pawsx/en/dev-en.tsv", "lines"),
                             ("xtreme/pawsx/en/test-en.tsv", "lines"),
                             ("xtreme/pawsx/de/dev-de.tsv", "lines"),
                             ("xtreme/pawsx/_hf_labeled/test-de.tsv", "header")]),
    "tatoeba": (("deu", "tur"), [(f"tatoeba/tatoeba.{x}-eng.{y}", "lines")
                                 for x in ("deu", "tur") for y in (x, "eng")]),
}  # fmt: skip
_SPECIAL_ID = re.compile(r"^\d+[-.]\d+\t", re.M)  # a multiword token or an empty node


def _cut(text: str, kind: str) -> str:
    """A few records of one file, in file order: blank-line blocks, CoNLL-U sentences (the
    first N and the first two with multiword tokens or empty nodes), or lines."""
    if kind in ("lines", "header"):
        lines = text.splitlines(keepends=True)
        return "".join(lines[: N + (kind == "header")])
    blocks = [b for b in text.split("\n\n") if b.strip()]
    keep = set(range(N))
    if kind == "conllu":
        keep |= set([i for i, b in enumerate(blocks) if _SPECIAL_ID.search(b)][:2])
    return "\n\n".join(blocks[i] for i in sorted(keep)) + "\n\n"


def _head(path: Path, size: int = 1 << 18) -> str:
    """The first whole lines of a file (its first 256 KiB hold every record the cut keeps)."""
    with path.open("rb") as f:
        head = f.read(size)
    return head[: head.rfind(b"\n") + 1].decode("utf-8")


@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a few records of every file the tasks below read."""
    root = tmp_path_factory.mktemp("data")
    for _, files in TASK_FILES.values():
        for rel, kind in files:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_cut(_head(shared_data / rel), kind), encoding="utf-8")
    return root


class FakeHub:
    """`hub._load` for the data directory: each config's split as the Hub would serve it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, repo: str, config: str, split: str) -> tuple[Dataset, str]:
        self.calls.append((repo, config, split))
        ds = self._dataset(repo, config, split)
        return ds, hub.hub_identity(repo, config, split, ds._fingerprint)

    def _dataset(self, repo: str, config: str, split: str) -> Dataset:
        local = LOCAL_SPLIT[split]
        if repo == hub.UD:
            return _ud_rows(next((self.root / "ud").glob(f"UD_*/{config}-ud-{local}.conllu")))
        if repo == hub.MASAKHANER:
            return _tagged(self._records("ner", config, local), MASAKHANER_TAGS, "ner_tags",
                           id_column=True)  # fmt: skip
        if repo == hub.WIKIANN:
            raise AssertionError(f"WikiANN asked for {config}: the PAN-X languages here are "
                                 "XTREME's")  # fmt: skip
        name, _, lang = config.partition(".")
        if name == "PAN-X":
            return _tagged(self._records("panx", lang, local), PANX_TAGS, "ner_tags", langs=lang)
        if name == "udpos":
            code = {v: k for k, v in hub.UDPOS_CONFIGS.items()}[lang]
            return _tagged(self._records("udpos", code, local), UPOS_XTREME, "pos_tags")
        if name == "PAWS-X":
            return _pairs(self._records("pawsx", lang, local), "label")
        if name == "XNLI":  # one config for every language, a `language` column
            rows = [(code, p) for code in ("en", "de")
                    if (self.root / f"xtreme/xnli/{code}/{local}-{code}.tsv").is_file()
                    for p in self._records("xnli", code, local)]  # fmt: skip
            ds = _pairs([p for _, p in rows], "gold_label")
            return ds.add_column("language", [code for code, _ in rows])
        if name == "tatoeba":
            pairs = self._records("tatoeba", lang, "test")
            return Dataset.from_dict({
                "source_sentence": [p.text_a + "\n" for p in pairs],
                "target_sentence": [p.text_b + "\n" for p in pairs],
                "source_lang": [lang] * len(pairs), "target_lang": ["eng"] * len(pairs),
            })  # fmt: skip
        raise AssertionError(f"the fake hub has no {repo} {config}")

    def _records(self, task: str, lang: str, split: str) -> Any:
        return read_split(get_task(task), self.root, lang, split)


def _tagged(
    sents: list[TaggedSentence],
    names: list[str],
    column: str,
    *,
    langs: str | None = None,
    id_column: bool = False,
) -> Dataset:
    """Sentences as a token-classification dataset whose tags are ClassLabel ids."""
    columns: dict[str, Any] = {
        "tokens": [list(s.words) for s in sents],
        column: [[names.index(t) for t in s.tags] for s in sents],
    }
    features: dict[str, Any] = {"tokens": Sequence(Value("string")),
                                column: Sequence(ClassLabel(names=names))}  # fmt: skip
    if langs is not None:
        columns["langs"] = [[langs] * len(s.words) for s in sents]
        features["langs"] = Sequence(Value("string"))
    if id_column:
        columns["id"] = [str(i) for i in range(len(sents))]
        features["id"] = Value("string")
    return Dataset.from_dict(columns, features=Features(features))


def _pairs(pairs: list[TextPair], label: str) -> Dataset:
    """Pairs as XTREME publishes them: string labels, "" where a file has none."""
    return Dataset.from_dict({
        "sentence1": [p.text_a for p in pairs], "sentence2": [p.text_b for p in pairs],
        label: [p.label or "" for p in pairs],
    })  # fmt: skip


def _ud_rows(path: Path) -> Dataset:
    """A CoNLL-U file as universal_dependencies rows: every line a token (multiword tokens
    and empty nodes too), heads and FEATS as the `conllu` package's str() of them, relations
    as written."""
    rows: dict[str, list[Any]] = {k: [] for k in ("idx", "text", "tokens", "upos", "head",
                                                  "deprel", "feats")}  # fmt: skip
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        meta = dict(ln[1:].strip().split(" = ", 1) for ln in lines if ln.startswith("# ")
                    and " = " in ln)  # fmt: skip
        cols = [ln.split("\t") for ln in lines if not ln.startswith("#")]
        rows["idx"].append(meta["sent_id"])
        rows["text"].append(meta.get("text", ""))
        rows["tokens"].append([c[1] for c in cols])
        rows["upos"].append([UPOS_UD.index(c[3]) for c in cols])
        rows["head"].append(["None" if c[6] == "_" else c[6] for c in cols])
        rows["deprel"].append([c[7] for c in cols])
        rows["feats"].append(
            [
                "None" if c[5] == "_" else str(dict(f.split("=", 1) for f in c[5].split("|")))
                for c in cols
            ]
        )
    features = Features({
        "idx": Value("string"), "text": Value("string"), "tokens": Sequence(Value("string")),
        "upos": Sequence(ClassLabel(names=UPOS_UD)), "head": Sequence(Value("string")),
        "deprel": Sequence(Value("string")), "feats": Sequence(Value("string")),
    })  # fmt: skip
    return Dataset.from_dict(rows, features=features)


@pytest.fixture
def fake_hub(data: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(data)
    monkeypatch.setattr(hub, "_load", fake)
    return fake


def _extract(tiny_bert: Path, cache: Path, task: str, langs: tuple[str, ...],
             data_dir: Path | None) -> Any:  # fmt: skip
    spec = ExtractSpec(model=str(tiny_bert), dtype="float32", compute_dtype="float32")
    return ensure_cached(spec, ExtractRequest(task, langs), ExtractOptions(device="cpu"),
                         CachePaths(cache, data_dir), progress=False)  # fmt: skip


def _shards(cache: Path) -> dict[str, Path]:
    return {p.relative_to(cache).as_posix(): p for p in sorted(cache.rglob("*.h5"))}


def _contents(path: Path) -> Iterator[tuple[str, Any]]:
    with h5py.File(path, "r") as f:
        for name in sorted(f):
            if name != "sentence_ids":
                yield name, f[name][()]
        yield "label_names", list(f.attrs["label_names"])


@pytest.mark.parametrize("task", list(TASK_FILES))
def test_hub_shards_equal_the_local_ones(
    task: str, data: Path, fake_hub: FakeHub, tiny_bert: Path, tmp_path: Path
) -> None:
    langs = TASK_FILES[task][0]
    _extract(tiny_bert, tmp_path / "local", task, langs, data)
    handle = _extract(tiny_bert, tmp_path / "hub", task, langs, None)
    local, remote = _shards(tmp_path / "local"), _shards(tmp_path / "hub")
    assert local.keys() == remote.keys() and local
    for rel in local:
        a, b = dict(_contents(local[rel])), dict(_contents(remote[rel]))
        assert a.keys() == b.keys(), rel
        for name in a:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), (rel, name)
        with h5py.File(remote[rel], "r") as f:
            source = str(f.attrs["source_hash"])
            assert source.startswith("hub:") and f"@{hub.REVISION}#" in source
            assert list(f.attrs["source_files"]) == [source]
            if task == "pos":  # UD rows carry the files' own sentence ids
                with h5py.File(local[rel], "r") as g:
                    assert list(f["sentence_ids"][()]) == list(g["sentence_ids"][()])
    assert all(s.source_hash.startswith("hub:") for s in handle.report.shards)


def test_hub_rows_are_converted_like_the_local_files(data: Path, fake_hub: FakeHub) -> None:
    """Records, not only shards: the UD rows lose their multiword tokens and empty nodes,
    the Tatoeba rows their line ends, and the labels are the local strings."""
    from probe.data.hub_tasks import read_hub_split

    pos = get_task("pos")
    for lang, split in (("de", "test"), ("en", "train")):
        remote = read_hub_split(pos, lang, split).records
        local = read_split(pos, data, lang, split)
        assert remote == local
    raw = fake_hub("universal-dependencies/universal_dependencies", "de_gsd", "test")[0]
    assert any("_" in [raw.features["upos"].feature.names[i] for i in row] for row in raw["upos"])
    tatoeba = read_hub_split(get_task("tatoeba"), "deu", "test").records
    assert tatoeba == [
        TextPair(f"tatoeba.deu:{i}", p.text_a, p.text_b)
        for i, p in enumerate(read_split(get_task("tatoeba"), data, "deu", "test"))
    ]
    xnli = read_hub_split(get_task("xnli"), "en", "test").records
    assert [p.label for p in xnli] == [p.label for p in read_split(get_task("xnli"), data, "en",
                                                                  "test")]  # fmt: skip
    assert all(p.label in ("entailment", "neutral", "contradiction") for p in xnli)


def test_hub_rerun_reuses_every_shard(fake_hub: FakeHub, tiny_bert: Path, tmp_path: Path) -> None:
    """The fingerprint is a stable identity: a second run extracts nothing."""
    _extract(tiny_bert, tmp_path, "panx", ("en", "de"), None)
    again = _extract(tiny_bert, tmp_path, "panx", ("en", "de"), None)
    assert again.report.shards and all(s.skipped for s in again.report.shards)
    assert ("google/xtreme", "PAN-X.en", "train") in fake_hub.calls
    assert ("google/xtreme", "PAN-X.de", "validation") in fake_hub.calls


def test_hub_label_outside_the_task_set_is_refused(
    fake_hub: FakeHub, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def odd(repo: str, config: str, split: str) -> tuple[Dataset, str]:
        ds = _tagged([TaggedSentence("x", ("Paris",), ("B-GPE",))], ["O", "B-GPE"], "ner_tags")
        return ds, hub.hub_identity(repo, config, split, ds._fingerprint)

    monkeypatch.setattr(hub, "_load", odd)
    with pytest.raises(ProbeError, match=r"hub:google/xtreme/PAN-X\.de.*tag 'B-GPE' is not in"):
        _extract(tiny_bert, tmp_path, "panx", ("de",), None)


def test_unreachable_hub_fails_before_any_model_load(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.extract import run

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was resolved before the data was read")

    monkeypatch.setattr(run, "resolve_model", no_model)
    with pytest.raises(ProbeError) as err:
        _extract(tiny_bert, tmp_path, "udpos", ("en",), None)
    message = str(err.value)
    assert "\n" not in message and "--data-dir" in message and "PROBE_DATA" in message
    assert "not reachable" in message


def test_layers_on_the_hub_scores_as_on_the_local_files(
    data: Path, fake_hub: FakeHub, tiny_bert: Path, tmp_path: Path
) -> None:
    """A command above extraction needs no data directory either, and gives the same rows."""
    import json

    from probe.experiments.base import RunOptions
    from probe.experiments.layers import LayersConfig, run_layers
    from probe.train import TrainConfig
    from tests.helpers import cache_fields

    def run(where: str, data_dir: Path | None) -> Any:
        config = LayersConfig(
            **cache_fields(tmp_path / where, tiny_bert, compute_dtype="float32", data_dir=data_dir),
            train=TrainConfig(max_epochs=2),  # type: ignore[arg-type]
            seeds=(0,),
        )
        return run_layers(config, RunOptions(results_dir=tmp_path / where / "out", progress=False))

    local, remote = run("local", data), run("hub", None)
    assert [(r.head, r.layer, r.lang, r.metric, r.value) for r in remote.rows] == [
        (r.head, r.layer, r.lang, r.metric, r.value) for r in local.rows
    ]
    treebanks = [json.loads((r.directory / "settings.json").read_text())["treebanks"]
                 for r in (local, remote)]  # fmt: skip
    assert treebanks == [{"en": ["en_ewt"], "de": ["de_gsd"]}] * 2


# --- every command reads the hub without a data directory -----------------------------------


@pytest.fixture
def no_data_dir(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The fake hub, and no PROBE_DATA: nothing tells a command where local files are."""
    monkeypatch.delenv("PROBE_DATA", raising=False)
    return fake_hub


def _ud_configs(fake: FakeHub) -> set[tuple[str, str]]:
    return {(config, split) for repo, config, split in fake.calls if repo == hub.UD}


def _probe_fields(tmp_path: Path, tiny_bert: Path, **kw: Any) -> dict[str, Any]:
    from probe.train import TrainConfig
    from tests.helpers import cache_fields

    return dict(
        **cache_fields(tmp_path, tiny_bert, compute_dtype="float32", data_dir=None, **kw),
        fuse_layer=1, train_split="dev", train=TrainConfig(max_epochs=1),
        dlfa_train=TrainConfig(max_epochs=1), seeds=(0,),
    )  # fmt: skip


def test_calibration_reads_the_hub(no_data_dir: FakeHub, tiny_bert: Path, tmp_path: Path) -> None:
    from probe.experiments.base import RunOptions
    from probe.experiments.calibration import CalibrationConfig, CalibrationExperiment

    config = CalibrationConfig(pooled=("en", "de"), **_probe_fields(tmp_path, tiny_bert))
    result = CalibrationExperiment(config, RunOptions(tmp_path / "res", progress=False)).run()
    assert {("en_ewt", "validation"), ("de_gsd", "validation")} <= _ud_configs(no_data_dir)
    assert {r.lang for r in result.rows if r.metric == "ece"} == {"en", "de"}


def test_domain_shift_reads_the_hub(no_data_dir: FakeHub, tiny_bert: Path, tmp_path: Path) -> None:
    from probe.experiments.base import RunOptions
    from probe.experiments.domain_shift import DomainShiftConfig, DomainShiftExperiment

    fields = _probe_fields(tmp_path, tiny_bert, langs=("en",))
    config = DomainShiftConfig(small_train_words=20, **fields)
    result = DomainShiftExperiment(config, RunOptions(tmp_path / "res", progress=False)).run()
    assert result.settings["languages"] == {"en": ["pos-gum", "pos-pud"]}
    assert {("en_gum", "test"), ("en_pud", "test")} <= _ud_configs(no_data_dir)
    assert {r.eval_task for r in result.rows if r.metric == "drop_accuracy"} == {
        "pos-gum", "pos-pud"}  # fmt: skip


def _finetune(tiny_bert: Path, tmp_path: Path, data_dir: Path | None) -> Any:
    from probe.experiments.finetune import FinetuneConfig

    return FinetuneConfig(model=str(tiny_bert), task="pos", langs=("en", "de"),
                          data_dir=data_dir, cache_root=tmp_path / "cache", epochs=1,
                          batch_size=2, max_steps=2, lr=1e-3, device="cpu")  # fmt: skip


def test_finetune_reads_the_hub_as_the_local_files(
    data: Path, no_data_dir: FakeHub, tiny_bert: Path, tmp_path: Path
) -> None:
    """No cache here: the records (and the leakage guard's texts) come from the hub."""
    from probe.experiments.base import RunOptions
    from probe.experiments.finetune import FinetuneExperiment

    def run(where: str, data_dir: Path | None) -> Any:
        config = _finetune(tiny_bert, tmp_path, data_dir)
        return FinetuneExperiment(config, RunOptions(tmp_path / where, progress=False)).run()

    local = run("local", data)
    assert not no_data_dir.calls
    remote = run("hub", None)
    assert {("en_ewt", "train"), ("en_ewt", "validation"), ("de_gsd", "test")} <= _ud_configs(
        no_data_dir
    )
    assert remote.settings["leakage"]["evals"] and not remote.settings["leakage"]["leaking"]
    scores = [[(r.lang, r.metric, r.value) for r in x.rows if r.metric == "accuracy"]
              for x in (local, remote)]  # fmt: skip
    assert scores[0] == scores[1] and {lang for lang, _, _ in scores[1]} >= {"en", "de"}


def test_intermediate_finetune_reads_the_hub(
    no_data_dir: FakeHub, tiny_bert: Path, tmp_path: Path
) -> None:
    from probe.experiments.base import RunOptions
    from probe.experiments.intermediate_finetune import (
        IntermediateFinetuneConfig,
        IntermediateFinetuneExperiment,
    )

    ft = _finetune(tiny_bert, tmp_path, None)
    config = IntermediateFinetuneConfig(finetune=ft, via=("udpos",), body="dlfa")
    result = IntermediateFinetuneExperiment(config, RunOptions(tmp_path, progress=False)).run()
    assert ("google/xtreme", "udpos.English", "train") in no_data_dir.calls
    assert ("de_gsd", "test") in _ud_configs(no_data_dir)
    assert {(r.config, r.lang) for r in result.rows if r.metric == "accuracy"} >= {
        ("none", "de"), ("udpos", "de")}  # fmt: skip


def test_extract_seed_picks_the_max_sentences_sample(
    data: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    args = ["extract", "--model", str(tiny_bert), "--task", "panx", "--langs", "de",
            "--max-sentences", "2", "--data-dir", str(data), "--dtype", "float32"]  # fmt: skip
    for seed in ("0", "1"):
        cache = tmp_path / seed
        out = CliRunner().invoke(cli, [*args, "--seed", seed, "--cache-dir", str(cache)])
        assert out.exit_code == 0, out.output
        (shard,) = _shards(cache).values()
        with h5py.File(shard, "r") as f:
            assert str(f.attrs["source_hash"]).endswith(f":sample{seed}-2")

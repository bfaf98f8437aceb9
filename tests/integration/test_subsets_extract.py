"""A capped run extracts only its seeded sample, trains on all of it, and records its ids."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from probe.cache import SplitReader
from probe.data.subsets import sample_sentences
from probe.data.tasks import get_task, read_split
from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.train import TrainConfig
from tests.helpers import cache_fields, make_treebanks

EWT = ["weblog-a-", "email-b-", "answers-c-", "reviews-d-"]  # ids that carry the genre
DATA = {
    "UD_English-EWT/en_ewt-ud-train.conllu": (12, EWT),
    "UD_English-EWT/en_ewt-ud-dev.conllu": (2, EWT),
    "UD_English-EWT/en_ewt-ud-test.conllu": (2, EWT),
    "UD_German-GSD/de_gsd-ud-test.conllu": (2, ["s"]),
}
CAP = 80  # words; the training split holds 12 x 26 = 312


def test_capped_layers_run_extracts_trains_on_and_records_one_sample(
    tmp_path: Path, tiny_bert: Path
) -> None:
    data = make_treebanks(tmp_path / "data", DATA)
    task = get_task("pos")
    cfg = LayersConfig(**cache_fields(tmp_path, tiny_bert, compute_dtype="float32"),
                       train=TrainConfig(max_epochs=2, seed=3), max_train_words=CAP,
                       control=False, scalar_mix=False)  # type: ignore[arg-type]  # fmt: skip
    result = run_layers(cfg, RunOptions(results_dir=tmp_path / "results", progress=False))

    records = read_split(task, data, "en", task.train_split)
    ids = [r.sent_id for r in records]
    want = sample_sentences(ids, CAP, 3, [len(r.words) for r in records])
    assert len(want) < len(records)  # a sample, not the split
    root, key = tmp_path / "cache", result.cache.key
    with SplitReader.open(root, key, "pos", "en", task.train_split) as reader:
        cached = reader.strings("sentence_ids")
        words = len(reader.labels)
    # Extraction encoded only the sample: the same sentences a full extraction would sample.
    assert cached == [ids[i] for i in want]
    assert words <= CAP
    shard = next((root / key / "pos" / "en").glob(f"{task.train_split}*.h5"))
    with h5py.File(shard) as f:
        assert str(f.attrs["source_hash"]).endswith(f":sample3-{CAP}w")
    # Every genre is in the sample (a prefix of this file would hold the first ones only).
    assert {i.split("-")[0] for i in cached} == {g.split("-")[0] for g in EWT}

    subsets = json.loads((result.directory / "subsets.json").read_text())
    assert subsets["seed"] == 3
    entry = subsets["subsets"][f"pos/en/{task.train_split} (max {CAP:,})"]
    assert entry["train_ids"] == cached and entry["train_words"] == words  # all of it trains
    assert subsets["subsets"][f"pos/en/{task.train_split}"]["ids"] == cached

    dtypes = json.loads((result.directory / "settings.json").read_text())["compute_dtype"]
    assert dtypes == {"extract": "float32", "train": "float32", "evaluate": "float32"}


def test_max_sentences_is_a_seeded_sample_named_in_the_source_hash(
    tmp_path: Path, tiny_bert: Path
) -> None:
    make_treebanks(tmp_path / "data", DATA)
    cfg = LayersConfig(**cache_fields(tmp_path, tiny_bert, compute_dtype="float32",
                                      max_sentences=8),
                       train=TrainConfig(max_epochs=1), control=False,
                       scalar_mix=False)  # type: ignore[arg-type]  # fmt: skip
    result = run_layers(cfg, RunOptions(results_dir=tmp_path / "results", progress=False))
    subsets = json.loads((result.directory / "subsets.json").read_text())["subsets"]
    test = subsets["pos/en/test"]
    assert test["sample"] == "sample0-8" and test["n"] == 8
    assert len(set(test["ids"])) == 8
    first8 = [f"{EWT[i % 4]}{i:04d}" for i in range(8)]
    assert test["ids"] != first8  # not the file's first 8
    assert np.all(np.diff([int(i[-4:]) for i in test["ids"]]) > 0)  # file order kept

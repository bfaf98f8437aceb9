"""subsets.json: the sentence (pair) ids of every subset a run used, so a reader can rebuild it.

Two kinds are recorded: what extraction sampled (`--max-sentences`, a capped training split;
the shard's source hash names the sample, e.g. `:sample0-5000w`) and what training kept of
the cached splits (`--max-train-words`, size matching, the seeded dev hold-out). Both are
seeded random samples of whole sentences (`probe.data.subsets`); the ids are in file order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.data.tasks import Task
from probe.train.splits import CachedSplit, opener, subset_ids, train_dev

if TYPE_CHECKING:
    from probe.extract import CacheHandle

FILE = "subsets.json"


def extracted_subsets(cache: CacheHandle) -> dict[str, Any]:
    """`task/lang/split` -> the sample and ids of every cached split extraction sampled."""
    out: dict[str, Any] = {}
    for shard in cache.report.shards:
        at = shard.source_hash.find(":sample")
        if at < 0:
            continue
        tag = shard.source_hash[at + 1 :]
        split = re.sub(r"-[0-9]{5}$", "", shard.path.stem)  # `train` or a piece `train-00001`
        task, lang = shard.path.parent.parent.name, shard.path.parent.name
        where = f"{task}/{lang}/{split}"
        if where not in out:
            with cache.open(task, lang, split) as reader:
                ids = reader.strings("sentence_ids")
            out[where] = {"sample": tag, "n": len(ids), "ids": ids}
    return out


def training_subsets(
    task: Task,
    cache: CacheHandle,
    trains: Iterable[tuple[str, int | None]],
    dev_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """`task/lang/split` -> ids of the training subsets `train_dev` keeps for each (language,
    cap): the capped training split and the seeded dev hold-out (when the task has no dev
    split); uncapped splits read whole are not listed."""
    out: dict[str, Any] = {}
    open_split = opener(cache.root, cache.key, task)
    for lang, cap in trains:
        train, dev = train_dev(task, open_split, lang, cap, dev_fraction, seed)
        try:
            where = f"{task.name}/{lang}/{task.train_split}"
            if cap:
                out[f"{where} (max {cap:,})"] = _entry(train, dev, task, cap, seed)
            elif not task.dev_split:
                out[f"{where} (dev hold-out)"] = _entry(train, dev, task, None, seed)
        finally:
            train.reader.close()
            dev.reader.close()
    return out


def _entry(
    train: CachedSplit, dev: CachedSplit, task: Task, cap: int | None, seed: int
) -> dict[str, Any]:
    unit = "pairs" if train.pairs else "words"  # a token view's items are pairs
    entry: dict[str, Any] = {"seed": seed, "cap": cap, "unit": unit}
    entry[f"train_{unit}"] = len(train.labels)
    entry["train_ids"] = subset_ids(train)
    if not task.dev_split:
        entry["dev_ids"] = subset_ids(dev)
    return entry


def write_subsets(directory: Path, subsets: dict[str, Any], seed: int) -> None:
    """subsets.json in the results directory (nothing when the run subsets nothing)."""
    if subsets:
        text = json.dumps({"seed": seed, "subsets": subsets}, indent=1, ensure_ascii=False)
        (directory / FILE).write_text(text + "\n", encoding="utf-8")

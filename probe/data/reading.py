"""One split of a task, read from wherever the task lives: the one entry point for records.

A task's data is in one of three places, decided by `Task.where(data_dir)`: the task file's
own `root` (task files), else the run's data directory (`--data-dir` / PROBE_DATA), else,
with neither, the Hugging Face Hub (`probe.data.hub_tasks`). Extraction, the leakage guard
and fine-tuning all read through `read_task_split`, so every command reads the same records
from the same place, and a task with no local data and no hub source fails with one line
naming the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.data.checks import check_records
from probe.data.hub_tasks import hub_languages, read_hub_split
from probe.data.tasks import Records, Task, local_files, read_split
from probe.errors import ProbeError
from probe.runtime.fileid import files_sha256


@dataclass(frozen=True)
class SplitData:
    """One split's checked records and their identity."""

    records: Records
    source_hash: str  # the files' sha256, or the hub split's id (a shard's source hash)
    sources: tuple[str, ...]  # the local files, or the hub split id (a shard's source_files)


def read_task_split(
    task: Task, data_dir: Path | None, lang: str, split: str, treebanks: Sequence[str] = ()
) -> SplitData:
    """One split of one language, label-checked, from the task's root, `data_dir` or the hub.

    `data_dir` is the run's (None: no --data-dir and no PROBE_DATA); the task's own root wins.
    `treebanks` is the `--treebank` choice of a UD task.
    """
    where = task.where(data_dir)
    if where is None:
        hub = read_hub_split(task, lang, split, treebanks)
        records = check_records(task, hub.records, (Path(hub.source),), split)
        return SplitData(records, hub.source, (hub.source,))
    files = local_files(task, where, lang, split, treebanks)
    records = read_split(task, where, lang, split, treebanks)
    return SplitData(records, files_sha256(files), tuple(str(f) for f in files))


def has_split(
    task: Task, data_dir: Path | None, lang: str, split: str, treebanks: Sequence[str] = ()
) -> bool:
    """Whether one split of one language can be read, without reading it: its files exist,
    or (the hub) the task has a hub source listing the language and the task knows the split;
    a hub split that turns out to be missing fails when it is read, never silently."""
    try:
        where = task.where(data_dir)
        if where is None:
            return lang in hub_languages(task, named=True) and split in task.known_splits
        local_files(task, where, lang, split, treebanks)
    except ProbeError:
        return False
    return True

"""What to extract, read before the encoder loads: every requested split, then its shards.

Reading the data first makes bad data fail in a second, not after a model load; the shard
plan is a function of the data and `shard_rows` only (never of the world size), so every
rank of a distributed run computes the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe import cache as store
from probe.data.discovery import check_language, expand_languages
from probe.data.reading import read_task_split
from probe.data.subsets import sample_sentences, sample_tag
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.extract.spec import CachePaths, ExtractRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitJob:
    """One split of one language: its records and their identity."""

    task: Task
    lang: str
    split: str
    records: list[Any]
    source_hash: str
    sources: tuple[str, ...]  # the local files, or the hub split (the shard's source_files)

    @property
    def rows_per_record(self) -> list[int]:
        if self.task.level == "word":
            return [len(r.words) for r in self.records]
        return [1] * len(self.records)


def plan_jobs(request: ExtractRequest, paths: CachePaths) -> list[SplitJob]:
    """Read every split of one request (fast) so bad data fails before the encoder loads."""
    task = get_task(request.task)
    data_dir = paths.data_dir  # the task's own root wins; neither: the hub (probe.data.reading)
    picks = request.treebanks
    langs = expand_languages(task, request.langs, data_dir, picks)
    if request.source:
        check_language(task, request.source, data_dir, picks)
    jobs = []
    for lang in langs:
        found = []
        for split in request.splits or task.splits_for(lang, request.source):
            # Another treebank choice is other files, so another source hash: re-extracted.
            data = read_task_split(task, data_dir, lang, split, picks)
            if unusable(task, lang, split, data.records, request.source):
                break
            if request.scored_only and split == task.eval_split and _unlabelled(data.records):
                log.info("%s/%s/%s has no labels: not extracted", task.name, lang, split)
                continue
            records, sampled = sample_records(task, data.records, request, lang, split)
            found.append(SplitJob(task, lang, split, records, data.source_hash + sampled,
                                  data.sources))  # fmt: skip
        else:
            jobs += found
    return jobs


def unusable(task: Task, lang: str, split: str, records: list[Any], source: str | None) -> bool:
    """Whether a language is skipped: its split cannot serve the task (`Task.skip_language`:
    a morphological feature its treebank does not annotate), said in a warning; for the
    source language, which the probes train on, that is an error."""
    reason = task.skip_language(records) if task.skip_language is not None else None
    if reason is None:
        return False
    if lang == (source or task.default_source):
        raise ProbeError(f"task {task.name!r}: source language {lang!r} cannot train it: "
                         f"{reason} ({split})")  # fmt: skip
    log.warning("%s: skipping %s: %s (%s split)", task.name, lang, reason, split)
    return True


def sample_records(
    task: Task, records: list[Any], request: ExtractRequest, lang: str, split: str
) -> tuple[list[Any], str]:
    """The records a request keeps of one split and the source-hash suffix naming the sample:
    `max_sentences` records, then the split's cap in `split_caps` (in the training language)
    as words or pairs; both seeded random samples of whole records (`probe.data.subsets`)."""
    tag = ""
    if request.max_sentences:
        keep = sample_sentences(_record_ids(records), request.max_sentences, request.seed)
        records = [records[i] for i in keep]
        tag += sample_tag(request.seed, request.max_sentences)
    if request.max_eval_sentences and split == task.eval_split:
        budget = request.max_eval_sentences
        keep = sample_sentences(_record_ids(records), budget, request.seed)
        records = [records[i] for i in keep]
        tag += sample_tag(request.seed, budget, "e")
    trains = request.source is None or lang == request.source
    for capped, budget in request.split_caps:
        if capped == split and trains:
            sizes = [len(r.words) for r in records] if task.level == "word" else None
            keep = sample_sentences(_record_ids(records), budget, request.seed, sizes)
            records = [records[i] for i in keep]
            tag += sample_tag(request.seed, budget, "w" if task.level == "word" else "p")
    return records, tag


def _unlabelled(records: Sequence[Any]) -> bool:
    """Every record's label is hidden (pairs with label None; word records always have tags)."""
    return all(getattr(r, "label", "") is None for r in records)


def _record_ids(records: Sequence[Any]) -> list[str]:
    """Sentence ids (TaggedSentence) or pair ids (TextPair): what the cache stores."""
    return [str(getattr(r, "sent_id", None) or getattr(r, "pair_id", "")) for r in records]


def plan_requests(requests: Sequence[ExtractRequest], paths: CachePaths) -> list[SplitJob]:
    """The jobs of several requests, each split once: a split two requests share is read
    once; the same split asked with different data (another `max_sentences`) is an error,
    since both would be written to the one shard path."""
    jobs: dict[tuple[str, str, str], SplitJob] = {}
    for request in requests:
        for job in plan_jobs(request, paths):
            where = (job.task.name, job.lang, job.split)
            seen = jobs.setdefault(where, job)
            if seen.source_hash != job.source_hash:
                raise ProbeError(
                    f"{'/'.join(where)} is requested twice with different data "
                    f"({seen.source_hash} and {job.source_hash}); ask for it once"
                )
    return list(jobs.values())


def shard_ranges(rows_per_record: Sequence[int], shard_rows: int) -> list[tuple[int, int]]:
    """Consecutive record ranges holding at most `shard_rows` rows each (at least one record)."""
    ranges, start, rows = [], 0, 0
    for i, n in enumerate(rows_per_record):
        if rows and rows + n > shard_rows:
            ranges.append((start, i))
            start, rows = i, 0
        rows += n
    ranges.append((start, len(rows_per_record)))
    return ranges


@dataclass(frozen=True)
class ShardItem:
    """One shard of the plan: a record range of one split, and where it goes."""

    index: int  # position in the plan, the same on every rank
    job: SplitJob
    n_shards: int
    records: tuple[int, int]
    path: Path
    rows: int


def plan_shards(jobs: Sequence[SplitJob], shard_rows: int, root: Path, key: str) -> list[ShardItem]:
    """Every shard the jobs need, in a fixed order: a function of the data and `shard_rows`
    only (never of the world size), so any number of ranks finds the same shards."""
    items: list[ShardItem] = []
    for job in jobs:
        # A token view's row is a pair (its progress unit) holding up to token_length rows of
        # features: bound its shards by that many tokens, not by pairs.
        per_pair = job.task.token_length if job.task.level == "pair-tokens" else None
        ranges = shard_ranges(job.rows_per_record, max(1, shard_rows // (per_pair or 1)))
        for index, (lo, hi) in enumerate(ranges):
            path = store.shard_path(root, key, job.task.name, job.lang, job.split,
                                    index if len(ranges) > 1 else None)  # fmt: skip
            rows = sum(job.rows_per_record[lo:hi])
            items.append(ShardItem(len(items), job, len(ranges), (lo, hi), path, rows))
    return items

"""`ensure_cached`: make every requested split complete in the cache, then hand the cache back.

One call resolves the spec once (one cache key), plans every request's shards, loads the
encoder at most once (never when everything is cached) and runs it over the missing
shards: tokenising one block ahead on a thread, writing the previous block on another.
Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) the ranks share the missing
shards, balanced by rows (`probe.runtime.ranks.assign`); each writes its own with the usual
lock and atomic rename, every rank gets the merged report, and rank 0 writes the manifest
once all are done. A plain run is rank 0 of 1 and talks to nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.cache import CacheSpec, writer
from probe.cache.manifest import update_manifest, write_spec
from probe.cache.reader import shard_is_current
from probe.cache.schema import (
    SENTENCE_FEATURES,
    TOKEN_ROW_ARRAYS,
    WORD_FEATURES,
    WORD_ROW_ARRAYS,
    base_attrs,
)
from probe.data.tasks import Task
from probe.errors import ProbeError
from probe.extract.background import ShardWrites, prefetch, trim_heap
from probe.extract.blocks import BlockBuffers, PreparedBlock, prepared_blocks, skip_blocks
from probe.extract.encoder import Encoder
from probe.extract.handle import CacheHandle, ExtractReport, ShardReport
from probe.extract.plan import ShardItem, plan_requests, plan_shards
from probe.extract.spec import CachePaths, ExtractOptions, ExtractRequest, ExtractSpec
from probe.models import ModelRef, load_encoder, resolve_model
from probe.runtime.device import resolve_device
from probe.runtime.precision import pick_compute_dtype, small_kernel_caches
from probe.runtime.ranks import Rank, assign, current_rank, from_main, gather_all, process_group

log = logging.getLogger(__name__)


def ensure_cached(
    spec: ExtractSpec,
    requests: ExtractRequest | Sequence[ExtractRequest],
    options: ExtractOptions | None = None,
    paths: CachePaths | None = None,
    *,
    progress: bool = True,
) -> CacheHandle:
    """Extract every requested split not already cached under `spec`; return its handle.

    Several requests (tasks, languages, splits) share the one key and the one encoder load;
    a split asked by two of them is extracted once. No options: the defaults; no paths:
    ./cache and no data directory (`CachePaths.resolve` reads the environment).
    """
    wanted = (requests,) if isinstance(requests, ExtractRequest) else tuple(requests)
    if not wanted:
        raise ProbeError("nothing to extract: no request given")
    rank = current_rank()
    with process_group(rank):
        return _ensure_cached(spec, wanted, options or ExtractOptions(), paths or CachePaths(),
                              progress, rank)  # fmt: skip


@dataclass(frozen=True)
class _Run:
    """What every shard of one call shares: the asked spec and options, the resolved model,
    device and precision, and the hashed spec."""

    spec: ExtractSpec
    options: ExtractOptions
    ref: ModelRef
    device: torch.device
    compute: torch.dtype
    cache_spec: CacheSpec
    rank: Rank


def _ensure_cached(
    spec: ExtractSpec,
    requests: tuple[ExtractRequest, ...],
    options: ExtractOptions,
    paths: CachePaths,
    progress: bool,
    rank: Rank,
) -> CacheHandle:
    jobs = plan_requests(requests, paths)
    root = paths.cache_root
    ref = resolve_model(spec.model, root, spec.random_weights)
    device = resolve_device(options.device, rank)
    compute = pick_compute_dtype(spec.compute_dtype, device)
    cache_spec = spec.cache_spec(ref, str(compute).removeprefix("torch."))
    key = cache_spec.key()
    run = _Run(spec, options, ref, device, compute, cache_spec, rank)
    report = ExtractReport(key, root / key, str(device), cache_spec.compute_dtype,
                           world_size=rank.world_size, rank=rank.rank)  # fmt: skip
    items = plan_shards(jobs, options.shard_rows, root, key)

    def missing() -> tuple[str, list[int]]:
        return key, [i.index for i in items if not _reusable(i.path, i.job.source_hash,
                                                             options.overwrite)]  # fmt: skip

    main_key, todo = from_main(rank, missing)
    if main_key != key:  # processes, not calls: every rank must write under rank 0's key
        raise ProbeError(
            f"{rank} would write cache key {key} but rank 0 writes {main_key} (different "
            "model files or compute dtype on this node); pass the same --model and --compute"
        )
    pending = set(todo)
    shards = {i.index: ShardReport(i.path, i.rows, 0.0, skipped=True,
                                   source_hash=i.job.source_hash)
              for i in items if i.index not in pending}  # fmt: skip
    if not todo:
        log.info("everything is cached under %s", root / key)
    else:
        owners = assign([items[i].rows for i in todo], rank.world_size)
        mine = [items[i] for i, owner in zip(todo, owners, strict=True) if owner == rank.rank]
        start = time.perf_counter()
        if rank.is_main:
            write_spec(root, cache_spec, {"model": spec.model, "model_path": str(ref.path)})
        done: dict[int, ShardReport] = {}
        if mine:
            with small_kernel_caches():
                done = _extract_items(mine, run, progress)
        for part in gather_all(rank, done):
            shards.update(part)
        report.wall_seconds = time.perf_counter() - start
    report.shards = [shards[i.index] for i in items]
    if rank.is_main:
        update_manifest(root, key, {
            i.path.relative_to(root / key).as_posix(): {
                "rows": i.rows, "records": list(i.records), "n_shards": i.n_shards,
                "source_hash": i.job.source_hash,
            } for i in items
        })  # fmt: skip
        if report.extracted:
            log.info(
                "extracted %d rows in %.1f s (%.0f rows/s), padding waste %.1f%%, into %s",
                report.rows, report.seconds, report.rows / max(report.seconds, 1e-9),
                100 * report.padding_waste, report.cache_dir,
            )  # fmt: skip
    return CacheHandle(key, root, spec, cache_spec, report)


def _extract_items(items: Sequence[ShardItem], run: _Run, progress: bool) -> dict[int, ShardReport]:
    """This rank's shards (at least one), each rechecked under its lock (another process
    may have built it)."""
    spec, options, rank, device = run.spec, run.options, run.rank, run.device
    model, tokenizer = load_encoder(run.ref, str(device))
    encoder = Encoder(model, tokenizer, device, run.compute, spec.max_length, spec.window_stride)
    batch_tokens = options.batch_tokens or (32768 if device.type == "cuda" else 4096)
    from tqdm.auto import tqdm

    unit = "word" if items[0].job.task.level == "word" else "pair"
    where = f" ({rank})" if rank.distributed else ""
    done: dict[int, ShardReport] = {}
    # A token view's shard is sized by its pairs' tokens: counted here, before the tokenising
    # thread starts (the tokenizer is not shared between threads).
    lengths = {i.index: encoder.units.pair_lengths(i.job.records[slice(*i.records)],
                                                   i.job.task.token_length)
               for i in items if i.job.task.level == "pair-tokens"}  # fmt: skip
    # Tokenising and batching run one block ahead on a thread of their own.
    blocks = prefetch(prepared_blocks(
        encoder.units, items, n_layers=encoder.n_layers, hidden=encoder.hidden,
        pooling=spec.pooling, dtype=spec.dtype, block_bytes=options.block_bytes,
        batch_tokens=batch_tokens,
    ), "tokenize")  # fmt: skip
    buffers = BlockBuffers(encoder.n_layers, encoder.hidden, spec.dtype)
    with (
        tqdm(total=sum(i.rows for i in items), unit=unit, unit_scale=True, smoothing=0.1,
             disable=not (progress and rank.is_main)) as bar,
        ShardWrites() as writes,
        closing(blocks),
    ):  # fmt: skip
        for item in items:
            job, path = item.job, item.path
            lock = ExitStack()
            lock.enter_context(writer.shard_lock(path))  # by the module: tests patch it
            try:
                if _reusable(path, job.source_hash, options.overwrite):  # built meanwhile
                    lock.close()
                    skip_blocks(blocks, item)
                    shard = ShardReport(path, item.rows, 0.0, skipped=True)
                    bar.update(item.rows)
                else:
                    writer.remove_stale_temporaries(path)  # of killed writers; we hold the lock
                    bar.set_description(f"{job.task.name}/{job.lang}/{job.split}{where}")
                    shard = _extract_shard(encoder, item, blocks, run, bar, writes, lock,
                                           buffers, lengths.get(item.index))  # fmt: skip
            except BaseException:
                lock.close()  # a no-op once the shard's writes took it over
                raise
            shard.source_hash, shard.rank = job.source_hash, rank.rank
            done[item.index] = shard
        began = time.perf_counter()
        writes.drain()
        if done:  # the last writes and commits belong to the run's time
            last = max((s for s in done.values() if not s.skipped), default=None,
                       key=lambda s: s.seconds)  # fmt: skip
            if last is not None:
                last.seconds += time.perf_counter() - began
    return done


def _reusable(path: Path, source_hash: str, overwrite: str) -> bool:
    """A complete shard of exactly this source data is reused unless told otherwise."""
    if overwrite == "always":
        return False
    current = shard_is_current(path, source_hash)
    if overwrite == "never" and path.exists() and not current:
        raise ProbeError(f"{path} is stale or incomplete and --overwrite never forbids rebuilding")
    return current


def _extract_shard(
    encoder: Encoder,
    item: ShardItem,
    blocks: Iterator[PreparedBlock],
    run: _Run,
    bar: Any,
    writes: ShardWrites,
    lock: ExitStack,
    buffers: BlockBuffers,
    lengths: np.ndarray | None = None,
) -> ShardReport:
    """Run the encoder over one shard's prepared blocks; writes and the commit (and with
    them the lock) go to `writes`.

    The report's seconds are this thread's time on the shard: the encoder, pooling, and
    waiting for the next prepared block or for an earlier block's write. `lengths`: a token
    view's tokens per pair (its rows), counted before the tokenising thread started.
    """
    job, path, spec = item.job, item.path, run.spec
    lo, hi = item.records
    task = job.task
    word_level = task.level == "word"
    token_rows = task.level == "pair-tokens"  # a pair's token view: a row per token
    if token_rows and lengths is None:
        raise RuntimeError(f"token view shard {path} without its token counts")
    arrays, strings = _shard_metadata(task, job.records[lo:hi], lengths)
    n_rows = int(lengths.sum()) if lengths is not None else item.rows
    # How rows were made of subwords: the word pooling, every token (a token view), a mean.
    pooling = spec.pooling if word_level else "tokens" if token_rows else task.sentence_pooling
    attrs = base_attrs(
        level=task.level, task=task.name, lang=job.lang, split=job.split,
        model=spec.model, model_identity=run.ref.identity, cache_key=run.cache_spec.key(),
        n_layers=encoder.n_layers, hidden=encoder.hidden, pooling=pooling, dtype=spec.dtype,
        compute_dtype=run.cache_spec.compute_dtype,
        max_length=encoder.max_length, window_stride=encoder.stride,
        source_hash=job.source_hash, source_files=list(job.sources),
        label_names=list(task.labels), shard_index=0 if item.n_shards == 1 else lo,
        record_range=[lo, hi], n_shards=item.n_shards,
    )  # fmt: skip
    if token_rows:
        attrs["token_length"] = encoder.units.token_limit(task.token_length)
    start = time.perf_counter()
    shard = writer.ShardWriter(
        path,
        feature_names=WORD_FEATURES if word_level or token_rows else SENTENCE_FEATURES,
        n_layers=encoder.n_layers,
        n_rows=n_rows,
        hidden=encoder.hidden,
        dtype=spec.dtype,
        attrs=attrs,
        arrays=arrays,
        strings=strings,
        row_arrays=WORD_ROW_ARRAYS if word_level else TOKEN_ROW_ARRAYS if token_rows else None,
    )
    writes.open(shard, lock.pop_all())  # the lock now belongs to the shard's commit
    tokens = pad = empty = bare = truncated = 0
    for block in blocks:
        if block.item != item.index:
            raise RuntimeError(f"prepared block of shard {block.item} while at {item.index}")
        out = buffers.take(block.out_rows)
        for batch in block.batches:
            encoder.submit(batch, out)  # its rows reach `out` on the row thread
            tokens += batch.tokens
            pad += batch.pad_tokens
            bar.update(batch.progress)
        encoder.drain()  # every row of the block is in `out`
        if word_level:
            features = {"features": out, "word_types": block.word_types}
        elif token_rows:
            features = {"features": out, "segments": block.segments}
        else:
            features = {"sentence_features": out[:, 0::2], "sentence_features_b": out[:, 1::2]}
        writes.block(shard, block.row, features)
        trim_heap()
        empty += block.empty_words
        bare += block.bare_first
        truncated += block.truncated
        if block.last:
            break
    last_attrs: dict[str, Any] = {"empty_words": empty, "truncated": truncated}
    if word_level:  # the share of words whose first piece is a bare "▁" (0 for WordPiece)
        last_attrs["bare_marker_share"] = bare / max(item.rows, 1)
    writes.commit(shard, last_attrs)
    seconds = time.perf_counter() - start
    return ShardReport(path, item.rows, seconds, skipped=False, tokens=tokens, pad_tokens=pad)


def _shard_metadata(
    task: Task, records: Sequence[Any], token_lengths: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Labels, offsets and the strings that trace a row back to its source (a pair's token
    view: its pairs' `token_lengths` give the offsets, one label per pair)."""
    label_index = {name: i for i, name in enumerate(task.labels)}
    if task.level == "word":
        lengths = np.asarray([len(r.words) for r in records], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        labels = np.asarray([label_index[t] for r in records for t in r.tags], dtype=np.int16)
        words = [w for r in records for w in r.words]
        arrays: dict[str, np.ndarray] = {"offsets": offsets, "labels": labels}
        strings = {"words": words, "sentence_ids": [r.sent_id for r in records]}
        if records and all(r.has_tree for r in records):  # UD: the tree of every sentence
            tree_arrays, tree_strings = tree_metadata(records)
            arrays.update(tree_arrays)
            strings.update(tree_strings)
        return arrays, strings
    labels = np.asarray(
        [label_index[r.label] if r.label is not None else -1 for r in records], dtype=np.int16
    )
    pair_arrays: dict[str, np.ndarray] = {"labels": labels}
    if token_lengths is not None:
        pair_arrays["offsets"] = np.concatenate([[0], np.cumsum(token_lengths)]).astype(np.int64)
    return (
        pair_arrays,
        {
            "sentence_ids": [r.pair_id for r in records],
            "text_a": [r.text_a for r in records],
            "text_b": [r.text_b for r in records],
        },
    )


def tree_metadata(records: Sequence[Any]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """A UD shard's trees (docs/cache-format.md): each word's head as a sentence-local
    0-based index (-1 for the root) and its relation as written (`nsubj:pass`), an index
    into the shard's `relation_names`; what structural probes and edge probing read."""
    heads = np.asarray([h - 1 for r in records for h in r.heads], dtype=np.int32)
    names = sorted({rel for r in records for rel in r.deprels})
    index = {name: i for i, name in enumerate(names)}
    relations = np.asarray([index[rel] for r in records for rel in r.deprels], dtype=np.int16)
    return {"heads": heads, "relations": relations}, {"relation_names": names}

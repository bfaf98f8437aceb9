"""The threads beside the encoder: prefetch order, errors and early stop; shard writes that
stop at the first failure and never commit a shard whose write failed."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np
import pytest

from probe.cache import ShardWriter, base_attrs
from probe.extract.background import ShardWrites, prefetch


def test_prefetch_keeps_order_and_raises_the_producers_error_at_its_item() -> None:
    assert list(prefetch(iter(range(50)))) == list(range(50))

    def failing() -> object:
        yield 1
        yield 2
        raise ValueError("bad record")

    seen = []
    with pytest.raises(ValueError, match="bad record"):
        for item in prefetch(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    produced = []

    def endless() -> object:
        for i in range(10_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    stream = prefetch(endless())
    assert next(stream) == 0
    stream.close()
    time.sleep(0.3)
    assert threading.active_count() == before
    assert len(produced) <= 4  # at most a couple of items ahead, never the whole stream


def _writer(path: Path, rows: int = 4) -> ShardWriter:
    return ShardWriter(path, feature_names=("features",), n_layers=2, n_rows=rows, hidden=3,
                       dtype="float16", attrs=base_attrs(level="word"), arrays={},
                       strings={})  # fmt: skip


def _lock(tmp_path: Path, released: list[str], name: str) -> ExitStack:
    stack = ExitStack()
    stack.callback(released.append, name)
    return stack


def test_shard_writes_commit_in_order_and_release_each_lock(tmp_path: Path) -> None:
    released: list[str] = []
    block = np.ones((2, 2, 3), dtype=np.float16)
    with ShardWrites() as writes:
        for name in ("a", "b"):
            writer = _writer(tmp_path / f"{name}.h5")
            writes.open(writer, _lock(tmp_path, released, name))
            writes.block(writer, 0, {"features": block})
            writes.block(writer, 2, {"features": 2 * block})
            writes.commit(writer, {"empty_words": 0})
    assert released == ["a", "b"]
    with h5py.File(tmp_path / "b.h5") as shard:  # plain h5py: this toy lacks a shard's attrs
        assert bool(shard.attrs["complete"]) and shard.attrs["empty_words"] == 0
        assert shard["features"][1].tolist() == [[1.0] * 3] * 2 + [[2.0] * 3] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]


def test_a_failed_write_raises_its_own_error_and_nothing_is_committed(tmp_path: Path) -> None:
    released: list[str] = []
    good = np.ones((2, 2, 3), dtype=np.float16)
    with pytest.raises(ValueError, match="expected 2, got 3"), ShardWrites() as writes:
        first = _writer(tmp_path / "a.h5")
        writes.open(first, _lock(tmp_path, released, "a"))
        writes.block(first, 0, {"features": good})
        writes.block(first, 3, {"features": good})  # out of order: fails on the thread
        writes.commit(first, {})
        second = _writer(tmp_path / "b.h5")
        writes.open(second, _lock(tmp_path, released, "b"))
        writes.block(second, 0, {"features": good})  # the first failure surfaces here
        writes.block(second, 2, {"features": good})
        writes.commit(second, {})
    assert list(tmp_path.iterdir()) == []  # no shard, no temporary file left
    assert sorted(released) == ["a", "b"]


def test_a_callers_error_keeps_queued_shards_and_aborts_the_rest(tmp_path: Path) -> None:
    """A full disk while reserving the next shard must not cost the one already queued."""
    released: list[str] = []
    block = np.ones((2, 4, 3), dtype=np.float16)
    with pytest.raises(OSError, match="No space"), ShardWrites() as writes:
        done = _writer(tmp_path / "a.h5")
        write_rows = done.write_rows  # slow, so that its commit is still queued at the error
        done.write_rows = lambda *args: (time.sleep(0.3), write_rows(*args))  # type: ignore[method-assign]
        writes.open(done, _lock(tmp_path, released, "a"))
        writes.block(done, 0, {"features": block})
        writes.commit(done, {"empty_words": 0})
        started = _writer(tmp_path / "b.h5")
        writes.open(started, _lock(tmp_path, released, "b"))
        raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    assert sorted(released) == ["a", "b"]
    with h5py.File(tmp_path / "a.h5") as shard:
        assert bool(shard.attrs["complete"])

"""Shards whose rows bypass h5py (offsets, direct I/O, write threads) equal plain h5py's."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xxhash

from probe.cache import open_shard, streamed
from probe.cache import writer as writer_module
from probe.cache.schema import CHECKSUM, STR, WORD_ROW_ARRAYS, base_attrs, encode_attr
from probe.cache.streamed import ALIGN, StreamedRun
from probe.cache.writer import ShardWriter


def _inputs(n_layers: int, n_rows: int, hidden: int, dtype: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_layers, n_rows, hidden)).astype(dtype)
    return {
        "features": features,
        "word_types": rng.integers(0, 10**12, n_rows, dtype=np.int64),
        "attrs": base_attrs(
            level="word",
            task="pos",
            lang="en",
            split="test",
            n_layers=n_layers,
            hidden=hidden,
            label_names=["NOUN", "VERB"],
            dtype=dtype,
        ),  # fmt: skip
        "arrays": {
            "offsets": np.array([0, n_rows // 2, n_rows], dtype=np.int64),
            "labels": (np.arange(n_rows) % 2).astype(np.int16),
        },  # fmt: skip
        "strings": {"words": [f"w{i}é" for i in range(n_rows)], "sentence_ids": ["s1", "s2"]},
    }


def _fast(path: Path, x: dict[str, Any], blocks: list[int], **kw: Any) -> Path:
    n_layers, n_rows, hidden = x["features"].shape
    writer = ShardWriter(
        path, feature_names=("features",), n_layers=n_layers, n_rows=n_rows, hidden=hidden,
        dtype=str(x["features"].dtype), attrs=x["attrs"], arrays=x["arrays"],
        strings=x["strings"], row_arrays=WORD_ROW_ARRAYS, **kw,
    )  # fmt: skip
    row = 0
    for size in blocks:
        # a block buffer bigger than the block, as BlockBuffers hands out (not aligned)
        buffer = np.empty((n_layers, size + 3, hidden), x["features"].dtype)[:, 1 : size + 1]
        buffer[:] = x["features"][:, row : row + size]
        writer.write_rows(row, {"features": buffer, "word_types": x["word_types"][row:][:size]})
        row += size
    writer.set_attr("empty_words", 0)
    return writer.commit()


def _plain(path: Path, x: dict[str, Any]) -> Path:
    """The same shard's content written the plain way: every dataset through h5py."""
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f.create_dataset("features", data=x["features"])
        f.create_dataset("word_types", data=x["word_types"])
        for name, array in x["arrays"].items():
            f.create_dataset(name, data=array)
        for name, values in x["strings"].items():
            f.create_dataset(name, data=values, dtype=STR)
        for name, value in x["attrs"].items():
            f.attrs[name] = encode_attr(value)
    return path


def _content(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with h5py.File(path, "r") as f:
        data = {name: (f[name].dtype.str, f[name].shape, f[name][()].tobytes()
                       if f[name].dtype != STR else [v.decode() for v in f[name][()]])
                for name in f}  # fmt: skip
        attrs = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in f.attrs.items()}
    return data, attrs


def _direct_available(tmp_path: Path) -> bool:
    probe_file = tmp_path / "direct-probe"
    probe_file.write_bytes(b"")
    fd = streamed.open_direct(probe_file)
    if fd is not None:
        os.close(fd)
    return fd is not None


SHAPES = [  # (layers, rows, hidden, dtype, blocks): layer runs aligned or not, tiny and big
    (3, 9, 4, "float16", [2, 3, 4]),
    (13, 700, 768, "float16", [1, 255, 256, 188]),
    (5, 1031, 64, "float32", [1024, 7]),
    (2, 4096, 1, "float16", [4096]),
    (4, 0, 8, "float16", []),
]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}-{s[3]}")
def test_streamed_shard_equals_the_plain_h5py_shard(
    tmp_path: Path, shape: tuple[Any, ...], direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_layers, n_rows, hidden, dtype, blocks = shape
    if direct and not _direct_available(tmp_path):
        pytest.skip("this filesystem has no O_DIRECT")
    opened: list[int | None] = []
    real_open = writer_module.open_direct

    def counted(path: Path) -> int | None:
        opened.append(real_open(path))
        return opened[-1]

    monkeypatch.setattr(writer_module, "open_direct", counted)
    x = _inputs(n_layers, n_rows, hidden, dtype, seed=n_rows)
    fast = _fast(tmp_path / "fast.h5", x, blocks, direct=direct, write_threads=3)
    assert (len(opened) == 1 and opened[0] is not None) if direct else opened == []
    plain = _plain(tmp_path / "plain.h5", x)
    (fast_data, fast_attrs), (plain_data, plain_attrs) = _content(fast), _content(plain)
    assert fast_data.keys() == plain_data.keys()
    for name in plain_data:
        assert fast_data[name] == plain_data[name], name  # dtype, shape and every byte
    added = {"checksum", "checksums", "complete", "created", "empty_words"}
    assert set(fast_attrs) - set(plain_attrs) == added
    assert {k: fast_attrs[k] for k in plain_attrs} == plain_attrs
    stored = json.loads(fast_attrs["checksums"])
    assert fast_attrs["checksum"] == CHECKSUM and bool(fast_attrs["complete"])
    assert stored["features"] == [xxhash.xxh3_64_intdigest(x["features"][i].tobytes())
                                  for i in range(n_layers)]  # fmt: skip
    with open_shard(fast, verify=True) as shard:  # the reader's checks, every checksum
        for layer in range(n_layers):
            np.testing.assert_array_equal(shard.layer(layer), x["features"][layer])
        assert shard.word_types.tolist() == x["word_types"].tolist()
    with h5py.File(fast) as f:  # still the layout the reader's fast layer reads rely on
        assert f["features"].id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
    assert sorted(p.name for p in tmp_path.iterdir() if "direct-probe" not in p.name) == [
        "fast.h5", "plain.h5"]  # fmt: skip


def test_direct_writes_cover_only_whole_aligned_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every direct write is whole `ALIGN` blocks inside the run; the rest (head, tail) is
    written by `finish`, through the page cache, and the file holds exactly the bytes given."""
    if not _direct_available(tmp_path):
        pytest.skip("this filesystem has no O_DIRECT")
    path = tmp_path / "run.bin"
    path.write_bytes(b"\xee" * 50_000)
    fd = os.open(path, os.O_RDWR)
    direct_fd = streamed.open_direct(path)
    assert direct_fd is not None
    writes: list[tuple[int, int, int]] = []
    real = os.pwrite

    def spy(handle: int, data: Any, at: int) -> int:
        writes.append((handle, at, memoryview(data).nbytes))
        return real(handle, data, at)

    monkeypatch.setattr(os, "pwrite", spy)
    start, end = 1234, 1234 + 40_003
    payload = np.random.default_rng(5).integers(0, 255, end - start, dtype=np.uint8)
    run = StreamedRun(start, end, fd, direct_fd)
    cuts = [0, 1, 2861, 2862, 9000, 13_000, 13_001, 40_003]
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        run.append(payload[lo:hi].data)
    assert all(h == direct_fd for h, _, _ in writes)  # nothing buffered before finish
    assert all(at % ALIGN == 0 and n % ALIGN == 0 and start <= at and at + n <= end
               for _, at, n in writes)  # fmt: skip
    assert sum(n for _, _, n in writes) == (end // ALIGN - -(-start // ALIGN)) * ALIGN
    run.finish()
    os.close(direct_fd)
    os.close(fd)
    raw = path.read_bytes()
    assert raw[start:end] == payload.tobytes()
    assert raw[:start] == b"\xee" * start and raw[end:] == b"\xee" * (50_000 - end)


def test_a_run_refuses_more_or_fewer_bytes_than_it_spans(tmp_path: Path) -> None:
    path = tmp_path / "run.bin"
    path.write_bytes(bytes(100))
    fd = os.open(path, os.O_RDWR)
    try:
        run = StreamedRun(10, 20, fd, None)
        run.append(memoryview(b"12345"))
        with pytest.raises(ValueError, match="only 15 bytes were given"):
            run.finish()
        with pytest.raises(ValueError, match="run past the end"):
            run.append(memoryview(b"123456"))
    finally:
        os.close(fd)

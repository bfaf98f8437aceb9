"""File identities: the source digest keeps its byte format, and the memo never serves the
digest of bytes that changed, even when size and mtime were kept."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from probe.runtime import fileid


@pytest.fixture(autouse=True)
def fresh_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A memo file of this test's own, and an empty in-process view of it."""
    memo = tmp_path / "memo.json"
    monkeypatch.setenv("PROBE_HASH_MEMO", str(memo))
    monkeypatch.setattr(fileid, "_KNOWN", {})
    return memo


def test_files_sha256_is_each_file_followed_by_nul(tmp_path: Path) -> None:
    """The shard `source_hash` format: existing caches are found by it, so it never changes."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"ab")
    b.write_bytes(b"c")
    expected = hashlib.sha256(b"ab\0c\0").hexdigest()
    assert fileid.files_sha256([a, b]) == expected
    assert expected == "629c2f14f654f026086f2aefe1855533d0897f49df86a19073be17b237361b09"
    assert fileid.files_sha256([b, a]) != expected  # order is part of the identity


def test_streaming_equals_hashing_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fileid, "CHUNK_BYTES", 7)  # many chunks, one short at the end
    data = bytes(range(256)) * 3
    path = tmp_path / "f"
    path.write_bytes(data)
    assert fileid.file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert fileid.files_sha256([path]) == hashlib.sha256(data + b"\0").hexdigest()


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = fileid.file_sha256

    def counted(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(fileid, "file_sha256", counted)
    return calls


def test_memo_hashes_once_and_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_memo: Path
) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"w" * 1000)
    calls = _count_hashes(monkeypatch)
    assert fileid.cached_sha256([path]) == [hashlib.sha256(b"w" * 1000).hexdigest()]
    assert fileid.cached_sha256([path, path]) == fileid.cached_sha256([path]) * 2
    assert len(calls) == 1
    assert fresh_memo.is_file()
    monkeypatch.setattr(fileid, "_KNOWN", {})  # a new process: the memo file answers
    fileid.cached_sha256([path])
    assert len(calls) == 1


def test_memo_misses_a_file_rewritten_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    """`cp -p`, `rsync -t` and `touch -r` keep size and mtime; ctime and the inode move."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    before = path.stat()
    first = fileid.cached_sha256([path])[0]
    time.sleep(0.05)  # past the filesystem's coarse timestamp tick, as any real edit is
    with path.open("r+b") as f:  # in place: same inode
        f.write(b"b")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = fileid.cached_sha256([path])[0]
    assert second != first and second == fileid.file_sha256(path)

    time.sleep(0.05)
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"c" * 100)
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, path)  # replaced by a rename: a new inode
    assert fileid.cached_sha256([path])[0] == hashlib.sha256(b"c" * 100).hexdigest()


def test_memo_that_cannot_be_written_only_costs_rehashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PROBE_HASH_MEMO", str(blocker / "memo.json"))  # parent is a file
    path = tmp_path / "x"
    path.write_bytes(b"x")
    assert fileid.cached_sha256([path]) == [hashlib.sha256(b"x").hexdigest()]

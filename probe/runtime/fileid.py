"""File content identity: one streaming sha256, the multi-file source digest, one memo.

Identities decide whether something on disk may be reused (a cache key's model identity, a
shard's source hash, the directory name of a converted model), so they are computed from
bytes, never from names or timestamps; the memo only saves re-reading bytes it has seen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 22  # 4 MiB: large enough to stream a checkpoint at disk speed

# This process's view of each memo file: memo key -> hex digest. Filled from the file on the
# first miss and by every hash computed here, so a warm lookup costs one stat.
_KNOWN: dict[Path, dict[str, str]] = {}


def _chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes in CHUNK_BYTES pieces: the one streaming reader every digest uses."""
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK_BYTES), b"")


def file_sha256(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    digest = hashlib.sha256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def files_sha256(paths: Sequence[Path]) -> str:
    """One hex sha256 over several files in order, each file's bytes followed by b"\\0".

    This is a shard's `source_hash`: a changed source file must never be served from the
    old cache. The byte format is part of every existing cache; changing it would rebuild
    every shard.
    """
    digest = hashlib.sha256()
    for path in paths:
        for chunk in _chunks(path):
            digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def memo_path() -> Path:
    """Where file digests persist between runs: PROBE_HASH_MEMO, else ~/.cache/probe-hashes.json."""
    return Path(os.environ.get("PROBE_HASH_MEMO", Path.home() / ".cache" / "probe-hashes.json"))


def memo_key(path: Path) -> str:
    """(real path, size, mtime, inode, ctime): what must all match for a memoised digest.

    ctime is there because tools that rewrite a file in place can keep its size and restore
    its mtime (`cp -p`, `rsync -t`, `touch -r`); no tool can set ctime back. The inode
    catches a file replaced by a rename.
    """
    real = path.resolve()
    stat = real.stat()
    return f"{real}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}"


def cached_sha256(paths: Sequence[Path]) -> list[str]:
    """Hex sha256 of each file, memoised, so a 700 MB checkpoint is hashed once, not per run.

    A warm lookup costs a stat; the memo file is read on a miss and written once per call
    that hashed something new. A memo that cannot be written (read-only home) only costs
    re-hashing next time.
    """
    keys = [memo_key(path) for path in paths]
    store = memo_path()
    known = _KNOWN.setdefault(store, {})
    if all(key in known for key in keys):
        return [known[key] for key in keys]
    try:
        saved: dict[str, str] = json.loads(store.read_text())
    except (OSError, ValueError):
        saved = {}
    known.update(saved)
    new: dict[str, str] = {}
    for key, path in zip(keys, paths, strict=True):
        if key not in known and key not in new:
            new[key] = file_sha256(path.resolve())
    if new:
        known.update(new)
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({**saved, **new}))
            tmp.replace(store)
        except OSError as err:
            log.debug("could not write hash memo %s: %s", store, err)
    return [known[key] for key in keys]

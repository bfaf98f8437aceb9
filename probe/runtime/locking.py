"""One advisory file lock shared by everything that builds something on disk once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive POSIX flock on `lock_path` (created if missing) while inside.

    Two processes building the same shard or converted model serialise here; the second
    then finds the first one's complete result. Without fcntl (Windows) the atomic rename
    of every writer is the only guard.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

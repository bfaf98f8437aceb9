"""The two JSON files beside a key's shards: what the key was built from, and what it holds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from probe.cache.key import CacheSpec
from probe.cache.schema import FORMAT_VERSION
from probe.cache.writer import write_error
from probe.errors import CacheError
from probe.runtime.locking import exclusive_lock


def write_spec(root: Path, spec: CacheSpec, extra: Mapping[str, Any]) -> Path:
    """Record what a key was built from, beside its shards (readable by `probe cache ls`)."""
    directory = root / spec.key()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.json"
    if not path.exists():
        tmp = path.with_name(f"spec.json.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps({**asdict(spec), **extra}, indent=2, sort_keys=True))
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise write_error(path, err) from err
    return path


def update_manifest(root: Path, key: str, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge shard entries (relative path -> rows, source hash, ...) into `manifest.json`.

    Written last, once every shard of a run is complete (by rank 0 of a distributed run), so
    every shard it names was complete when it was written; entries of other runs are kept
    while their file exists. Locked and renamed into place like the shards.
    """
    directory = root / key
    path = directory / "manifest.json"
    with exclusive_lock(directory / "manifest.json.lock"):
        old: dict[str, Any] = {}
        if path.exists():
            with contextlib.suppress(ValueError):
                old = json.loads(path.read_text()).get("shards", {})
        shards = {rel: entry for rel, entry in old.items() if (directory / rel).exists()}
        shards.update({rel: dict(entry) for rel, entry in entries.items()})
        payload = {"format_version": FORMAT_VERSION, "cache_key": key, "shards": shards}
        if path.exists() and old == shards:
            return path
        tmp = path.with_name(f"manifest.json.tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        tmp.replace(path)
    return path


def read_manifest(root: Path, key: str) -> dict[str, dict[str, Any]]:
    """The shards a key's manifest lists ({} when it has none yet)."""
    path = root / key / "manifest.json"
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text())["shards"])
    except (ValueError, KeyError) as err:
        raise CacheError(f"{path}: unreadable manifest ({err}); delete it and rerun") from err

"""What is in the cache: listing, describing and verifying shards (for `probe cache ...`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import CacheError
from probe.store import open_shard


@dataclass(frozen=True)
class ShardRow:
    path: Path
    key: str
    task: str
    lang: str
    split: str
    rows: int
    layers: int
    size_mb: float
    state: str


def _shard_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*/*.h5") if p.parent.parent.parent.name != "models")


def list_shards(root: Path) -> list[ShardRow]:
    """One row per shard file; incomplete or unreadable ones are listed with their state."""
    rows = []
    for path in _shard_files(root):
        key, task, lang = path.parts[-4], path.parts[-3], path.parts[-2]
        split = path.stem
        size = path.stat().st_size / 1e6
        try:
            with open_shard(path) as shard:
                rows.append(ShardRow(path, key, task, lang, split, shard.n_rows, shard.n_layers,
                                     size, "complete"))  # fmt: skip
        except CacheError as err:
            text = str(err)
            state = next((s for s in ("incomplete", "corrupt") if s in text), "unreadable")
            rows.append(ShardRow(path, key, task, lang, split, 0, 0, size, state))
    return rows


def shard_info(path: Path) -> list[str]:
    """Human-readable lines: attrs, datasets with shapes and dtypes, bytes per row."""
    lines = [f"shard: {path}", f"size on disk: {path.stat().st_size:,} bytes"]
    with open_shard(path) as shard:
        for name, value in sorted(shard.attrs.items()):
            if name == "checksums":
                continue
            text = str(value)
            lines.append(f"  {name}: {text if len(text) < 120 else text[:117] + '...'}")
        lines.append("datasets:")
        for name in sorted(shard._file.keys()):
            ds = shard.dataset(name)
            lines.append(f"  {name}: shape {ds.shape}, dtype {ds.dtype}")
        rows = shard.n_rows
        raw = shard.n_layers * shard.hidden * shard.dataset(shard.feature_names[0]).dtype.itemsize
        raw *= len(shard.feature_names)
        lines.append(
            f"bytes per row: {path.stat().st_size / max(rows, 1):,.1f} "
            f"(raw features {raw:,} = layers x hidden x itemsize)"
        )
    return lines


def verify_shards(paths: list[Path] | None, root: Path, echo: Callable[[str], None] = print) -> int:
    """Check every layer's CRC32; returns how many shards failed."""
    bad = 0
    for path in paths or _shard_files(root):
        try:
            with open_shard(path, verify=True):
                echo(f"ok       {path}")
        except CacheError as err:
            bad += 1
            echo(f"CORRUPT  {err}")
    return bad

"""What is in the cache: listing, describing and verifying shards (for `probe cache ...`)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from probe.cache.reader import open_shard
from probe.errors import CacheError


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
    """Check every layer's checksum; returns how many shards failed."""
    bad = 0
    for path in paths or _shard_files(root):
        try:
            with open_shard(path, verify=True):
                echo(f"ok       {path}")
        except CacheError as err:
            bad += 1
            echo(f"CORRUPT  {err}")
    return bad


# What a model-key folder may hold besides its task folders (probe/cache/manifest.py writes these).
_KEY_FILES = re.compile(r"^(spec\.json|manifest\.json)(\.lock|\.tmp-.+)?$")
# What a language folder may hold: shards, their writers' temporary files and their locks.
_SHARD_FILES = re.compile(r"^[A-Za-z0-9_.+-]+?(-\d{5})?\.h5(\.lock|\.tmp-.+)?$")
_KEY_NAME = re.compile(r"^.+-[0-9a-f]{16}$")


@dataclass(frozen=True)
class Removal:
    """One path `probe cache rm` may delete, and the files under it."""

    path: Path
    kind: str  # shard | language folder | task folder | model key
    files: tuple[Path, ...]


def plan_removal(path: Path) -> Removal:
    """Prove that `path` is cache before anything is deleted; otherwise a one-line CacheError.

    A typo in a path must never destroy a user's work, so the rule is positive: a path is
    removable only when it sits in the cache layout (`<key>/<task>/<lang>/<shard>`) under a
    model-key folder that identifies itself (its `spec.json` or `manifest.json` names the
    key), and a folder only when every file beneath it is one the cache writes. Symbolic
    links are refused (the link or its target may be anything); `..` is resolved first.
    """
    if path.is_symlink():
        raise CacheError(f"{path}: is a symbolic link; pass the cache path itself")
    if not path.exists():
        raise CacheError(f"{path}: no such file or folder")
    real = path.resolve()
    for depth, kind in ((0, "model key"), (1, "task folder"), (2, "language folder")):
        if real.is_dir() and _is_model_key(_parent(real, depth)):
            return Removal(path, kind, _cache_files(real, depth, path))
    if real.is_file() and _SHARD_FILES.match(real.name) and _is_model_key(_parent(real, 3)):
        return Removal(path, "shard", (real,))
    if real.is_dir() and any(_is_model_key(child) for child in real.iterdir()):
        raise CacheError(f"{path}: is a cache root; remove its model keys one by one "
                         "(`probe cache ls` lists them)")  # fmt: skip
    raise CacheError(
        f"{path}: not cache (expected a shard or a task, language or model-key folder inside "
        "a cache root, see `probe cache ls`); nothing was removed"
    )


def _parent(path: Path, depth: int) -> Path:
    for _ in range(depth):
        path = path.parent
    return path


def _is_model_key(directory: Path) -> bool:
    """A model-key folder names itself in its spec.json or manifest.json (manifest.write_spec)."""
    if not (directory.is_dir() and _KEY_NAME.match(directory.name)):
        return False
    manifest = directory / "manifest.json"
    if manifest.is_file():
        try:
            return bool(json.loads(manifest.read_text()).get("cache_key") == directory.name)
        except (ValueError, OSError, AttributeError):
            return False
    spec = directory / "spec.json"
    try:
        return spec.is_file() and "model_identity" in json.loads(spec.read_text())
    except (ValueError, OSError, TypeError):
        return False


def _cache_files(directory: Path, depth: int, shown: Path) -> tuple[Path, ...]:
    """Every file under a key (depth 0), task (1) or language (2) folder, if all are cache."""
    files = []
    for item in sorted(directory.rglob("*")):
        level = depth + len(item.relative_to(directory).parts)  # 1 task, 2 lang, 3 file
        if item.is_symlink():
            foreign = True
        elif item.is_dir():
            foreign = level > 2
        else:
            pattern = _KEY_FILES if level == 1 else _SHARD_FILES if level == 3 else None
            foreign = pattern is None or not pattern.match(item.name)
            files.append(item)
        if foreign:
            raise CacheError(
                f"{shown}: holds {item}, which the cache does not write; nothing was removed "
                "(move it out, or remove single shards)"
            )
    return tuple(files)


def remove(removal: Removal) -> None:
    """Delete what `plan_removal` proved is cache."""
    if removal.kind == "shard":
        removal.path.unlink()
    else:
        shutil.rmtree(removal.path)

"""Reliability under faults (docs/what-happens-when.md): kill -9 at chosen and at random
points, flipped bytes and truncated shards, stale caches, concurrent writers and readers, a
full disk, bad input and determinism. Each test injects the fault and checks what must hold
afterwards; the ones that run extraction in child processes are marked slow.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from probe.cache import SplitReader, open_shard
from probe.cli import cli
from probe.errors import CacheError, ProbeError
from probe.extract.blocks import block_ranges
from probe.extract.plan import shard_ranges
from tests import fault_workers
from tests.fault_workers import corpus
from tests.helpers import SENTENCES, config, conllu_text, extract, make_ud

CHILD_TIMEOUT = 180


# --- child processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mp() -> multiprocessing.context.BaseContext:
    """Children forked from a server that imported torch, transformers and probe once."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the forkserver start method (POSIX)")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.fault_workers"])
    return ctx


class Child:
    """One extraction (or CLI) run in a forked child, with its result file."""

    counter = 0

    def __init__(self, mp: Any, workdir: Path, target: Any = None, **kwargs: Any) -> None:
        Child.counter += 1
        self.result_file = workdir / f"child-{Child.counter}.json"
        target = target or fault_workers.run_extract
        self.process = mp.Process(target=target, kwargs={**kwargs, "result_file":
                                                          str(self.result_file)})  # fmt: skip
        self.process.start()

    def wait(self) -> tuple[int, dict[str, Any] | None]:
        self.process.join(CHILD_TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            pytest.fail(f"child did not finish within {CHILD_TIMEOUT} s")
        out = json.loads(self.result_file.read_text()) if self.result_file.exists() else None
        return int(self.process.exitcode or 0), out


def run_child(mp: Any, workdir: Path, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
    return Child(mp, workdir, **kwargs).wait()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def corpus_dir(workdir: Path) -> Path:
    """Two English splits of 300 synthetic sentences each: 3 shards of <= 1100 words each."""
    return make_ud(workdir / "data", corpus(300, seed=1))


@pytest.fixture(scope="module")
def clean(mp: Any, workdir: Path, corpus_dir: Path, tiny_bert: Path) -> dict[str, Any]:
    """An uninterrupted run: the reference every faulted run must equal bit for bit."""
    root = workdir / "clean"
    code, out = run_child(mp, workdir, **child_args(root, corpus_dir, tiny_bert))
    assert code == 0 and out and out["ok"], out
    assert len(out["extracted"]) == 6 and not out["skipped"]
    # A second uninterrupted run (the forkserver now warm, so this times a run) is identical:
    # extraction itself is deterministic, so any difference later is the fault's doing.
    start = time.perf_counter()
    code, again = run_child(mp, workdir, **child_args(workdir / "clean-2", corpus_dir, tiny_bert))
    seconds = time.perf_counter() - start
    assert code == 0 and again and again["ok"], again
    assert_same_shards(root, workdir / "clean-2")
    return {"root": root, "key": out["key"], "seconds": seconds}


def child_args(root: Path, corpus_dir: Path, tiny_bert: Path, **kw: Any) -> dict[str, Any]:
    return dict(cache_root=str(root), data_dir=str(corpus_dir), model=str(tiny_bert), **kw)


def shard_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.h5") if p.parent.parent.parent.name != "models")


def complete_shards(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file under a shard's final name opens and verifies; their (inode, mtime)."""
    out = {}
    for path in shard_files(root):
        with open_shard(path, verify=True):
            stat = path.stat()
            out[path] = (stat.st_ino, stat.st_mtime_ns)
    return out


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.h5.tmp-*"))


def snapshot(path: Path) -> dict[str, Any]:
    """Every dataset and every attribute but the creation time (and the attrs' CRC over it)."""
    with h5py.File(path, "r") as f:
        data = {name: f[name][()] for name in f}
        attrs = {k: v for k, v in f.attrs.items() if k != "created"}
    checksums = json.loads(attrs["checksums"])
    del checksums["attrs"]
    attrs["checksums"] = checksums
    return {"data": data, "attrs": attrs}


def assert_same_shards(reference_root: Path, root: Path) -> None:
    ref = {p.relative_to(reference_root): p for p in shard_files(reference_root)}
    got = {p.relative_to(root): p for p in shard_files(root)}
    assert sorted(got) == sorted(ref)
    for rel, path in ref.items():
        a, b = snapshot(path), snapshot(got[rel])
        assert a["data"].keys() == b["data"].keys(), rel
        for name in a["data"]:
            x, y = a["data"][name], b["data"][name]
            assert x.dtype == y.dtype and x.shape == y.shape, (rel, name)
            same = x.tolist() == y.tolist() if x.dtype == object else x.tobytes() == y.tobytes()
            assert same, f"{rel}: dataset {name} differs"
        assert json.dumps(a["attrs"], default=str) == json.dumps(b["attrs"], default=str), rel


# --- kill -9 ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    ["forward:1", "forward:40", "write:1", "write:4", "commit:2", "rename:3", "renamed:5"],
)
def test_kill_9_then_rerun_equals_uninterrupted_run(
    fault: str, mp: Any, workdir: Path, corpus_dir: Path, tiny_bert: Path, clean: dict[str, Any]
) -> None:
    root = workdir / f"kill-{fault.replace(':', '-')}"
    args = child_args(root, corpus_dir, tiny_bert)
    code, out = run_child(mp, workdir, fault=fault, **args)
    assert code == -signal.SIGKILL and out is None, (code, out)

    before = complete_shards(root)  # nothing under a final name is half written
    left = temporaries(root)
    print(f"kill at {fault}: {len(before)} complete shard(s), {len(left)} temporary file(s) left")
    point, n = fault.split(":")
    if point in ("write", "commit"):
        assert temporaries(root), "the killed writer's temporary file should be there"
    if point == "renamed":
        assert len(before) == int(n)  # the shard renamed just before the kill counts
    if point == "rename":
        assert len(before) == int(n) - 1

    code, out = run_child(mp, workdir, **args)
    assert code == 0 and out and out["ok"], out
    assert sorted(out["skipped"]) == sorted(str(p) for p in before)  # every complete one reused
    assert len(out["extracted"]) == 6 - len(before)
    for path, stamp in before.items():
        stat = path.stat()
        assert (stat.st_ino, stat.st_mtime_ns) == stamp, f"{path} was rewritten"
    assert temporaries(root) == []  # the dead writer's temporary file was removed
    assert_same_shards(clean["root"], root)


@pytest.mark.slow
def test_kill_9_at_random_times(
    mp: Any, workdir: Path, corpus_dir: Path, tiny_bert: Path, clean: dict[str, Any]
) -> None:
    """Three kills at seeded random times into the same cache, each resumed by the next run."""
    root = workdir / "kill-random"
    args = child_args(root, corpus_dir, tiny_bert)
    rng = random.Random(8)
    killed = 0
    for _ in range(3):
        child = Child(mp, workdir, **args)
        time.sleep(rng.uniform(0.1, 0.9) * clean["seconds"])
        child.process.kill()
        code, _ = child.wait()
        killed += code == -signal.SIGKILL
        print(f"random kill: exit {code}, {len(complete_shards(root))} complete shard(s)")
    assert killed >= 1
    before = complete_shards(root)
    code, out = run_child(mp, workdir, **args)
    assert code == 0 and out and out["ok"], out
    assert sorted(out["skipped"]) == sorted(str(p) for p in before)
    assert temporaries(root) == []
    assert_same_shards(clean["root"], root)


# --- concurrent writers and readers -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("unlocked", [False, True], ids=["locked", "no-flock"])
def test_two_processes_extracting_the_same_shards(
    unlocked: bool,
    mp: Any,
    workdir: Path,
    corpus_dir: Path,
    tiny_bert: Path,
    clean: dict[str, Any],
) -> None:
    """With the lock, each shard is built once; without it (no flock), both build every
    shard and the atomic rename keeps each whole: the last one wins, both are equal."""
    root = workdir / f"concurrent-{unlocked}"
    args = child_args(root, corpus_dir, tiny_bert, unlocked=unlocked)
    a, b = Child(mp, workdir, **args), Child(mp, workdir, **args)
    (code_a, out_a), (code_b, out_b) = a.wait(), b.wait()
    assert code_a == 0 and code_b == 0 and out_a and out_b and out_a["ok"] and out_b["ok"]
    built_a, built_b = set(out_a["extracted"]), set(out_b["extracted"])
    if not unlocked:
        assert not built_a & built_b, "a shard was built twice despite the lock"
        assert len(built_a | built_b) == 6
    assert temporaries(root) == []
    complete_shards(root)
    assert_same_shards(clean["root"], root)


def _process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.slow
def test_reader_opens_complete_split_while_another_is_written(
    mp: Any, workdir: Path, corpus_dir: Path, tiny_bert: Path, clean: dict[str, Any]
) -> None:
    """The writer is frozen (SIGSTOP) half-way through the first shard of `test`."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to see that the writer stopped")
    sentences = corpus(300, seed=1)
    shards = shard_ranges([len(s) for s in sentences], fault_workers.SHARD_ROWS)
    dev_writes = sum(  # dev's shards come first
        len(block_ranges([len(s) for s in sentences[lo:hi]], 1024)) for lo, hi in shards
    )
    root = workdir / "reader"
    child = Child(mp, workdir, fault=f"write:{dev_writes + 1}:stop",
                  **child_args(root, corpus_dir, tiny_bert))  # fmt: skip
    deadline = time.monotonic() + CHILD_TIMEOUT
    while _process_state(child.process.pid) != "T":
        assert child.process.is_alive() and time.monotonic() < deadline, "writer never stopped"
        time.sleep(0.05)
    try:
        assert temporaries(root), "the test split's first shard should be mid-write"
        key = clean["key"]
        with (
            SplitReader.open(root, key, "pos", "en", "dev") as split,
            SplitReader.open(clean["root"], key, "pos", "en", "dev") as ref,
        ):
            assert len(split.shards) == 3
            for layer in range(split.n_layers):
                assert split.layer(layer).tobytes() == ref.layer(layer).tobytes()
            assert split.strings("words") == ref.strings("words")
        with pytest.raises(CacheError, match="nothing cached for pos/en/test"):
            SplitReader.open(root, key, "pos", "en", "test")
        listed = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(root)])
        assert listed.exit_code == 0 and "test" not in listed.output.split("shard(s)")[0]
        assert listed.output.count("complete") == 3
    finally:
        os.kill(child.process.pid, signal.SIGCONT)
    code, out = child.wait()
    assert code == 0 and out and out["ok"], out
    assert_same_shards(clean["root"], root)


# --- a full disk ------------------------------------------------------------------------------


def _assert_clean_failure(out: dict[str, Any] | None, root: Path, reason: str) -> None:
    assert out is not None and not out["ok"] and out["type"] == "CacheError", out
    message = out["message"]
    assert "\n" not in message and reason in message and str(root) in message, message
    assert "rerun" in message
    complete_shards(root)  # whatever exists under a final name is whole
    assert temporaries(root) == []


@pytest.mark.slow
@pytest.mark.parametrize("reserve", [True, False], ids=["reserved", "unreserved"])
def test_file_size_limit_gives_one_clear_error_and_no_false_shard(
    reserve: bool,
    mp: Any,
    workdir: Path,
    corpus_dir: Path,
    tiny_bert: Path,
    clean: dict[str, Any],
) -> None:
    """RLIMIT_FSIZE makes writes past the limit fail with EFBIG, like a full disk; limits from
    0 bytes to one byte short of the largest shard. With the disk reserved before each shard
    (posix_fallocate), every limit ends in one CacheError line before the encoder runs.
    Without (platforms lacking posix_fallocate) writes fail inside HDF5, whose error path can
    crash the process: then the error is not clear, but no file under a shard's name is
    incomplete, and a rerun still finishes."""
    sizes = sorted(p.stat().st_size for p in shard_files(clean["root"]))
    limits = [0, 2048, 20_000, sizes[-1] // 3, sizes[0] - 1, sizes[-1] - 1]
    for limit in limits:
        root = workdir / f"fsize-{reserve}-{limit}"
        code, out = run_child(mp, workdir, file_size_limit=limit, reserve=reserve,
                              **child_args(root, corpus_dir, tiny_bert))  # fmt: skip
        print(f"file size limit {limit} B (reserve={reserve}): exit {code}, {out}")
        if reserve or code == 0:
            assert code == 0, code
            _assert_clean_failure(out, root, "File too large")
        else:
            assert code < 0 and out is None, (code, out)  # killed by a signal inside HDF5
            complete_shards(root)
    # After the limit is lifted, a rerun finishes and equals the uninterrupted run.
    code, out = run_child(mp, workdir, **child_args(root, corpus_dir, tiny_bert))
    assert code == 0 and out and out["ok"], out
    assert temporaries(root) == []
    assert_same_shards(clean["root"], root)


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1200 KiB tmpfs (room for one shard, not two), where this process may mount one (root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers a full disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_tmpfs_gives_one_clear_error_and_no_false_shard(
    small_tmpfs: Path, mp: Any, workdir: Path, corpus_dir: Path, tiny_bert: Path
) -> None:
    root = small_tmpfs / "cache"
    code, out = run_child(mp, workdir, **child_args(root, corpus_dir, tiny_bert))
    assert code == 0
    _assert_clean_failure(out, root, "No space left on device")
    assert len(shard_files(root)) >= 1  # what fitted was kept, complete


# --- corrupt and truncated shards -------------------------------------------------------------


@pytest.fixture()
def one_shard(tmp_path: Path, tiny_bert: Path) -> tuple[Path, dict[str, Any]]:
    """A small word-level shard and everything a reader can get out of it."""
    make_ud(tmp_path / "data")
    report = extract(config(tmp_path, tiny_bert, langs=("en",), dtype="float16"), False)
    path = report.cache_dir / "pos/en/dev.h5"
    return path, _read_everything(path)


def _read_everything(path: Path) -> dict[str, Any]:
    with open_shard(path) as shard:
        return {
            "layers": [shard.layer(i).tobytes() for i in range(shard.n_layers)],
            "labels": shard.labels.tobytes(),
            "offsets": shard.offsets.tobytes(),
            "words": shard.strings("words"),
            "sentence_ids": shard.strings("sentence_ids"),
            "attrs": {k: json.dumps(v, default=str) for k, v in shard.attrs.items()},
        }


def test_flipped_byte_anywhere_is_never_read_as_data(
    one_shard: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Flip one byte at 300 seeded places across the file (features, labels, strings,
    headers, attrs): every read either raises CacheError naming the file or returns exactly
    the original data (a byte HDF5 never reads, such as free space)."""
    path, original = one_shard
    raw = path.read_bytes()
    victim = tmp_path / "victim.h5"
    rng = random.Random(3)
    outcomes = {"on open": 0, "on read": 0, "harmless": 0}
    for offset in sorted(rng.sample(range(len(raw)), 300)):
        damaged = bytearray(raw)
        damaged[offset] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(damaged))
        try:
            shard = open_shard(victim)
        except CacheError as err:
            assert str(victim) in str(err) and "probe cache rm" in str(err), err
            outcomes["on open"] += 1
            continue
        shard.close()
        try:
            got = _read_everything(victim)
        except CacheError as err:
            assert str(victim) in str(err) and "probe cache verify" in str(err), err
            outcomes["on read"] += 1
            continue
        changed = [k for k in original if got[k] != original[k]]
        assert not changed, f"flipping byte {offset} changed {changed} without an error"
        outcomes["harmless"] += 1
    print(f"300 flipped bytes: {outcomes}")
    assert outcomes["on open"] > 0 and outcomes["on read"] > 0, outcomes


def test_truncated_shard_is_detected_on_open(
    one_shard: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, _ = one_shard
    raw = path.read_bytes()
    for cut in (0, 100, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(CacheError) as err:
            open_shard(path)
        assert str(path) in str(err.value) and "probe cache rm" in str(err.value)
    path.write_bytes(raw)
    open_shard(path, verify=True).close()


def test_corrupt_layer_is_refused_by_every_reader_and_rebuilt_after_rm(
    one_shard: tuple[Path, dict[str, Any]], tmp_path: Path, tiny_bert: Path
) -> None:
    """A flipped feature byte: open works (the layer is checked when read), reading that
    layer fails with the rebuild hint, `probe cache verify` reports it, `probe cache rm`
    plus a rerun restores the original bytes."""
    path, original = one_shard
    with open_shard(path) as shard:
        ds = shard.dataset("features")
        offset = ds.id.get_offset() + ds.shape[1] * ds.shape[2] * ds.dtype.itemsize + 7  # layer 1
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))
    root = path.parents[3]
    key = path.parents[2].name
    with SplitReader.open(root, key, "pos", "en", "dev") as split:
        split.layer(0)  # undamaged layers still read
        with pytest.raises(CacheError, match=r"layer 1 of 'features' fails its checksum"):
            split.layer(1)
    runner = CliRunner()
    verified = runner.invoke(cli, ["cache", "verify", "--cache-dir", str(root)])
    assert verified.exit_code == 1 and f"CORRUPT  {path}" in verified.output
    removed = runner.invoke(cli, ["cache", "rm", str(path)])
    assert removed.exit_code == 0 and not path.exists()
    report = extract(config(tmp_path, tiny_bert, langs=("en",), dtype="float16"), False)
    assert [s.path for s in report.extracted] == [path]
    assert _read_everything(path)["layers"] == original["layers"]


def test_corrupt_small_dataset_is_rebuilt_by_the_next_extraction(
    one_shard: tuple[Path, dict[str, Any]], tmp_path: Path, tiny_bert: Path
) -> None:
    """Labels are checked on open, so extraction sees the damage and rebuilds the shard."""
    path, original = one_shard
    with open_shard(path) as shard:
        offset = shard.dataset("labels").id.get_offset()
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="'labels' fails its checksum"):
        open_shard(path)
    report = extract(config(tmp_path, tiny_bert, langs=("en",), dtype="float16"), False)
    assert [s.path for s in report.extracted] == [path]
    rebuilt = _read_everything(path)
    for record in (rebuilt, original):  # the creation time (and so the attrs' CRC) differs
        del record["attrs"]["created"], record["attrs"]["checksums"]
    assert rebuilt == original


# --- stale caches -----------------------------------------------------------------------------


def _edit_in_place(path: Path, edit: Any) -> None:
    """Rewrite a file in place with the same size and the old mtime (as `cp -p` would)."""
    stat = path.stat()
    data = edit(path.read_bytes())
    assert len(data) == stat.st_size
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _change_weights(model: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    name = next(n for n in weights if "word_embeddings" in n)
    weights[name] = weights[name] * 1.5
    tmp = model / "tmp.safetensors"
    save_file(weights, tmp, metadata={"format": "pt"})
    new = tmp.read_bytes()
    tmp.unlink()
    _edit_in_place(model / "model.safetensors", lambda _: new)


def _change_tokenizer(model: Path) -> None:
    """Swap the ids of 'dog' and 'cat' in tokenizer.json."""
    spec = json.loads((model / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["dog"], vocab["cat"] = vocab["cat"], vocab["dog"]
    (model / "tokenizer.json").write_text(json.dumps(spec))


def _change_source(data: Path) -> None:
    dev = data / "ud/UD_English-EWT/en_ewt-ud-dev.conllu"
    _edit_in_place(dev, lambda b: b.replace(b"\tdog\t", b"\tcat\t", 1))


@pytest.mark.parametrize(
    "change", ["weights", "tokenizer", "pooling", "max_length", "dtype", "source"]
)
def test_stale_cache_is_never_reused(
    change: str, tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change one input that changes the numbers: the next run uses a new key (model, tokenizer,
    pooling, max length, dtype) or rebuilds the shard (source data), and its features equal a
    fresh extraction with the change, not the old ones. Files are edited in place with their
    size and mtime kept, the hardest case for any (size, mtime) shortcut."""
    monkeypatch.setenv("PROBE_HASH_MEMO", str(tmp_path / "memo.json"))
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    data = make_ud(tmp_path / "data")
    first = extract(config(tmp_path, model, langs=("en",)), progress=False)
    spec_change: dict[str, object] = {
        "pooling": {"pooling": "mean"},
        "max_length": {"max_length": 10},
        "dtype": {"dtype": "float16"},
    }.get(change, {})
    changed = config(tmp_path, model, langs=("en",), **spec_change)
    {"weights": _change_weights, "tokenizer": _change_tokenizer}.get(change, lambda m: None)(model)
    if change == "source":
        _change_source(data)
    second = extract(changed, progress=False)
    fresh = extract(
        config(tmp_path, model, langs=("en",), cache_root=tmp_path / "fresh", **spec_change),
        progress=False,
    )
    assert second.key == fresh.key
    if change == "source":
        assert second.key == first.key
        assert [s.path.name for s in second.extracted] == ["dev.h5"]  # rebuilt, the rest kept
    else:
        assert second.key != first.key and len(second.extracted) == 3  # en train, dev, test
    with (
        SplitReader.open(tmp_path / "cache", first.key, "pos", "en", "dev") as old_split,
        SplitReader.open(tmp_path / "cache", second.key, "pos", "en", "dev") as new_split,
        SplitReader.open(tmp_path / "fresh", fresh.key, "pos", "en", "dev") as fresh_split,
    ):
        new, ref = new_split.layer(1), fresh_split.layer(1)
        assert new.tobytes() == ref.tobytes()
        if change != "source":
            assert new.shape != old_split.layer(1).shape or not np.array_equal(
                new.astype(np.float32), old_split.layer(1).astype(np.float32)
            )
    if change == "source":
        with open_shard(second.cache_dir / "pos/en/dev.h5") as shard:
            assert "cat" in shard.strings("words")[:2]


# --- bad input --------------------------------------------------------------------------------


def _dev_file(data: Path) -> Path:
    return data / "ud/UD_English-EWT/en_ewt-ud-dev.conllu"


def _set_dev(data: Path, content: bytes) -> Path:
    path = _dev_file(data)
    path.write_bytes(content)
    return path


def _valid(*sentences: list[str]) -> str:
    return conllu_text(list(sentences) or SENTENCES[:2])


BAD_INPUTS: dict[str, tuple[Any, str]] = {
    # case: (how to break the data dir or arguments, regex the one-line error must match)
    "empty file": (lambda d: _set_dev(d, b""), r"en_ewt-ud-dev\.conllu: no sentences found"),
    "sentence with zero words": (
        lambda d: _set_dev(d, (_valid() + "# sent_id = empty\n# text =\n\n").encode()),
        r"en_ewt-ud-dev\.conllu:20: expected word lines after the comments above",
    ),
    "tag not in the label set": (
        lambda d: _set_dev(d, _valid().replace("\tNOUN\t", "\tNOUNS\t", 1).encode()),
        r"en_ewt-ud-dev\.conllu:3: sentence 's0', word 'dog': tag 'NOUNS' is not in the pos label",
    ),
    "mixed encodings": (
        lambda d: _set_dev(
            d, _valid().encode() + "1\tcafé\tx\tNOUN\t_\t_\t0\troot\t_\t_\n".encode("latin-1")
        ),  # fmt: skip
        r"en_ewt-ud-dev\.conllu:18: byte 0xe9 at column 6 is not valid UTF-8",
    ),
    "CoNLL-U line with missing columns": (
        lambda d: _set_dev(
            d, _valid().replace("\tran\tVERB\t_\t_\t0\troot\t_\t_", "\tVERB").encode()
        ),  # fmt: skip
        r"en_ewt-ud-dev\.conllu:4: expected 10 TAB-separated columns .* found 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_data_gives_one_error_with_file_and_line(
    case: str, tmp_path: Path, tiny_bert: Path
) -> None:
    data = make_ud(tmp_path / "data")
    breaker, pattern = BAD_INPUTS[case]
    breaker(data)
    result = _probe_extract(tmp_path, tiny_bert, data)
    _assert_one_error_line(result, pattern)
    assert str(_dev_file(data)) in result.output


def _probe_extract(tmp_path: Path, model: Path | str, data: Path, *extra: str) -> Any:
    args = ["extract", "--model", str(model), "--task", "pos", "--langs", "en",
            "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), *extra]  # fmt: skip
    return CliRunner().invoke(cli, args, env={"HF_HUB_OFFLINE": "1"})


def _assert_one_error_line(result: Any, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert re.search(pattern, lines[0]), lines[0]


def test_language_the_task_or_the_data_lacks(tmp_path: Path, tiny_bert: Path) -> None:
    data = make_ud(tmp_path / "data")
    result = _probe_extract(tmp_path, tiny_bert, data, "--langs", "xx")
    _assert_one_error_line(result, r"task 'pos' has no files for language 'xx'.*found: de, en")
    # Catalogued but absent here: the files decide, not the catalogue.
    result = _probe_extract(tmp_path, tiny_bert, data, "--langs", "fr")
    _assert_one_error_line(result, r"task 'pos' has no files for language 'fr'.*found: de, en")
    result = _probe_extract(tmp_path, tiny_bert, data, "--langs", "de", "--splits", "train")
    _assert_one_error_line(result, r"de_gsd-ud-train\.conllu: missing split 'train'.*'de'")


def test_unknown_model_name(tmp_path: Path) -> None:
    data = make_ud(tmp_path / "data")
    result = _probe_extract(tmp_path, "mbrt", data)
    _assert_one_error_line(result, r"model 'mbrt' is not cached .*Did you mean 'mbert'\?")
    result = _probe_extract(tmp_path, str(tmp_path / "no-such-dir"), data)
    _assert_one_error_line(result, r"no-such-dir' does not exist or is not a directory")


def test_model_without_fast_tokenizer(tmp_path: Path, tiny_bert: Path) -> None:
    from transformers import BertTokenizerLegacy

    model = tmp_path / "slow-model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, model)
    vocab = json.loads((tiny_bert / "tokenizer.json").read_text())["model"]["vocab"]
    (model / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.__getitem__)) + "\n")
    BertTokenizerLegacy(str(model / "vocab.txt")).save_pretrained(model)
    data = make_ud(tmp_path / "data")
    result = _probe_extract(tmp_path, model, data)
    _assert_one_error_line(result, r"has no fast tokenizer .*alignment needs one")


def test_fault_hook_rejects_a_malformed_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.runtime import faults

    monkeypatch.setattr(faults, "_plan", False)
    monkeypatch.setenv("PROBE_FAULT", "forwrd:1")
    with pytest.raises(ProbeError, match="PROBE_FAULT='forwrd:1': expected <point>:<n>"):
        faults.fault_point("forward")


# --- determinism ------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_command_twice_gives_the_same_scores(
    mp: Any, workdir: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """`probe layers` twice with the same seed: once here, once in another interpreter (its
    own hash seed, fresh RNGs) on the same cache; every score equal to the last bit."""
    data = make_ud(tmp_path / "data", SENTENCES * 4)
    common = ["layers", "--model", str(tiny_bert), "--task", "pos", "--langs", "en,de",
              "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
              "--compute", "float32", "--seeds", "3"]  # fmt: skip
    first = CliRunner().invoke(cli, [*common, "--results-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    code, out = Child(mp, workdir, target=fault_workers.run_cli,
                      args=[*common, "--results-dir", str(tmp_path / "b")]).wait()  # fmt: skip
    assert code == 0 and out and out["exit_code"] == 0, out
    (a,) = (tmp_path / "a").rglob("results.json")
    (b,) = (tmp_path / "b").rglob("results.json")
    rows_a, rows_b = json.loads(a.read_text())["rows"], json.loads(b.read_text())["rows"]
    assert len(rows_a) > 10 and rows_a == rows_b

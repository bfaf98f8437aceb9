"""Distributed extraction: ranks from the environment, the shard plan, and a real 2-process
`torchrun` (gloo, CPU) whose shards equal a single-process run's, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.runtime.device import resolve_device
from probe.runtime.ranks import Rank, assign, current_rank, from_main, gather_all
from tests.conftest import REPO
from tests.helpers import SENTENCES, Setup, config, extract, make_ud


def test_rank_from_environment() -> None:
    assert current_rank({}) == Rank(0, 1, 0)
    assert current_rank({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Rank(3, 8, 1)
    assert current_rank({"RANK": "2", "WORLD_SIZE": "4"}).local_rank == 2
    with pytest.raises(ProbeError, match="not an integer"):
        current_rank({"RANK": "zero", "WORLD_SIZE": "2"})
    with pytest.raises(ProbeError, match="0 <= RANK < WORLD_SIZE"):
        current_rank({"RANK": "2", "WORLD_SIZE": "2"})


def test_assign_is_balanced_deterministic_and_complete() -> None:
    weights = [50, 10, 10, 30, 20, 20, 5]
    owners = assign(weights, 3)
    assert owners == assign(weights, 3)
    loads = [sum(w for w, o in zip(weights, owners, strict=True) if o == r) for r in range(3)]
    assert sorted(loads) == [45, 50, 50] and owners[0] == 0  # heaviest item to rank 0
    assert assign(weights, 1) == [0] * len(weights)
    assert sorted(set(assign([1, 1], 4))) == [0, 1]  # more ranks than shards: some idle


def test_single_process_needs_no_group_and_bad_launch_fails_clearly(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = Rank()
    assert from_main(alone, lambda: 42) == 42 and gather_all(alone, "x") == ["x"]
    assert str(resolve_device("cpu", Rank(1, 2, 1))) == "cpu"
    with pytest.raises(ProbeError, match="every rank picks its own"):
        resolve_device("cuda:1", Rank(1, 2, 1))
    make_ud(tmp_path / "data")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    setup = config(tmp_path, tiny_bert, langs=("en",), compute_dtype="auto", dtype="float16")
    with pytest.raises(ProbeError, match="torchrun"):
        extract(setup, progress=False)


def _shards(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.h5"))}


def _assert_identical(a: Path, b: Path) -> None:
    """Every dataset equal bit for bit, every attribute equal but the creation time."""
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa) == sorted(fb)
        for name in fa:
            x, y = fa[name][()], fb[name][()]
            assert x.dtype == y.dtype and x.shape == y.shape, (a, name)
            if x.dtype.kind == "O":  # strings: compare the values, not the object pointers
                assert x.tolist() == y.tolist(), (a, name)
            else:
                assert x.tobytes() == y.tobytes(), (a, name)
        attrs_a = {k: v for k, v in fa.attrs.items() if k not in ("created", "checksums")}
        attrs_b = {k: v for k, v in fb.attrs.items() if k not in ("created", "checksums")}
        assert attrs_a.keys() == attrs_b.keys()
        for key, value in attrs_a.items():
            assert np.array_equal(np.asarray(value), np.asarray(attrs_b[key])), (a, key)
        # Checksums of the data must agree; one over the attrs covers the creation time.
        sums_a, sums_b = (json.loads(f.attrs["checksums"]) for f in (fa, fb))
        sums_a.pop("attrs", None)
        sums_b.pop("attrs", None)
        assert sums_a == sums_b and sums_a["features"], a


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(
    tmp_path: Path, tiny_bert: Path, request: pytest.FixtureRequest
) -> None:
    make_ud(tmp_path / "data", SENTENCES * 3)

    def base(cache_root: Path) -> Setup:
        return config(tmp_path, tiny_bert, cache_root=cache_root, shard_rows=20)

    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "probe.cli", "extract", "--model", str(tiny_bert), "--task", "pos",
        "--langs", "en,de", "--data-dir", str(tmp_path / "data"),
        "--cache-dir", str(tmp_path / "ranks"), "--compute", "float32", "--dtype", "float32",
        "--shard-rows", "20",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH",
           "")]), "OMP_NUM_THREADS": "1"}  # fmt: skip
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    writers = [line.rsplit("rank ", 1)[1] for line in done.stdout.splitlines()
               if "rows/s  rank " in line]  # fmt: skip
    assert sorted(set(writers)) == ["0", "1"], done.stdout  # both ranks wrote shards
    assert done.stdout.count("cache key:") == 1  # only rank 0 reports

    # The ranks ran with one thread each; so do the in-process runs, since a float32 matmul's
    # summation order (and so its last bits) depends on how many threads split it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    single = extract(base(tmp_path / "single"), progress=False)
    ranks_dir = tmp_path / "ranks" / single.key
    got, want = _shards(ranks_dir), _shards(single.cache_dir)
    assert len(want) >= 8 and got.keys() == want.keys()  # several shards per split
    for rel, path in want.items():
        _assert_identical(path, got[rel])
    manifest = json.loads((ranks_dir / "manifest.json").read_text())
    assert manifest == json.loads((single.cache_dir / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == sorted(want)

    # A rerun with another world size (1) finds every shard complete ...
    rerun = extract(base(tmp_path / "ranks"), progress=False)
    assert rerun.key == single.key and not rerun.extracted and len(rerun.shards) == len(want)
    # ... and rebuilds exactly the one that went missing.
    lost = sorted(want)[3]
    (ranks_dir / lost).unlink()
    again = extract(base(tmp_path / "ranks"), progress=False)
    assert [s.path.relative_to(ranks_dir).as_posix() for s in again.extracted] == [lost]
    _assert_identical(want[lost], ranks_dir / lost)

"""Child-process side of the reliability tests: extraction runs that can be killed.

Children are forked from a multiprocessing forkserver that imported this module (and so
torch, transformers and probe) once, so each run starts in milliseconds instead of the
seconds a fresh interpreter needs. Every child uses one torch thread: runs must be
bit-for-bit comparable, and the machine's cores are shared.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
from pathlib import Path
from typing import Any

import torch
import transformers  # noqa: F401  (preloaded in the forkserver)
from transformers import BertModel  # noqa: F401

from probe.errors import ProbeError
from probe.extract import (
    CachePaths,
    ExtractOptions,
    ExtractReport,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)

SHARD_ROWS = 1100  # words per shard: a few shards per split
BLOCK_BYTES = 1  # smallest block (1024 words): shards of 1100 words take two writes


def corpus(n_sentences: int, seed: int) -> list[list[str]]:
    """Sentences of 3-14 words from the tiny BERT's vocabulary plus out-of-vocabulary ones."""
    from tests.conftest import TINY_WORDS

    rng = random.Random(seed)
    oov = ["zebra", "quixotic", "xylophone", "Haus", "köpek", "naïve", "über"]
    return [
        [rng.choice(TINY_WORDS if rng.random() < 0.85 else oov) for _ in range(rng.randint(3, 14))]
        for _ in range(n_sentences)
    ]


def extract(cache_root: Path, data_dir: Path, model: Path) -> ExtractReport:
    """The children's one extraction: English `pos`, small shards and blocks, on the CPU."""
    spec = ExtractSpec(str(model), compute_dtype="float32", dtype="float16")
    options = ExtractOptions(device="cpu", batch_tokens=512, shard_rows=SHARD_ROWS,
                             block_bytes=BLOCK_BYTES)  # fmt: skip
    request = ExtractRequest("pos", ("en",), splits=("dev", "test"))
    return ensure_cached(spec, request, options, CachePaths(cache_root, data_dir),
                         progress=False).report  # fmt: skip


def run_extract(
    cache_root: str,
    data_dir: str,
    model: str,
    result_file: str,
    fault: str | None = None,
    file_size_limit: int | None = None,
    unlocked: bool = False,
    reserve: bool = True,
) -> None:
    """One extraction; writes {"ok", "extracted", "skipped"} or the error to `result_file`.

    fault: PROBE_FAULT for this child. file_size_limit: RLIMIT_FSIZE in bytes (writes past
    it fail with EFBIG, a full disk in effect). unlocked: run without the shard lock, as on
    a platform without flock, to show the atomic rename alone keeps shards whole.
    reserve=False: no disk reservation before a shard (as where posix_fallocate is missing),
    so writes fail inside HDF5.
    """
    torch.set_num_threads(1)
    os.environ["PROBE_HASH_MEMO"] = str(Path(result_file).with_suffix(".memo.json"))
    if fault:
        os.environ["PROBE_FAULT"] = fault
    if unlocked:
        import contextlib

        from probe.cache import writer

        writer.shard_lock = lambda path: contextlib.nullcontext()  # type: ignore[assignment,return-value]
    if not reserve:
        del os.posix_fallocate
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if file_size_limit is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, don't kill the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, hard))
    try:
        report = extract(Path(cache_root), Path(data_dir), Path(model))
        out: dict[str, Any] = {
            "ok": True,
            "key": report.key,
            "extracted": sorted(str(s.path) for s in report.shards if not s.skipped),
            "skipped": sorted(str(s.path) for s in report.shards if s.skipped),
        }
    except ProbeError as err:
        out = {"ok": False, "type": type(err).__name__, "message": str(err)}
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    Path(result_file).write_text(json.dumps(out))


def run_cli(args: list[str], result_file: str) -> None:
    """`probe <args>` in this child; exit code and output to `result_file`."""
    from click.testing import CliRunner

    from probe.cli import cli

    torch.set_num_threads(1)
    result = CliRunner().invoke(cli, args)
    Path(result_file).write_text(
        json.dumps({"exit_code": result.exit_code, "output": result.output})
    )

"""`probe map`'s jobs on cached Tatoeba pairs: retrieval, CKA and held-out alignment per layer.

Reads the `tatoeba` shards that extraction writes: per pair, `sentence_features` is the
non-English sentence and `sentence_features_b` its English translation, each encoded on its
own and mean-pooled over its subword tokens (special tokens excluded), every layer kept.
Only one layer of one language is in memory at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.analysis.crosslingual.alignment import METHODS, NetConfig, heldout_alignment
from probe.analysis.crosslingual.cka import linear_cka
from probe.analysis.crosslingual.retrieval import retrieval_both_ways
from probe.cache import SplitReader
from probe.errors import ProbeError
from probe.results.rows import Row
from probe.runtime.threads import limit_threads

log = logging.getLogger(__name__)

TATOEBA_SPLIT = "test"


@dataclass(frozen=True)
class ParallelConfig:
    """How the parallel pairs are scored: centring, the alignment split and the maps."""

    centred: bool = True  # centre each language by its own mean before retrieval
    fit_fraction: float = 0.5  # first part of the pairs fits the maps, the rest tests them
    methods: tuple[str, ...] = METHODS
    ridge: float = 0.0  # least squares penalty; 0 = plain (minimum-norm) least squares
    net: NetConfig = field(default_factory=NetConfig)
    threads: int | None = 1  # BLAS and torch threads while scoring; None: leave as they are

    def __post_init__(self) -> None:
        if not 0 < self.fit_fraction < 1:
            raise ProbeError(f"fit fraction must be between 0 and 1, not {self.fit_fraction}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ProbeError(f"unknown alignment method(s) {unknown}; expected {METHODS}")
        if self.ridge < 0:
            raise ProbeError(f"ridge must be >= 0, not {self.ridge}")
        net = self.net
        if net.steps < 1 or net.lr <= 0 or net.patience < 1 or not 0 <= net.val_fraction < 1:
            raise ProbeError(
                f"alignment net needs steps >= 1, lr > 0, patience >= 1 and a validation "
                f"fraction in [0, 1); got {net}"
            )


@dataclass(frozen=True)
class ParallelJob:
    """The parallel signal of one language of a `probe map` run: picklable (cache path, key,
    names and the frozen config), so it runs in any pool worker, which opens the cache itself.

    label: the language as the results name it (e.g. `de`); code: its Tatoeba cache (`deu`).
    """

    root: Path
    key: str
    label: str
    code: str
    config: ParallelConfig


def pair_count(root: Path, key: str, label: str, code: str, config: ParallelConfig) -> int:
    """How many cached pairs a language has; refused when too few to fit and test a map."""
    with SplitReader.open(root, key, "tatoeba", code, TATOEBA_SPLIT) as reader:
        n = sum(shard.n_rows for shard in reader.shards)
    fit = int(round(n * config.fit_fraction))
    if min(fit, n - fit) < 2:
        raise ProbeError(
            f"{label} has {n} Tatoeba pairs: too few to fit maps on {fit} and test on "
            f"{n - fit}; raise --max-sentences or change --fit-fraction"
        )
    return n


def parallel_job_rows(job: ParallelJob) -> list[Row]:
    """Every layer of one language's cached pairs, with BLAS and torch threads capped.

    Heads: `retrieval` (xx2en, en2xx, mean; all pairs), `cka` (linear_cka; all pairs) and
    `align-none` / `align-<method>` (xx2en, en2xx, mean; held-out pairs only; the method in
    `config`). Every row reads one layer (`layers=(i,)`) of the `tatoeba` task.
    """
    rows: list[Row] = []
    with (
        limit_threads(job.config.threads, blas=True),
        SplitReader.open(job.root, job.key, "tatoeba", job.code, TATOEBA_SPLIT) as reader,
    ):
        for layer in range(reader.n_layers):
            x = reader.layer(layer, "sentence_features").astype(np.float64)
            eng = reader.layer(layer, "sentence_features_b").astype(np.float64)
            rows += _layer_rows(layer, job.label, x, eng, job.config)
        n = sum(shard.n_rows for shard in reader.shards)
    log.info("parallel signal of %s (%s): %d pairs", job.label, job.code, n)
    return rows


def _layer_rows(
    layer: int, label: str, x: np.ndarray, eng: np.ndarray, config: ParallelConfig
) -> list[Row]:
    def row(head: str, metric: str, value: float, method: str = "") -> Row:
        return Row(head, str(layer), label, metric, value, layers=(layer,), config=method,
                   eval_task="tatoeba")  # fmt: skip

    rows = [row("retrieval", m, v) for m, v in retrieval_both_ways(x, eng, config.centred).items()]
    rows.append(row("cka", "linear_cka", linear_cka(x, eng)))
    aligned = heldout_alignment(
        x, eng, config.fit_fraction, config.methods, config.ridge, config.net
    )
    for method, scores in aligned.items():
        rows += [row(f"align-{method}", m, v, method) for m, v in scores.items()]
    return rows

"""`probe map`'s jobs on cached Tatoeba pairs: retrieval, CKA and held-out alignment per layer,
and XTREME's Tatoeba accuracy at its one layer.

Reads two caches of the same pairs: per pair, `sentence_features` is the non-English sentence
and `sentence_features_b` its English translation, each encoded on its own, every layer kept.
The `tatoeba` shards average each sentence's own subwords (special tokens excluded): they feed
the centred retrieval, CKA and the alignment at every layer. The `tatoeba-xtreme` shards
average every attended token, [CLS] and [SEP] included, as XTREME's `mean_pool_embedding`
does: they feed XTREME's protocol (probe.analysis.crosslingual.retrieval) at one layer.
Only one layer of one language is in memory at a time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.analysis.crosslingual.alignment import METHODS, NetConfig, heldout_alignment
from probe.analysis.crosslingual.cka import linear_cka
from probe.analysis.crosslingual.retrieval import centred_retrieval, xtreme_accuracy
from probe.cache import SplitReader
from probe.errors import ProbeError
from probe.results.rows import Row
from probe.runtime.threads import limit_threads

log = logging.getLogger(__name__)

TATOEBA_SPLIT = "test"
TATOEBA_TASK = "tatoeba"  # subwords only: centred retrieval, CKA, alignment
XTREME_TASK = "tatoeba-xtreme"  # every token incl. [CLS]/[SEP]: XTREME's protocol
# XTREME's run_tatoeba.sh reads `--specific_layer 7` of mBERT's 12: index 7 of hidden_states[1:]
# (run_retrieval.py keeps the last num_layers of the 13 states), i.e. our layer 8 (0 = embeddings).
XTREME_LAYER, XTREME_DEPTH = 8, 12


def xtreme_layer(depth: int) -> int:
    """XTREME's Tatoeba layer for an encoder of `depth` transformer layers: mBERT's 8 of 12
    at the same relative depth, rounded half up (MiniLM's 6 layers: 4; 2 layers: 1)."""
    if depth < 1:
        raise ProbeError(f"an encoder needs at least one transformer layer, not {depth}")
    return max(1, math.floor(depth * XTREME_LAYER / XTREME_DEPTH + 0.5))


@dataclass(frozen=True)
class ParallelConfig:
    """How the parallel pairs are scored: the centring halves, XTREME's layer, the alignment
    split and the maps."""

    centre_seed: int = 0  # seeds the halves: centring (retrieval) and fit/scored (alignment)
    xtreme_layer: int | None = None  # XTREME's protocol reads this layer; None: xtreme_layer()
    fit_fraction: float = 0.5  # first part of the pairs fits the maps, the rest tests them
    methods: tuple[str, ...] = METHODS
    ridge: float | None = None  # least squares penalty; None: 5-fold CV on the fitting part
    net: NetConfig = field(default_factory=NetConfig)
    threads: int | None = 1  # BLAS and torch threads while scoring; None: leave as they are

    def __post_init__(self) -> None:
        if not 0 < self.fit_fraction < 1:
            raise ProbeError(f"fit fraction must be between 0 and 1, not {self.fit_fraction}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ProbeError(f"unknown alignment method(s) {unknown}; expected {METHODS}")
        if self.xtreme_layer is not None and self.xtreme_layer < 0:
            raise ProbeError(f"the XTREME layer must be >= 0, not {self.xtreme_layer}")
        if self.ridge is not None and self.ridge < 0:
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

    label: the language as the results name it (e.g. `de`); code: its Tatoeba cache (`deu`);
    xtreme_layer: the layer XTREME's protocol reads (resolved from the model's depth).
    """

    root: Path
    key: str
    label: str
    code: str
    config: ParallelConfig
    xtreme_layer: int


def pair_count(root: Path, key: str, label: str, code: str, config: ParallelConfig) -> int:
    """How many cached pairs a language has; refused when too few to fit and test a map."""
    with SplitReader.open(root, key, TATOEBA_TASK, code, TATOEBA_SPLIT) as reader:
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

    Heads, each row reading one layer (`layers=(i,)`):
    - `retrieval-centred` (xx2en, en2xx, mean; every layer; all pairs, each half centred by
      the other half's means and retrieving within itself) and `cka` (linear_cka; all pairs);
    - `align-none` / `align-<method>` (xx2en, en2xx, mean; held-out pairs only; the method in
      `config`);
    - `retrieval-xtreme` (en2xx only; XTREME's layer only; all pairs of `tatoeba-xtreme`).
    """
    rows: list[Row] = []
    with (
        limit_threads(job.config.threads, blas=True),
        SplitReader.open(job.root, job.key, TATOEBA_TASK, job.code, TATOEBA_SPLIT) as reader,
    ):
        for layer in range(reader.n_layers):
            x = reader.layer(layer, "sentence_features").astype(np.float64)
            eng = reader.layer(layer, "sentence_features_b").astype(np.float64)
            rows += _layer_rows(layer, job.label, x, eng, job.config)
        n = sum(shard.n_rows for shard in reader.shards)
        rows.append(_xtreme_row(job))
    log.info("parallel signal of %s (%s): %d pairs", job.label, job.code, n)
    return rows


def _xtreme_row(job: ParallelJob) -> Row:
    """XTREME's accuracy at its layer, from the pairs pooled with the special tokens."""
    layer = job.xtreme_layer
    with SplitReader.open(job.root, job.key, XTREME_TASK, job.code, TATOEBA_SPLIT) as reader:
        x = reader.layer(layer, "sentence_features").astype(np.float64)
        eng = reader.layer(layer, "sentence_features_b").astype(np.float64)
    return Row("retrieval-xtreme", str(layer), job.label, "en2xx", xtreme_accuracy(x, eng),
               layers=(layer,), eval_task=XTREME_TASK)  # fmt: skip


def _layer_rows(
    layer: int, label: str, x: np.ndarray, eng: np.ndarray, config: ParallelConfig
) -> list[Row]:
    def row(head: str, metric: str, value: float, method: str = "") -> Row:
        return Row(head, str(layer), label, metric, value, layers=(layer,), config=method,
                   eval_task="tatoeba")  # fmt: skip

    centred = centred_retrieval(x, eng, config.centre_seed)
    rows = [row("retrieval-centred", m, v) for m, v in centred.items()]
    rows.append(row("cka", "linear_cka", linear_cka(x, eng)))
    aligned = heldout_alignment(
        x,
        eng,
        config.fit_fraction,
        config.methods,
        config.ridge,
        config.net,
        seed=config.centre_seed,
    )
    for method, scores in aligned.items():
        rows += [row(f"align-{method}", m, v, method) for m, v in scores.items()]
    return rows

"""`probe grid`: the DLFA (or concat) head for every requested layer pair, zero-shot everywhere.

Default pairs are (k, last) for every lower k: the seed paper's D_k sweep. The baseline is
the same head with both inputs the last layer (DLFA's gate then mixes a layer with itself,
so it is the last layer through the same classifier). Each pair is a job of the experiment
base (run here, on `--workers N` local processes, or on a `--cluster`); a job opens the
cache itself and holds two layers of each split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.metrics import score
from probe.data.tasks import Task, run_task
from probe.errors import ProbeError, unknown_name
from probe.experiments.base import Context, Experiment
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.dlfa import gate_mean
from probe.heads.registry import HEADS, pair_heads
from probe.results.gains import gains_over
from probe.results.render.grid import pair_name, render_grid
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig, fit, predict_proba
from probe.train.select import DLFA_TRAINING
from probe.train.splits import as_data, opener, train_dev

# GridConfig fields that are not settings of their own: the base records the cache, the task,
# the languages and the source; extraction options and paths change no number.
_NOT_SETTINGS = ("spec", "options", "paths", "task", "langs", "source")


@dataclass(frozen=True)
class GridConfig:
    """What one `probe grid` run computes, over cached features (what is missing is
    extracted). Where results go and how many workers train the pairs is `RunOptions`."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None
    pairs: str = "last"  # "last": (k, last) for every k; "all": every i < j; or "i,j;k,l"
    head: str = "dlfa"
    reduction: int = 4
    train: TrainConfig = DLFA_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank); () = the task's default rule
    train_split: str | None = None  # --train-split; None = the task's own

    def __post_init__(self) -> None:
        if self.head not in pair_heads():
            raise unknown_name("grid head (--head)", self.head, pair_heads())


@dataclass(frozen=True)
class _PairJob:
    """Everything a worker needs; picklable (no open files)."""

    task: str
    root: Path
    key: str
    source: str
    langs: tuple[str, ...]
    pair: tuple[int, int]  # (k, l): l is the "last" input, k the lower layer
    config: GridConfig


def parse_pairs(spec: str, n_layers: int) -> list[tuple[int, int]]:
    """'last' -> [(k, L)], 'all' -> every (i, j) with i < j, or '3,6;4,6' (order is free)."""
    last = n_layers - 1
    if spec == "last":
        return [(k, last) for k in range(last)]
    if spec == "all":
        return [(i, j) for j in range(n_layers) for i in range(j)]
    pairs = []
    for item in spec.replace(" ", "").split(";"):
        try:
            a, b = (int(x) for x in item.split(","))
        except ValueError:
            raise ProbeError(f"bad layer pair {item!r}: expected 'i,j' (e.g. '4,6;5,6')") from None
        for layer in (a, b):
            if not 0 <= layer <= last:
                raise ProbeError(f"layer {layer} in pair {item!r} is outside 0..{last}")
        pairs.append((min(a, b), max(a, b)))
    return pairs


class GridExperiment(Experiment[GridConfig, _PairJob]):
    """The pair head on every requested layer pair and on (last, last): one job per pair."""

    name = "grid"
    levels = ("word",)
    other_levels_hint = " (grid needs token-level features; a pair task caches pooled vectors)"

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg = self.config
        request = self.zero_shot_request(task, source, cfg.train.seed)
        return ensure_cached(cfg.spec, request, cfg.options, cfg.paths, progress=progress)

    def jobs(self, ctx: Context) -> list[tuple[str, _PairJob]]:
        assert ctx.cache is not None
        last = ctx.n_layers - 1
        pairs = list(dict.fromkeys([(last, last), *parse_pairs(self.config.pairs, ctx.n_layers)]))
        # An absolute cache path: a job may run in another working directory (a cluster worker).
        root, key = ctx.cache.root.resolve(), ctx.cache.key
        return [(f"pair-{k}-{high}", _PairJob(ctx.task.name, root, key, ctx.source, ctx.langs,
                                              (k, high), self.config))
                for k, high in pairs]  # fmt: skip

    @staticmethod
    def job_function() -> Callable[[_PairJob], list[Row]]:
        return run_pair  # looked up when the run starts (tests patch the module's run_pair)

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        rows = [row for part in parts.values() for row in part]
        return rows + gains_over(ctx.task, rows, ctx.source, _baseline(ctx), by="layers")

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _NOT_SETTINGS}
        own["train"] = asdict(cfg.train)
        own["dev_split"] = ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}"
        return own

    def directory_name(self, ctx: Context) -> str:
        return f"grid-{self.config.head}-{ctx.source}"

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_grid(ctx.task, rows, ctx.source, ctx.langs, _baseline(ctx), directory,
                           ctx.model_key)  # fmt: skip


def _baseline(ctx: Context) -> tuple[int, int]:
    """(last, last): the last layer alone through the same head."""
    return (ctx.n_layers - 1, ctx.n_layers - 1)


def _head(config: GridConfig, hidden: int, n_classes: int) -> Any:
    return HEADS.get(config.head).build("word", hidden, n_classes, reduction=config.reduction)


def run_pair(job: _PairJob) -> list[Row]:
    """Train the head on one pair (k, l) on the source and score every language."""
    task = run_task(job.task, job.config.train_split)
    k, high = job.pair
    open_split = opener(job.root, job.key, task)
    cfg = job.config
    train, dev = train_dev(task, open_split, job.source, cfg.max_train_words, cfg.dev_fraction,
                           cfg.train.seed)  # fmt: skip
    layers = sorted({k, high})
    order = (high, k)  # the head reads (h_last, h_k)
    tr, dv = as_data(task, train, layers), as_data(task, dev, layers)
    n_classes = len(task.labels)
    result = fit(lambda: _head(cfg, tr.hidden, n_classes), tr.sentences(order),
                 dv.sentences(order), cfg.train)  # fmt: skip

    def row(lang: str, metric: str, value: float) -> Row:
        return Row(cfg.head, pair_name(job.pair), lang, metric, value, layers=job.pair)

    rows = [row(job.source, "best_epoch", float(result.best_epoch))]
    for lang in job.langs:
        split = open_split(lang, task.eval_split)
        data = as_data(task, split, layers)
        probs = predict_proba(result.head, data.sentences(order),
                              batch_size=cfg.train.eval_batch_size)  # fmt: skip
        for metric, value in score(task.metric, probs, data.labels, offsets=split.offsets,
                                   label_names=task.labels,
                                   extra=task.extra_metrics).items():  # fmt: skip
            rows.append(row(lang, metric, value))
        if HEADS.get(cfg.head).has_gate and lang == job.source:
            rows.append(row(lang, "gate_mean", _mean_gate(result.head, data, order, cfg.train)))
        split.reader.close()
    train.reader.close()
    dev.reader.close()
    return rows


def _mean_gate(head: Any, data: Any, order: tuple[int, int], train: TrainConfig) -> float:
    """Average share of the fused features taken from the higher layer (source eval split)."""
    import torch

    head.eval()
    values, weights = [], []
    device = next(head.parameters()).device
    batches = data.sentences(order).batches(train.eval_batch_size, generator=None, device=device)
    with torch.inference_mode():  # float32, as every evaluation
        for batch in batches:
            _, gate = head(*batch.inputs, return_gate=True)
            mask = batch.inputs[-1]
            values.append(gate_mean(gate, mask))
            weights.append(float(mask.sum()))
    return float(np.average(values, weights=weights))

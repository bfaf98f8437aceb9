"""`probe grid`: the DLFA (or concat) head for every requested layer pair, zero-shot everywhere,
beside the baselines a fusion gain has to beat, with seeds and intervals.

Default pairs are (k, last) for every lower k: the seed paper's D_k sweep. Every pair's gain is
shown against five matched baselines, each trained in the same run with the same recipe
(DLFA_TRAINING) and seeds, so "fusion helps" is not confused with "a lower layer is better"
or "a bigger head is better":

- last: the head with both inputs the last layer (the gate then mixes a layer with itself:
  the last layer through the same linear classifier);
- gated-last: the equal-capacity control, the last layer through DLFA's own gated head
  (probe.heads.dlfa.SelfGatedHead: the same parameters, the gate computed from the last
  layer alone);
- single (dev): the best single layer j, each through the same classifier (pairs (j, j)),
  j chosen per seed on the source dev score;
- layer k: the pair's lower layer alone through the same classifier (the pair (k, k)), so
  a gain over it is what fusing adds to the layer being fused;
- concat: a linear classifier on [H_last; H_k] of the same pair (both layers, no gate).

"dlfa (dev)" is the zero-shot user's DLFA: k chosen per seed on the source dev score, never
on a target. Every Δ is the seed mean with a paired bootstrap interval over test sentences
and seeds (probe.analysis.bootstrap). Each (head, pair, seed) is a job of the experiment base
(run here, on `--workers N` local processes, or on a `--cluster`); a job opens the cache
itself and holds two layers of each split. Subsets and the dev hold-out are drawn with the
first seed, so seeds change only training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import PairedBootstrap
from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.data.tasks import Task, get_task, run_task, token_view
from probe.errors import ProbeError, unknown_name
from probe.experiments.base import Context, Experiment, check_seeds
from probe.experiments.leakage import SplitUse
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.dlfa import gate_mean
from probe.heads.registry import HEADS, PAIR_POOLS, pair_heads
from probe.results.gains import average_seeds
from probe.results.intervals import delta_rows
from probe.results.items import ItemScores, ItemSet, scored_items
from probe.results.render.grid import BASELINES, pair_name, render_grid
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
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds; data subsets use the first
    baselines: bool = True  # gated-last, every single layer and concat, in the same run
    n_boot: int = 1000  # bootstrap replicates of every interval
    # Pair tasks (their token view): which row of the fused tokens is classified.
    pair_pool: str = "first"
    max_eval_sentences: int | None = None  # a seeded sample of each evaluation split

    def __post_init__(self) -> None:
        if self.head not in pair_heads():
            raise unknown_name("grid head (--head)", self.head, pair_heads())
        if self.pair_pool not in PAIR_POOLS:
            raise unknown_name("pair pooling (--pair-pool)", self.pair_pool, PAIR_POOLS)
        check_seeds(self.seeds)


@dataclass(frozen=True)
class _PairJob:
    """Everything a worker needs; picklable (no open files)."""

    task: str
    root: Path
    key: str
    source: str
    langs: tuple[str, ...]
    head: str  # a HEADS name: the grid's head, or a baseline's
    pair: tuple[int, int]  # (k, l): l is the "last" input, k the lower layer
    seed: int  # the training seed (subsets and hold-outs use config.seeds[0])
    config: GridConfig


def parse_pairs(spec: str, n_layers: int) -> list[tuple[int, int]]:
    """'last' -> [(k, L)], 'all' -> every (i, j) with i < j, or '3,6;4,6' (order is free;
    "last" names the last layer, so '8,last;10,last' fits a model of any depth)."""
    last = n_layers - 1
    if spec == "last":
        return [(k, last) for k in range(last)]
    if spec == "all":
        return [(i, j) for j in range(n_layers) for i in range(j)]
    pairs = []
    for item in spec.replace(" ", "").split(";"):
        try:
            a, b = (last if x == "last" else int(x) for x in item.split(","))
        except ValueError:
            raise ProbeError(f"bad layer pair {item!r}: expected 'i,j' (e.g. '4,6;5,6')") from None
        for layer in (a, b):
            if not 0 <= layer <= last:
                raise ProbeError(f"layer {layer} in pair {item!r} is outside 0..{last}")
        pairs.append((min(a, b), max(a, b)))
    return pairs


def systems(config: GridConfig, n_layers: int) -> list[tuple[str, tuple[int, int]]]:
    """(head, pair) of every system the run trains: the last-layer baseline, the requested
    pairs and, with `baselines`, the gated-last control, every single layer (j, j) and the
    concat head on each requested pair."""
    last = n_layers - 1
    fused = [p for p in parse_pairs(config.pairs, n_layers) if p[0] != p[1]]
    out = [(config.head, (last, last)), *((config.head, p) for p in fused)]
    if config.baselines:
        out.append(("gated-last", (last, last)))
        out += [(config.head, (j, j)) for j in range(last)]
        if config.head != "concat":
            out += [("concat", p) for p in fused]
    return list(dict.fromkeys(out))


class GridExperiment(Experiment[GridConfig, _PairJob]):
    """The pair head on every requested pair, beside its matched baselines: one job per
    (head, pair, seed)."""

    name = "grid"
    levels = ("word", "pair-tokens")
    other_levels_hint = " (grid fuses the layers of words or of a pair's tokens)"

    def task_name(self) -> str:
        """A pair task runs on its token view (`<task>@tokens`): the gate reads tokens."""
        task = get_task(self.config.task)
        return token_view(task).name if task.level == "pair" else task.name

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg = self.config
        # Hidden-label evaluation splits are not extracted: a token view costs ~0.6 MB a pair.
        request = replace(self.zero_shot_request(task, source, cfg.seeds[0]), scored_only=True)
        return ensure_cached(cfg.spec, request, cfg.options, cfg.paths, progress=progress)

    def jobs(self, ctx: Context) -> list[tuple[str, _PairJob]]:
        assert ctx.cache is not None
        # An absolute cache path: a job may run in another working directory (a cluster worker).
        root, key = ctx.cache.root.resolve(), ctx.cache.key
        scored = _scored(ctx)
        return [(f"{head}-{k}-{high}-seed-{seed}",
                 _PairJob(ctx.task.name, root, key, ctx.source, scored, head, (k, high), seed,
                          self.config))
                for head, (k, high) in systems(self.config, ctx.n_layers)
                for seed in self.config.seeds]  # fmt: skip

    def split_use(self, ctx: Context) -> SplitUse:
        """The source's training splits; the evaluation splits of the languages scored."""
        return SplitUse.zero_shot(ctx.task, (ctx.source,), _scored(ctx))

    @staticmethod
    def job_function() -> Callable[[_PairJob], list[Row | ItemScores]]:
        return run_pair  # looked up when the run starts (tests patch the module's run_pair)

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per-seed rows, the dev-chosen systems, seed means and sds, then every Δ."""
        rows = [row for part in parts.values() for row in part]
        chosen, items = dev_chosen(ctx.task, rows, ctx.source, ctx.n_layers - 1, self.config.head,
                                   ctx.items)  # fmt: skip
        rows += chosen
        means = average_seeds([[r for r in rows if r.seed == s] for s in self.config.seeds])
        boot = PairedBootstrap(self.config.n_boot, seed=self.config.seeds[0])
        return rows + means + grid_deltas(ctx.task, rows, items, boot, ctx.source,
                                          ctx.n_layers - 1, self.config.head)  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _NOT_SETTINGS}
        own["train"] = asdict(cfg.train)
        own["dev_split"] = ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}"
        own["data_seed"] = cfg.seeds[0]
        own["systems"] = [f"{head} {pair_name(p)}" for head, p in systems(cfg, ctx.n_layers)]
        own["interval"] = ("paired bootstrap over test sentences and seeds, 95% percentile, "
                           f"{cfg.n_boot} replicates (probe.analysis.bootstrap)")  # fmt: skip
        return own

    def directory_name(self, ctx: Context) -> str:
        return f"grid-{self.config.head}-{ctx.source}"

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_grid(ctx.task, rows, ctx.source, ctx.langs, _baseline(ctx), directory,
                           ctx.model_key, self.config.head)  # fmt: skip


def _scored(ctx: Context) -> tuple[str, ...]:
    """The languages whose evaluation split has labels (PAWS-X's English test has none, and
    is not extracted: `ExtractRequest.scored_only`)."""
    assert ctx.cache is not None
    cache, task = ctx.cache, ctx.task
    return tuple(lang for lang in ctx.langs if cache.labelled(task.name, lang, task.eval_split))


def _baseline(ctx: Context) -> tuple[int, int]:
    """(last, last): the last layer alone through the same head."""
    return (ctx.n_layers - 1, ctx.n_layers - 1)


def _scores(rows: Sequence[Row], metric: str, **where: Any) -> Table:
    """Per-seed evaluation score rows of `metric` (no dev, no means, no gains)."""
    where = {"seed": lambda s: s is not None, **where}
    return Table(rows).filter(metric=metric, subset="", group="", stat="", **where)


def dev_chosen(
    task: Task, rows: Sequence[Row], source: str, last: int, head: str, items: ItemSet
) -> tuple[list[Row], ItemSet]:
    """The systems a zero-shot user can pick without looking at a target: per seed, the
    fused pair (k, last) and the single layer (j, j) with the best source dev score.

    Their rows copy the chosen system's rows (layer "dev", layers (), config "dlfa (dev)" /
    "single (dev)"), with a "chosen_layer" row per seed; the returned ItemSet also holds the
    copies' item statistics (the chosen system's)."""
    table = Table(rows)
    dev = table.filter(subset="dev", metric=task.metric, lang=source)
    out: list[Row] = []
    aliases: list[ItemScores] = []
    for name, candidate in (("dlfa (dev)", lambda p: p[0] != p[1] and p[1] == last),
                            ("single (dev)", lambda p: len(p) == 2 and p[0] == p[1])):  # fmt: skip
        for seed in table.values("seed", subset="dev"):
            options = dev.filter(head=head, seed=seed, layers=candidate)
            if len(options) < 2:  # nothing to choose between
                continue
            best = max(options, key=lambda r: r.value)
            k = best.layers[0]
            out.append(Row(head, "dev", source, "chosen_layer", float(k), config=name,
                           seed=seed))  # fmt: skip
            for r in table.filter(head=head, layers=best.layers, seed=seed, stat=""):
                if r.metric in ("chosen_layer", "gate_mean"):
                    continue
                copy = replace(r, layer="dev", layers=(), config=name)
                out.append(copy)
                if r in items:
                    aliases.append(ItemScores(copy, items.stats(r)))
    return out, ItemSet([*items.entries(), *aliases])


def grid_deltas(
    task: Task, rows: Sequence[Row], items: ItemSet, boot: PairedBootstrap, source: str,
    last: int, head: str,
) -> list[Row]:  # fmt: skip
    """Every fused system's Δ over each baseline present (BASELINES), for the task's metric
    and its extra ones; config "vs <baseline>". Two baselines depend on the pair: "layer k"
    (its lower layer alone through the same classifier) and "concat" (the same pair through
    ConcatHead); for "dlfa (dev)" they are taken at each seed's chosen k."""
    out: list[Row] = []
    for metric in dict.fromkeys((task.metric, *task.extra_metrics)):
        if metric not in ITEM_COLUMNS:
            continue

        def system(**where: Any) -> Table:
            return _scores(rows, metric, **where)  # noqa: B023 (used at once)

        fixed = {
            "last": system(head=head, layers=(last, last), config=""),
            "gated-last": system(head="gated-last", layers=(last, last)),
            "single (dev)": system(config="single (dev)"),
        }
        fused = [(p, system(head=head, layers=p, config=""))
                 for p in Table(rows).values("layers", head=head, config="")
                 if len(p) == 2 and p[0] != p[1]]  # fmt: skip
        fused.append(((), system(config="dlfa (dev)")))
        for pair, a in fused:
            # Of a pair (k, l): layer k alone is (k, k), concat is the same (k, l); for
            # "dlfa (dev)" both are taken at each seed's chosen (k, last).
            baselines = dict(fixed)
            for name, other in (("layer k", head), ("concat", "concat")):
                if pair:
                    own = (pair[0], pair[0]) if name == "layer k" else pair
                    baselines[name] = system(head=other, layers=own, config="")
                else:
                    chosen = _single if name == "layer k" else functools.partial(_fused, last)
                    baselines[name] = _at_chosen(rows, metric, other, chosen)
            for name in BASELINES:
                b = baselines[name]
                if a and b and not (name == "concat" and head == "concat"):
                    out += delta_rows(list(a), list(b), items, boot, source, like=a[0],
                                      config=f"vs {name}")  # fmt: skip
    return out


def _single(k: int) -> tuple[int, int]:
    return (k, k)


def _fused(last: int, k: int) -> tuple[int, int]:
    return (k, last)


def _at_chosen(
    rows: Sequence[Row], metric: str, head: str, layers: Callable[[int], tuple[int, int]]
) -> Table:
    """Per seed, `head` on `layers(k)` for the k the dev-chosen DLFA picked (for its Δ)."""
    out: list[Row] = []
    chosen = Table(rows).filter(metric="chosen_layer", config="dlfa (dev)",
                                seed=lambda s: s is not None)  # fmt: skip
    for r in chosen:
        out += _scores(rows, metric, head=head, layers=layers(int(r.value)), seed=r.seed,
                       config="")  # fmt: skip
    return Table(out)


def _head(head: str, config: GridConfig, level: str, hidden: int, n_classes: int) -> Any:
    return HEADS.get(head).build(level, hidden, n_classes, reduction=config.reduction,
                                 pool=config.pair_pool)  # fmt: skip


def run_pair(job: _PairJob) -> list[Row | ItemScores]:
    """Train one head on one pair (k, l) with one seed on the source; score the source dev
    split and every language's evaluation split (rows, and their item statistics)."""
    task = run_task(job.task, job.config.train_split)
    k, high = job.pair
    open_split = opener(job.root, job.key, task)
    cfg = job.config
    train_config = replace(cfg.train, seed=job.seed)
    train, dev = train_dev(task, open_split, job.source, cfg.max_train_words, cfg.dev_fraction,
                           cfg.seeds[0])  # fmt: skip
    layers = sorted({k, high})
    order = (high, k)  # the head reads (h_last, h_k)
    tr, dv = as_data(task, train, layers), as_data(task, dev, layers)
    n_classes = len(task.labels)
    result = fit(lambda: _head(job.head, cfg, task.level, tr.hidden, n_classes),
                 tr.sentences(order), dv.sentences(order), train_config)  # fmt: skip

    def row(lang: str, metric: str, value: float, subset: str = "") -> Row:
        return Row(job.head, pair_name(job.pair), lang, metric, value, layers=job.pair,
                   subset=subset, seed=job.seed)  # fmt: skip

    out: list[Row | ItemScores] = [row(job.source, "best_epoch", float(result.best_epoch))]
    scored = [(lang, open_split(lang, task.eval_split), "") for lang in job.langs]
    scored.append((job.source, dev, "dev"))
    for lang, split, subset in scored:
        data = as_data(task, split, layers)
        probs = predict_proba(result.head, data.sentences(order),
                              batch_size=train_config.eval_batch_size)  # fmt: skip
        spans = split.offsets if task.level == "word" else None  # words of sentences, or pairs
        metrics = score(task.metric, probs, data.labels, offsets=spans,
                        label_names=task.labels, extra=task.extra_metrics)  # fmt: skip
        for metric, value in metrics.items():
            out.append(row(lang, metric, value, subset))
            if metric in ITEM_COLUMNS and not subset:
                out.append(scored_items(row(lang, metric, value), probs.argmax(axis=1),
                                        data.labels, offsets=spans,
                                        label_names=task.labels))  # fmt: skip
        if HEADS.get(job.head).has_gate and lang == job.source and not subset:
            out.append(row(lang, "gate_mean", _mean_gate(result.head, data, order, train_config)))
        if split is not dev:
            split.reader.close()
    train.reader.close()
    dev.reader.close()
    return out


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

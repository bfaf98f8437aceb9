"""`probe grid`: the DLFA (or concat) head for every requested layer pair, zero-shot everywhere.

Default pairs are (k, last) for every lower k: the seed paper's D_k sweep. The baseline is
the same head with both inputs the last layer (DLFA's gate then mixes a layer with itself,
so it is the last layer through the same classifier). Each pair is a job of
`probe.experiments.pool` (here, on `--workers N` local processes, or on a `--cluster`); a job
opens the cache itself and holds two layers of each split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.metrics import score
from probe.data.languages import same_family
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError, unknown_name
from probe.experiments.pool import Journal, PoolConfig, fingerprint, run_jobs
from probe.extract import CachePaths, ExtractOptions, ExtractRequest, ExtractSpec, ensure_cached
from probe.heads.dlfa import gate_mean
from probe.heads.registry import HEADS, pair_heads
from probe.results.report import Row, provenance, run_directory, write_table
from probe.runtime.precision import autocast, pick_compute_dtype
from probe.train import TrainConfig, fit, predict_proba
from probe.train.select import DLFA_TRAINING
from probe.train.splits import as_data, opener, train_dev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridConfig:
    """One `probe grid` run over cached features."""

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
    results_dir: Path = Path("results")
    train: TrainConfig = DLFA_TRAINING
    workers: int | None = None  # None: one per core, at most one per pair
    cluster: str | None = None  # Dask scheduler or Ray address (probe.experiments.pool)
    dev_fraction: float = 0.1
    max_train_words: int | None = None


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


@dataclass
class GridResult:
    rows: list[Row]
    directory: Path
    table: str
    seconds: float
    extract_seconds: float


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


def run_grid(config: GridConfig, progress: bool = True) -> GridResult:
    """Extract what is missing, train the head for every pair (and the baseline), write results."""
    task = get_task(config.task)
    if task.level != "word":
        raise ProbeError(
            f"grid needs token-level features; task {task.name!r} caches pooled sentence "
            "vectors only. Use a word-level task (pos, udpos, ner, panx)."
        )
    if config.head not in pair_heads():
        raise unknown_name("grid head (--head)", config.head, pair_heads())
    source = config.source or task.default_source
    task.check_language(source)
    t0 = time.perf_counter()
    request = ExtractRequest(task.name, config.langs, None, source, config.max_sentences)
    cache = ensure_cached(config.spec, request, config.options, config.paths, progress=progress)
    extract_seconds = time.perf_counter() - t0
    langs = list(cache.languages(task.name, source))
    root, key = cache.root, cache.key
    n_layers = cache.n_layers
    last = n_layers - 1
    pairs = [(last, last), *parse_pairs(config.pairs, n_layers)]
    pairs = list(dict.fromkeys(pairs))
    # An absolute cache path: a job may run in another working directory (a cluster worker).
    jobs = [_PairJob(task.name, root.resolve(), key, source, tuple(langs), p, config)
            for p in pairs]  # fmt: skip
    pool = PoolConfig(config.workers, config.cluster)
    workers = pool.local_workers(len(jobs)) if config.cluster is None else None

    settings = {
        "command": "grid", "task": task.name, "model": config.spec.model, "source": source,
        "languages": langs, "cache_key": key, "head": config.head, "pairs": config.pairs,
        "reduction": config.reduction, "train": asdict(config.train), "workers": workers,
        "cluster": config.cluster,
        "train_split": task.train_split, "eval_split": task.eval_split,
        "dev_split": task.dev_split or f"{config.dev_fraction:.0%} of {task.train_split}",
        "max_train_words": config.max_train_words,
        "grid_seconds": None, "extract_seconds": round(extract_seconds, 3),
        "provenance": provenance(config.train.seed),
    }  # fmt: skip
    directory = run_directory(
        config.results_dir / task.name / key, f"grid-{config.head}-{source}", settings,
        volatile=("grid_seconds", "extract_seconds", "provenance", "workers", "cluster"),
    )  # fmt: skip
    journal = Journal(directory / "jobs", fingerprint(
        cache.identity(), replace(config, workers=None, cluster=None)))  # fmt: skip
    t1 = time.perf_counter()
    named = [(f"pair-{job.pair[0]}-{job.pair[1]}", job) for job in jobs]
    parts = run_jobs(run_pair, named, pool, journal, progress=progress, desc=f"grid {task.name}")
    rows: list[Row] = [row for part in parts for row in part]
    seconds = time.perf_counter() - t1
    settings["grid_seconds"] = round(seconds, 3)
    rows += family_gains(task, rows, source, f"{last},{last}")

    write_table(rows, directory, settings)
    table = grid_table(task, rows, source, langs, (last, last))
    (directory / "summary.txt").write_text(table + "\n")
    plot_grid(task, rows, source, langs, (last, last), directory / "grid_heatmap.png", key)
    journal.clear()  # every output is written: a rerun recomputes with the current code
    return GridResult(rows, directory, table, seconds, extract_seconds)


def _head(config: GridConfig, hidden: int, n_classes: int) -> Any:
    return HEADS.get(config.head).build("word", hidden, n_classes, reduction=config.reduction)


def run_pair(job: _PairJob) -> list[Row]:
    """Train the head on one pair (k, l) on the source and score every language."""
    task = get_task(job.task)
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
    name = f"{k},{high}"
    rows = [Row(cfg.head, name, job.source, "best_epoch", float(result.best_epoch))]
    for lang in job.langs:
        split = open_split(lang, task.eval_split)
        data = as_data(task, split, layers)
        probs = predict_proba(result.head, data.sentences(order),
                              batch_size=cfg.train.eval_batch_size,
                              precision=cfg.train.precision)  # fmt: skip
        for metric, value in score(task.metric, probs, data.labels, offsets=split.offsets,
                                   label_names=task.labels).items():  # fmt: skip
            rows.append(Row(cfg.head, name, lang, metric, value))
        if HEADS.get(cfg.head).has_gate and lang == job.source:
            rows.append(
                Row(
                    cfg.head,
                    name,
                    lang,
                    "gate_mean",
                    _mean_gate(result.head, data, order, cfg.train),
                )
            )
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
    compute = pick_compute_dtype(train.precision, device)
    batches = data.sentences(order).batches(train.eval_batch_size, generator=None, device=device)
    with torch.inference_mode(), autocast(device, compute):
        for batch in batches:
            _, gate = head(*batch.inputs, return_gate=True)
            mask = batch.inputs[-1]
            values.append(gate_mean(gate, mask))
            weights.append(float(mask.sum()))
    return float(np.average(values, weights=weights))


def family_gains(task: Task, rows: list[Row], source: str, base_name: str) -> list[Row]:
    """Gain over the baseline rows (`Row.layer == base_name`: a layer pair here, a configuration
    in `probe intermediate`) per language, and averaged inside / outside the source's family."""
    metric = task.metric
    base = {r.lang: r.value for r in rows if r.layer == base_name and r.metric == metric}
    out = []
    for pair in dict.fromkeys(r.layer for r in rows if r.layer != base_name):
        gains = {r.lang: r.value - base[r.lang] for r in rows
                 if r.layer == pair and r.metric == metric and r.lang in base}  # fmt: skip
        head = next(r.head for r in rows if r.layer == pair)
        for lang, gain in gains.items():
            out.append(Row(head, pair, lang, f"gain_{metric}", gain))
        targets = {lang: g for lang, g in gains.items() if lang != source}
        for group, inside in (("enf", True), ("noenf", False)):
            chosen = [g for lang, g in targets.items() if same_family(lang, source) is inside]
            if chosen:
                out.append(Row(head, pair, group, f"gain_{metric}", float(np.mean(chosen))))
        if targets:
            out.append(
                Row(head, pair, "targets", f"gain_{metric}", float(np.mean(list(targets.values()))))
            )
    return out


def grid_table(
    task: Task, rows: list[Row], source: str, langs: list[str], baseline: tuple[int, int]
) -> str:
    """Scores of the baseline and every pair per language, then the gains (x100)."""
    metric = task.metric
    base_name = f"{baseline[0]},{baseline[1]}"
    pairs = list(dict.fromkeys(r.layer for r in rows if r.metric == metric))
    cols = [*langs]
    groups = ["targets", "enf", "noenf"]
    width = max(7, *(len(c) + 1 for c in cols))
    head = f"{'pair':<8}" + "".join(f"{c:>{width}}" for c in cols)
    head += "".join(f" {'Δ' + g:>{width}}" for g in groups)
    lines = [f"{task.name}: {metric} x100 per layer pair (k,last); baseline {base_name} = last "
             f"layer alone; source {source}; Δ = gain over baseline", head]  # fmt: skip
    values = {(r.layer, r.lang): r.value for r in rows if r.metric == metric}
    gains = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}"}
    for pair in pairs:
        line = f"{pair + (' *' if pair == base_name else ''):<8}"
        line += "".join(_cell(values.get((pair, c)), width) for c in cols)
        line += "".join(_cell(gains.get((pair, g)), width + 1, signed=True) for g in groups)
        lines.append(line)
    return "\n".join(lines)


def _cell(value: float | None, width: int, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return f"{'-':>{width}}"
    return f"{100 * value:>+{width}.1f}" if signed else f"{100 * value:>{width}.1f}"


def plot_grid(
    task: Task, rows: list[Row], source: str, langs: list[str], baseline: tuple[int, int],
    path: Path, key: str,
) -> Path:  # fmt: skip
    """Heatmap: pairs x languages, colour = gain over the last-layer baseline, text = score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    metric = task.metric
    base_name = f"{baseline[0]},{baseline[1]}"
    pairs = [p for p in dict.fromkeys(r.layer for r in rows if r.metric == metric)]
    values = {(r.layer, r.lang): r.value for r in rows if r.metric == metric}
    gains = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}"}
    cols = [*langs, "enf", "noenf"]
    grid = np.full((len(pairs), len(cols)), np.nan)
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            g = 0.0 if p == base_name and c in langs else gains.get((p, c))
            grid[i, j] = np.nan if g is None else 100 * g
    limit = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.42 * len(pairs)), dpi=120)
    im = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            v = values.get((p, c))
            text = (
                f"{100 * v:.1f}"
                if v is not None
                else (f"{grid[i, j]:+.1f}" if np.isfinite(grid[i, j]) else "")
            )
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(pairs)), [p + (" (baseline)" if p == base_name else "")
                                      for p in pairs])  # fmt: skip
    ax.set_xlabel("language (enf/noenf: mean gain inside/outside the source's family)")
    ax.set_ylabel("layer pair (k, last)")
    ax.set_title(f"{task.name} {key}: {metric} (text) and gain over last layer (colour), "
                 f"source {source}", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, label=f"gain in {metric} (x100)")
    return save_figure(fig, path)  # wraps the title, which names the cache key, to fit

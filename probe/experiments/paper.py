"""`probe paper`: the seed paper's protocol (Chen et al. 2022, arXiv 2205.08497) in one command.

The paper fuses mBERT's last layer with one lower layer k (D_k) and reports, for XNLI,
PAWS-X, PAN-X NER and UD-POS, the last-layer baseline and D_k per task. This module is a
protocol, not a training loop: per task it runs `probe grid` (frozen, the default: heads on
the cached features, with the grid's matched baselines, seeds and intervals) or, with
`finetune`, one `probe finetune` per system (the baseline and each D_k), then puts every
task in one table in the paper's layout beside the published numbers. Every Δ is shown both
over the last layer and over the best single layer chosen on source dev, so "fusion helps"
is not read into "a lower layer is better".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import PairedBootstrap
from probe.data.tasks import Task, base_task_name, get_task
from probe.errors import ProbeError
from probe.experiments.base import RunOptions, RunResult, check_seeds, run_experiment
from probe.experiments.grid import GridConfig, dev_chosen
from probe.extract import CachePaths, ExtractOptions, ExtractSpec
from probe.results.gains import language_groups
from probe.results.intervals import delta_rows
from probe.results.items import ItemScores, ItemSet
from probe.results.render.paper import (
    BASELINE,
    CHOSEN,
    SINGLE,
    fused_name,
    metric_of,
    render_paper,
)
from probe.results.report import provenance, run_directory
from probe.results.rows import Row
from probe.results.table import Table

PAPER_TASKS = ("xnli", "pawsx", "panx", "udpos")


@dataclass(frozen=True)
class PaperConfig:
    """One `probe paper` run: the tasks, the k of D_k, frozen or fine-tuned, and the budgets
    a CPU run needs (each recorded in settings.json and the summary)."""

    spec: ExtractSpec
    tasks: tuple[str, ...] = PAPER_TASKS
    ks: tuple[int, ...] | None = None  # None: every lower layer
    finetune: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    max_train_words: int | None = None  # word tasks' training cap (frozen)
    max_train_pairs: int | None = None  # pair tasks' training cap
    max_train_sentences: int | None = None  # word tasks' training cap (--finetune)
    max_eval_sentences: int | None = None  # every evaluation split's cap
    max_steps: int | None = None  # fine-tuning: optimizer steps per system
    epochs: int | None = None  # fine-tuning: None = XTREME's default per task
    pair_pool: str = "first"
    n_boot: int = 1000
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)

    def __post_init__(self) -> None:
        check_seeds(self.seeds)
        if not self.tasks:
            raise ProbeError("--tasks needs at least one task")
        for name in self.tasks:
            task = get_task(name)
            if task.level not in ("word", "pair"):
                raise ProbeError(f"`probe paper` runs word and pair tasks; {name!r} is "
                                 f"{task.level}-level")  # fmt: skip
        if len(set(self.tasks)) != len(self.tasks):
            raise ProbeError(f"--tasks lists a task twice: {','.join(self.tasks)}")
        if self.ks is not None and (not self.ks or min(self.ks) < 0):
            raise ProbeError("--ks needs layers >= 0 (0 = the embeddings)")
        # Each cap is the unit its training loop samples in: words for the cached word heads,
        # sentences for fine-tuning (which samples whole sentences, no sizes).
        if self.finetune and self.max_train_words is not None:
            raise ProbeError("--finetune samples whole sentences: use --max-train-sentences, "
                             "not --max-train-words")  # fmt: skip
        if not self.finetune:
            given = [n for n, v in (("--max-steps", self.max_steps), ("--epochs", self.epochs),
                                    ("--max-train-sentences", self.max_train_sentences))
                     if v is not None]  # fmt: skip
            if given:
                raise ProbeError(f"{', '.join(given)}: fine-tuning options; add --finetune")

    def budgets(self) -> dict[str, Any]:
        """What makes a small run small: every cap, None where the run used all the data."""
        out: dict[str, Any] = {
            "max_train_words": self.max_train_words, "max_train_pairs": self.max_train_pairs,
            "max_eval_sentences": self.max_eval_sentences,
        }  # fmt: skip
        if self.finetune:
            out.update(max_train_sentences=self.max_train_sentences, max_steps=self.max_steps,
                       epochs=self.epochs)  # fmt: skip
        return out


@dataclass
class TaskRun:
    """One task of the protocol: its systems' per-seed score rows and item statistics."""

    task: Task
    source: str
    systems: dict[str, list[Row]]  # name -> per-seed, per-language score rows
    items: ItemSet
    directories: list[Path]
    chosen: dict[str, dict[int, int]]  # dev-chosen system -> {seed: the layer it chose}


def run_paper(config: PaperConfig, options: RunOptions | None = None) -> RunResult:
    """Run the protocol for every task, then write the table, CSV/JSON, figure, summary."""
    options = options or RunOptions()
    started = time.perf_counter()
    last = model_depth(config) - 1
    if config.ks is not None and max(config.ks) >= last:
        raise ProbeError(f"--ks {max(config.ks)}: D_k fuses a layer below the last ({last})")
    runs = [_run_task(name, config, options, last) for name in config.tasks]
    boot = PairedBootstrap(config.n_boot, seed=config.seeds[0])
    rows = [row for run in runs for row in _task_rows(run, boot)]
    table = Table(rows)
    settings: dict[str, Any] = {
        "command": "paper", "mode": "fine-tuned" if config.finetune else "frozen",
        "model": config.spec.model, "tasks": list(config.tasks),
        "ks": list(config.ks) if config.ks is not None else "every lower layer",
        "seeds": list(config.seeds), "budgets": config.budgets(),
        "pair_pool": config.pair_pool, "n_boot": config.n_boot,
        "extract": config.spec.settings(),
        "runs": {base_task_name(run.task.name): [str(d) for d in run.directories] for run in runs},
        "sources": {base_task_name(run.task.name): run.source for run in runs},
        # what each task's averages cover: its evaluation split, and the languages scored
        "eval_splits": {base_task_name(run.task.name): run.task.eval_split for run in runs},
        "provenance": provenance(config.seeds[0]),
    }  # fmt: skip
    key = runs[0].directories[0].parent.name  # the model's cache key, as every run's
    base = options.results_dir / "paper" / key
    directory = run_directory(base, f"paper-{settings['mode']}", settings,
                              volatile=("runs", "provenance", "seconds"))  # fmt: skip
    settings["seconds"] = round(time.perf_counter() - started, 1)
    table.write(directory, settings)
    summary = render_paper(table, settings, directory)
    (directory / "summary.txt").write_text(summary + "\n")
    return RunResult(table, directory, summary, settings, {"total": settings["seconds"]})


def _run_task(name: str, config: PaperConfig, options: RunOptions, last: int) -> TaskRun:
    task = get_task(name)
    pairs = task.level == "pair"
    if config.finetune:
        cap = config.max_train_pairs if pairs else config.max_train_sentences
        return _finetuned(task, config, options, cap, last)
    cap = config.max_train_pairs if pairs else config.max_train_words
    ks = config.ks
    grid = GridConfig(
        spec=config.spec, task=name, options=config.options, paths=config.paths,
        pairs="last" if ks is None else ";".join(f"{k},last" for k in ks),
        seeds=config.seeds, max_train_words=cap, max_eval_sentences=config.max_eval_sentences,
        pair_pool=config.pair_pool, n_boot=config.n_boot,
    )  # fmt: skip
    result = run_experiment("grid", grid, options)
    return _frozen_systems(result)


def _frozen_systems(result: RunResult) -> TaskRun:
    """The grid's systems as the paper names them: the baseline (the last layer through the
    head), each D_k, the best single layer and D_k chosen on source dev."""
    task = get_task(str(result.settings["task"]))
    source = str(result.settings["source"])
    rows = result.rows
    assert result.cache is not None, "the grid reads the cache"
    last = result.cache.n_layers - 1
    metric = metric_of(base_task_name(task.name), task.metric)
    per_seed = _scores(rows, metric)
    systems = {BASELINE: list(per_seed.filter(head="dlfa", layers=(last, last), config=""))}
    for k in sorted({r.layers[0] for r in per_seed.filter(head="dlfa", config="")
                     if len(r.layers) == 2 and r.layers[0] != r.layers[1]}):  # fmt: skip
        systems[fused_name(k)] = list(per_seed.filter(head="dlfa", layers=(k, last), config=""))
    for name in (SINGLE, CHOSEN):
        systems[name] = list(per_seed.filter(config=name))
    # The dev-chosen rows are copies of the chosen system's: their item statistics too (the
    # grid's own choice, made again on its per-seed rows; the grid keeps no aliases).
    originals = [r for r in rows if r.config not in (SINGLE, CHOSEN) and r.seed is not None]
    _, items = dev_chosen(task, originals, source, last, "dlfa", result.items)
    chosen = {name: {r.seed: int(r.value) for r in rows.filter(metric="chosen_layer", config=name)
                     if r.seed is not None}
              for name in (SINGLE, CHOSEN)}  # fmt: skip
    return TaskRun(task, source, systems, items, [result.directory], chosen)


def _finetuned(
    task: Task, config: PaperConfig, options: RunOptions, cap: int | None, last: int
) -> TaskRun:
    """One fine-tuning run per system: the last layer with a linear head, then D_k; D_k with
    k chosen per seed on the source dev score. The best single layer would be one more
    fine-tuning per layer: it is not run, and the table says so."""
    from probe.experiments.finetune import FinetuneConfig

    base = FinetuneConfig(
        model=config.spec.model, task=task.name, data_dir=config.paths.data_dir,
        cache_root=config.paths.cache_root, seeds=config.seeds, epochs=config.epochs,
        max_steps=config.max_steps, max_train_sentences=cap,
        max_eval_sentences=config.max_eval_sentences, pair_pool=config.pair_pool,
        device=config.options.device, precision=config.spec.compute_dtype,
        random_weights=config.spec.random_weights,
    )  # fmt: skip
    ks = tuple(range(last)) if config.ks is None else config.ks
    results: list[tuple[str, RunResult]] = [(BASELINE, run_experiment("finetune", base, options))]
    for k in ks:
        fused = dataclasses.replace(base, fuse_layer=k)
        results.append((fused_name(k), run_experiment("finetune", fused, options)))
    metric = metric_of(task.name, task.metric)
    systems, entries = {}, []
    for name, result in results:
        systems[name] = list(_scores(result.rows, metric))
        entries += result.items.entries()
    chosen, copies, aliases = _dev_choice(results[1:], task, metric, ItemSet(entries))
    systems[CHOSEN] = copies
    source = str(results[0][1].settings["source"])
    return TaskRun(task, source, systems, ItemSet([*entries, *aliases]),
                   [r.directory for _, r in results], {CHOSEN: chosen})  # fmt: skip


def _scores(rows: Table, metric: str) -> Table:
    """Per-seed, per-language evaluation scores (no dev, means, groups or sds)."""
    return rows.filter(metric=metric, subset="", group="", stat="", seed=lambda s: s is not None)


def _dev_choice(
    fused: Sequence[tuple[str, RunResult]], task: Task, metric: str, items: ItemSet
) -> tuple[dict[int, int], list[Row], list[ItemScores]]:
    """Per seed, the D_k run with the best source dev score: {seed: k}, copies of its score
    rows as "dlfa (dev)", and their item statistics (the chosen run's)."""
    chosen: dict[int, int] = {}
    copies: list[Row] = []
    aliases: list[ItemScores] = []
    dev = f"dev_{task.metric}"
    for seed in {r.seed for _, res in fused for r in res.rows if r.seed is not None}:
        scored = [(r.value, int(name[1:]), res) for name, res in fused
                  for r in res.rows.filter(metric=dev, subset="dev", seed=seed)]  # fmt: skip
        if not scored:
            continue
        _, k, res = max(scored, key=lambda t: (t[0], -t[1]))  # ties: the lower k
        chosen[seed] = k
        for r in _scores(res.rows, metric).filter(seed=seed):
            copy = dataclasses.replace(r, layer="dev", layers=(), config=CHOSEN)
            copies.append(copy)
            if r in items:
                aliases.append(ItemScores(copy, items.stats(r)))
    return chosen, copies, aliases


def model_depth(config: PaperConfig) -> int:
    """Hidden states of the model (embeddings + layers), read off its config file: the
    range of k is checked before any task runs."""
    from transformers import AutoConfig

    from probe.models import resolve_model

    ref = resolve_model(config.spec.model, config.paths.cache_root, config.spec.random_weights)
    return int(AutoConfig.from_pretrained(ref.path).num_hidden_layers) + 1


def _task_rows(run: TaskRun, boot: PairedBootstrap) -> list[Row]:
    """Per system: its score rows (per seed), the level averages over every scored language
    (XTREME's average, the source included) and over the targets, and every Δ over the
    baseline and over the best single layer chosen on dev, with intervals."""
    name = base_task_name(run.task.name)
    out: list[Row] = [Row("dlfa", system, run.source, "chosen_layer", float(k), task=name,
                          config=system, seed=seed)
                      for system, layers in run.chosen.items()
                      for seed, k in layers.items()]  # fmt: skip
    baseline, single = run.systems.get(BASELINE, []), run.systems.get(SINGLE, [])
    for system, rows in run.systems.items():
        if not rows:
            continue
        out += [dataclasses.replace(r, task=name, layer=system) for r in rows]
        out += _levels(name, system, rows, run.source)
        like = dataclasses.replace(rows[0], layer=system, task=name)
        for against, b in (("vs baseline", baseline), ("vs single (dev)", single)):
            if b and system not in (BASELINE, SINGLE) and b is not rows:
                deltas = delta_rows(rows, b, run.items, boot, run.source, like=like,
                                    config=against, with_all=True)  # fmt: skip
                out += [dataclasses.replace(d, task=name) for d in deltas]
    return out


def _levels(task: str, system: str, rows: Sequence[Row], source: str) -> list[Row]:
    """Seed-mean averages over every scored language (group "all", the source included, as
    XTREME averages) and over each language group (targets, enf, noenf)."""
    by_lang: dict[str, list[float]] = {}
    for r in rows:
        by_lang.setdefault(r.lang, []).append(r.value)
    means = {lang: float(np.mean(v)) for lang, v in by_lang.items()}
    like = Row(rows[0].head, system, "", rows[0].metric, 0.0, task=task, layers=rows[0].layers)
    scopes = {"all": list(means), **language_groups(source, list(means))}
    return [dataclasses.replace(like, lang=group, group=group,
                                value=float(np.mean([means[m] for m in members])))
            for group, members in scopes.items()]  # fmt: skip

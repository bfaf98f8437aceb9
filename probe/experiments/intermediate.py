"""`probe intermediate`: does training on other tasks first help zero-shot transfer of a target?

Compares, on the target task's languages, a head trained on the target alone ("none") with
the same head whose body was first trained on intermediate tasks: each one alone, and
growing sets of them, sequentially ("pos>udpos") or mixed ("pos+udpos"). Every head is a
shared body plus one classifier per task (`probe.heads.multitask`); only the body carries
over, so intermediate tasks may be word- or pair-level with any labels and source language.
Everything trains on cached features (fast); `--finetune` trains the encoder too
(`probe.experiments.intermediate_finetune`).

Any task in the registry can serve as an intermediate task: it needs only its registry entry
(level, labels, source language, splits). Outputs (per configuration x language, gains over
"none" per language, inside/outside the source's family and per family, a figure) follow the
other experiments: results.csv/json, settings.json, summary.txt, intermediate.png.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.metrics import score
from probe.data.languages import FAMILY, family
from probe.data.tasks import TASKS, Task, get_task
from probe.errors import ProbeError
from probe.experiments.grid import family_gains
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.multitask import Body
from probe.heads.registry import BODIES
from probe.results.report import Row, provenance, run_directory, write_table
from probe.train import Feed, TrainConfig, predict_proba
from probe.train.schedules import SCHEDULES, Schedule, StageData, StageResult, dev_accuracy
from probe.train.schedules import run_schedule as run_stages
from probe.train.splits import CachedSplit, as_data, opener, train_dev

log = logging.getLogger(__name__)

BASELINE = "none"


# --- which configurations -----------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """One way to reach the target: no intermediate task, one, or a set (sequential / mixed).

    Named "none", "pos", "pos>udpos" (pos, then udpos, then the target) or "pos+udpos"
    (pos and udpos batches interleaved, then the target).
    """

    via: tuple[str, ...]
    schedule: Schedule = "sequential"

    @property
    def name(self) -> str:
        if not self.via:
            return BASELINE
        return (">" if self.schedule == "sequential" else "+").join(self.via)


def resolve_via(spec: Sequence[str], target: Task, data_dir: Path | None) -> tuple[str, ...]:
    """The intermediate tasks: a comma list of registry names, or `all`.

    `all` means every word- or pair-level task in the registry other than the target whose
    source training split exists under the data directory, so a newly registered task joins
    without code changes here.
    """
    wanted = [x.strip() for item in spec for x in item.split(",") if x.strip()]
    if wanted == ["all"]:
        found = []
        for name in TASKS.names():
            task = get_task(name)
            if name == target.name or task.level not in ("word", "pair"):
                continue
            paths = task.locate(data_dir, task.default_source, task.train_split) if data_dir else ()
            if data_dir is None or all(p.is_file() for p in paths):
                found.append(name)
        if not found:
            raise ProbeError(f"--via all found no intermediate task with data under {data_dir}")
        return tuple(found)
    if not wanted:
        raise ProbeError("--via needs at least one task (a comma list, or all)")
    for name in wanted:
        task = get_task(name)  # unknown names fail with the close matches
        if name == target.name:
            raise ProbeError(f"--via {name}: the target task cannot be its own intermediate task")
        if task.level not in ("word", "pair"):
            raise ProbeError(
                f"--via {name}: a {task.level} task has no labels to train on; use a word or "
                "pair task"
            )
    if len(set(wanted)) != len(wanted):
        raise ProbeError(f"--via lists a task twice: {','.join(wanted)}")
    return tuple(wanted)


def plan_configurations(
    via: Sequence[str], sets: str | None, schedules: Sequence[str]
) -> list[Configuration]:
    """ "none", every single task, then the sets of `sets` under each schedule.

    sets: None -> the growing prefixes of `via` of size 2, 3, ..., all; otherwise a comma
    list whose items are prefix sizes ("3"), "all", or explicit sets joined by '+'
    ("pos+panx"). Sets of one task equal that single task and are not repeated.
    """
    for s in schedules:
        if s not in SCHEDULES:
            raise ProbeError(f"--schedule must be one of {', '.join(SCHEDULES)} or both, not {s!r}")
    groups: list[tuple[str, ...]] = []
    items = [str(n) for n in range(2, len(via) + 1)] if sets is None else sets.split(",")
    for item in (x.strip() for x in items if x.strip()):
        if item == "all":
            groups.append(tuple(via))
        elif item.isdigit():
            size = int(item)
            if not 1 <= size <= len(via):
                raise ProbeError(f"--sets {item}: a set size is 1..{len(via)} (tasks in --via)")
            groups.append(tuple(via[:size]))
        else:
            group = tuple(x.strip() for x in item.split("+") if x.strip())
            unknown = [t for t in group if t not in via]
            if unknown or len(set(group)) != len(group) or not group:
                raise ProbeError(
                    f"--sets {item!r}: expected a size, all, or distinct tasks of --via joined "
                    f"by '+' (--via is {','.join(via)})"
                )
            groups.append(group)
    plan = [Configuration(()), *(Configuration((t,)) for t in via)]
    for group in groups:
        if len(group) > 1:
            plan += [Configuration(group, s) for s in schedules]  # type: ignore[arg-type]
    return list({c.name: c for c in plan}.values())


# --- the run ------------------------------------------------------------------------------

# The heads' training on cached features. lr 5e-3: the mlp body on 15-20k MiniLM words
# reaches early stopping in 10-20 epochs; at 2e-3 it was still improving at epoch 30, and an
# unconverged "none" makes any warm start look like a gain.
INTERMEDIATE_TRAINING = TrainConfig(lr=5e-3)


@dataclass(frozen=True)
class IntermediateConfig:
    """One `probe intermediate` run on cached features; `spec` names the target's cache
    (the intermediate tasks' splits are extracted under the same key, in the same call)."""

    spec: ExtractSpec
    task: str  # the target
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    via: tuple[str, ...] = ("all",)
    sets: str | None = None  # None: growing prefixes of via (2, 3, ..., all)
    schedules: tuple[str, ...] = SCHEDULES
    source: str | None = None  # the target's source language (default: the task's)
    body: str = "mlp"
    layer: int | None = None  # see heads.registry.BodyKind.layers
    width: int = 256
    reduction: int = 4
    results_dir: Path = Path("results")
    train: TrainConfig = INTERMEDIATE_TRAINING
    seeds: tuple[int, ...] = (0,)
    dev_fraction: float = 0.1
    max_train_words: int | None = None  # per task's training split (pairs for pair tasks)
    max_via_sentences: int | None = None  # extraction cap on the intermediate tasks' splits


@dataclass
class IntermediateResult:
    rows: list[Row]
    directory: Path
    table: str
    seconds: float
    extract_seconds: float
    configurations: list[str]


@dataclass(eq=False)
class _Split:
    """One loaded split: the data container (layers in memory) and its cache split."""

    data: Any  # WordData or PairData
    split: CachedSplit


def run_intermediate(config: IntermediateConfig, progress: bool = True) -> IntermediateResult:
    """Extract what is missing, train every configuration for every seed, write the results."""
    target = get_task(config.task)
    _check_level(target, "target")
    source = config.source or target.default_source
    target.check_language(source)
    if not config.seeds:
        raise ProbeError("--seeds needs at least one seed")
    data_dir = config.paths.data_dir
    via = resolve_via(config.via, target, data_dir)
    plan = plan_configurations(via, config.sets, config.schedules)

    t0 = time.perf_counter()
    cache = _extract_all(config, target, source, via, progress)
    key, langs = cache.key, list(cache.languages(target.name, source))
    extract_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    root = cache.root
    open_target = opener(root, key, target)
    train, dev = train_dev(target, open_target, source, config.max_train_words,
                           config.dev_fraction, config.seeds[0])  # fmt: skip
    layers = BODIES.get(config.body).layers(train.reader.n_layers, config.layer)
    train_data = as_data(target, train, list(layers))
    hidden = int(train_data.hidden)
    target_stage = _stage(target, _Split(train_data, train),
                          _Split(as_data(target, dev, list(layers)), dev), layers)  # fmt: skip
    evals = _eval_splits(target, open_target, langs, layers)
    via_stages = {name: _via_stage(get_task(name), root, key, layers, config) for name in via}

    def new_body() -> Body:
        return BODIES.get(config.body).build(hidden, layers, config.width, config.reduction)

    per_seed: list[list[Row]] = []
    stage_seconds: dict[str, float] = {}
    unconverged: list[str] = []  # stages whose dev loss still fell at the last epoch
    from tqdm.auto import tqdm

    total = len(plan) * len(config.seeds)
    with tqdm(total=total, desc=f"intermediate {target.name}", unit="config",
              disable=not progress) as bar:  # fmt: skip
        for seed in config.seeds:
            train_cfg = replace(config.train, seed=seed)
            memo: dict[tuple[tuple[str, ...], ...], StageResult] = {}
            rows: list[Row] = []
            for conf in plan:
                began = time.perf_counter()  # shared stages (memo) count once, where trained
                stages = run_stages(new_body, [via_stages[t] for t in conf.via], target_stage,
                                    conf.schedule, train_cfg, memo)  # fmt: skip
                spent = time.perf_counter() - began
                stage_seconds[conf.name] = stage_seconds.get(conf.name, 0.0) + spent
                unconverged += [f"{conf.name} ({'>'.join(s.tasks)}, seed {seed})" for s in stages
                                if s.best_epoch == train_cfg.max_epochs]  # fmt: skip
                rows += _score_configuration(config.body, conf, stages, target, source, evals,
                                             via_stages, layers)  # fmt: skip
                bar.update()
            rows += family_gains(target, rows, source, BASELINE)
            rows += per_family_gains(target, rows, source)
            per_seed.append(rows)
    for item in (train, dev, *(e.split for e in evals.values())):
        item.reader.close()
    seconds = time.perf_counter() - t1
    rows = average_seeds(per_seed)
    if unconverged:
        log.warning("still improving at the last epoch (raise --max-epochs or --lr): %s",
                    "; ".join(dict.fromkeys(unconverged)))  # fmt: skip

    settings = {
        "command": "intermediate", "mode": "head", "target": target.name,
        "model": config.spec.model, "source": source, "languages": list(evals),
        "cache_key": key, "via": list(via),
        "via_sources": {t: get_task(t).default_source for t in via},
        "configurations": [c.name for c in plan], "schedules": list(config.schedules),
        "body": config.body, "layers": list(layers), "width": config.width,
        "reduction": config.reduction, "train": asdict(config.train),
        "seeds": list(config.seeds), "max_train_words": config.max_train_words,
        "max_via_sentences": config.max_via_sentences,
        "max_sentences": config.max_sentences,
        "train_split": target.train_split, "eval_split": target.eval_split,
        "dev_split": target.dev_split or f"{config.dev_fraction:.0%} of {target.train_split}",
        "unconverged_stages": list(dict.fromkeys(unconverged)),
        "stage_seconds": {k: round(v, 2) for k, v in stage_seconds.items()},
        "seconds": round(seconds, 3), "extract_seconds": round(extract_seconds, 3),
        "provenance": provenance(config.seeds[0]),
    }  # fmt: skip
    directory = run_directory(
        config.results_dir / target.name / key, f"intermediate-{config.body}-{source}", settings,
        volatile=("stage_seconds", "seconds", "extract_seconds", "provenance"),
    )  # fmt: skip
    table = write_outputs(rows, directory, settings, target, source, list(evals), key)
    return IntermediateResult(rows, directory, table, seconds, extract_seconds,
                              [c.name for c in plan])  # fmt: skip


def _check_level(task: Task, role: str) -> None:
    if task.level not in ("word", "pair"):
        raise ProbeError(
            f"{role} task {task.name!r} is a {task.level} task with no labels; use a word task "
            "(pos, udpos, ner, panx) or a pair task (xnli, pawsx)"
        )


def _extract_all(
    config: IntermediateConfig, target: Task, source: str, via: Sequence[str], progress: bool
) -> CacheHandle:
    """The target (every language) and each intermediate task's source splits, in one
    extraction call: one key, one encoder load."""
    requests = [ExtractRequest(target.name, config.langs, None, source, config.max_sentences)]
    cap = config.max_via_sentences or config.max_sentences
    for name in via:
        task = get_task(name)
        splits = tuple(s for s in (task.train_split, task.dev_split) if s)
        requests.append(ExtractRequest(name, (task.default_source,), splits,
                                       task.default_source, cap))  # fmt: skip
    return ensure_cached(config.spec, requests, config.options, config.paths, progress=progress)


def _view(task: Task, data: Any, layers: Sequence[int]) -> Feed:
    """Word tasks: padded sentences of the body's layers; pair tasks: both sides, stacked."""
    return data.sentences(tuple(layers)) if task.level == "word" else data.pairs(tuple(layers))


def _stage(task: Task, train: _Split, dev: _Split, layers: Sequence[int]) -> StageData:
    return StageData(task.name, task.level, len(task.labels),  # type: ignore[arg-type]
                     _view(task, train.data, layers), _view(task, dev.data, layers))  # fmt: skip


def _via_stage(
    task: Task, root: Path, key: str, layers: Sequence[int], config: IntermediateConfig
) -> StageData:
    """An intermediate task's source train/dev data, read into memory once for every run."""
    open_split = opener(root, key, task)
    train, dev = train_dev(task, open_split, task.default_source, config.max_train_words,
                           config.dev_fraction, config.seeds[0])  # fmt: skip
    for split in (train, dev):
        if np.any(split.labels < 0):
            raise ProbeError(
                f"{task.name}/{task.default_source}: the training data has unlabelled items; "
                "it cannot serve as an intermediate task"
            )
    stage = _stage(task, _Split(as_data(task, train, list(layers)), train),
                   _Split(as_data(task, dev, list(layers)), dev), layers)  # fmt: skip
    train.reader.close()
    dev.reader.close()
    return stage


def _eval_splits(
    task: Task, open_split: Callable[[str, str], CachedSplit], langs: Sequence[str],
    layers: Sequence[int],
) -> dict[str, _Split]:  # fmt: skip
    """Every language's labelled evaluation split, in memory; unlabelled ones are skipped."""
    out = {}
    for lang in langs:
        split = open_split(lang, task.eval_split)
        if np.any(split.labels < 0):
            log.warning("%s/%s/%s has unlabelled rows: not scored", task.name, lang,
                        task.eval_split)  # fmt: skip
            split.reader.close()
            continue
        out[lang] = _Split(as_data(task, split, list(layers)), split)
    if not out:
        raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} split")
    return out


def _score_configuration(
    body: str, conf: Configuration, stages: list[StageResult], target: Task, source: str,
    evals: dict[str, _Split], via: dict[str, StageData], layers: Sequence[int],
) -> list[Row]:  # fmt: skip
    """The target head's scores on every language, plus how each stage trained."""
    name = conf.name
    final = stages[-1]
    head = final.task_head(target.name)
    rows = [Row(body, name, source, "best_epoch", float(final.best_epoch))]
    for lang, item in evals.items():
        probs = predict_proba(head, _view(target, item.data, layers))
        offsets = item.data.offsets if target.level == "word" else None
        for metric, value in score(target.metric, probs, item.data.labels, offsets=offsets,
                                   label_names=target.labels).items():  # fmt: skip
            rows.append(Row(body, name, lang, metric, value))
    for stage in stages[:-1]:
        for task_name in stage.tasks:
            acc = dev_accuracy(stage, via[task_name])
            if acc is not None:
                src = get_task(task_name).default_source
                rows.append(Row(body, name, src, f"{task_name}_dev_accuracy", acc))
    return rows


# --- aggregation --------------------------------------------------------------------------


def per_family_gains(task: Task, rows: Sequence[Row], source: str) -> list[Row]:
    """Mean gain per language family of the target languages (lang = the family's name).

    Complements `family_gains`' enf/noenf split, which is empty on one side when no target
    shares the source's family (MasakhaNER's source pcm is a creole of its own).
    """
    metric = f"gain_{task.metric}"
    out = []
    for conf in dict.fromkeys(r.layer for r in rows if r.metric == metric):
        by_family: dict[str, list[float]] = {}
        head = ""
        for r in rows:
            if r.layer == conf and r.metric == metric and r.lang != source:
                fam = family(r.lang)
                if fam is not None:
                    by_family.setdefault(fam, []).append(r.value)
                    head = r.head
        for fam, gains in by_family.items():
            out.append(Row(head, conf, fam, metric, float(np.mean(gains))))
    return out


def average_seeds(per_seed: Sequence[Sequence[Row]]) -> list[Row]:
    """Mean of every number over seeds; with several seeds also its standard deviation
    (metric name + "_sd", ddof=1) for the scores and gains, so a gain can be read against
    seed noise."""
    values: dict[tuple[str, str, str, str], list[float]] = {}
    for rows in per_seed:
        for r in rows:
            values.setdefault((r.head, r.layer, r.lang, r.metric), []).append(r.value)
    out = []
    for (head, layer, lang, metric), vals in values.items():
        out.append(Row(head, layer, lang, metric, float(np.mean(vals))))
        if len(per_seed) > 1 and not metric.endswith("_dev_accuracy") and metric != "best_epoch":
            out.append(Row(head, layer, lang, f"{metric}_sd", float(np.std(vals, ddof=1))))
    return out


# --- outputs ------------------------------------------------------------------------------


def write_outputs(
    rows: list[Row], directory: Path, settings: dict[str, Any], task: Task, source: str,
    langs: list[str], key: str,
) -> str:  # fmt: skip
    """results.csv/json, settings.json, summary.txt and intermediate.png; returns the table."""
    write_table(rows, directory, settings)
    table = intermediate_table(task, rows, source, langs)
    (directory / "summary.txt").write_text(table + "\n")
    plot_intermediate(task, rows, source, langs, directory / "intermediate.png", key)
    return table


def _groups(task: Task, rows: Sequence[Row]) -> list[str]:
    """Gain columns present in the rows: targets, enf, noenf, then each family."""
    metric = f"gain_{task.metric}"
    present = dict.fromkeys(r.lang for r in rows if r.metric == metric)
    fixed = ["targets", "enf", "noenf"]
    families = [f for f in present if f in FAMILY.values()]
    return [g for g in fixed if g in present] + families


def intermediate_table(task: Task, rows: Sequence[Row], source: str, langs: list[str]) -> str:
    """Main metric x100 per configuration and language, the target mean, then the gains."""
    metric = task.metric
    confs = list(dict.fromkeys(r.layer for r in rows if r.metric == metric))
    values = {(r.layer, r.lang): r.value for r in rows if r.metric == metric}
    gains = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}"}
    sds = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}_sd"}
    groups = _groups(task, rows)
    targets = [lang for lang in langs if lang != source]
    name_width = max(8, *(len(c) + 1 for c in confs))
    cols = [*langs, "mean"]
    width = max(7, *(len(c) + 1 for c in cols))
    gwidths = [max(8, len(_short(g)) + 2) for g in groups]
    head = f"{'config':<{name_width}}" + "".join(f"{c:>{width}}" for c in cols)
    head += "".join(f"{'Δ' + _short(g):>{w}}" for g, w in zip(groups, gwidths, strict=True))
    lines = [
        f"{task.name}: {metric} x100 per configuration; source {source}; mean = over target "
        f"languages; Δ = gain over '{BASELINE}' (targets, inside/outside the source's family, "
        "per family)",
        head,
    ]
    for conf in confs:
        mean = [values[(conf, t)] for t in targets if (conf, t) in values]
        line = f"{conf:<{name_width}}"
        line += "".join(_cell(values.get((conf, c)), width) for c in langs)
        line += _cell(float(np.mean(mean)) if mean else None, width)
        line += "".join(_cell(gains.get((conf, g)), w, signed=True)
                        for g, w in zip(groups, gwidths, strict=True))  # fmt: skip
        lines.append(line)
    if sds:
        spread = [f"{c} {100 * sds[(c, 'targets')]:.1f}" for c in confs if (c, "targets") in sds]
        lines.append("seed sd of Δtargets: " + ", ".join(spread))
    return "\n".join(lines)


def _short(group: str) -> str:
    return group if len(group) <= 12 else group[:11] + "."


def _cell(value: float | None, width: int, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return f"{'-':>{width}}"
    return f"{100 * value:>+{width}.1f}" if signed else f"{100 * value:>{width}.1f}"


def plot_intermediate(
    task: Task, rows: Sequence[Row], source: str, langs: list[str], path: Path, key: str
) -> Path:
    """Left: score per configuration (bar = target mean, dots = languages); right: gain over
    'none' per configuration inside/outside the source's family and per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    metric = task.metric
    confs = list(dict.fromkeys(r.layer for r in rows if r.metric == metric))
    values = {(r.layer, r.lang): r.value for r in rows if r.metric == metric}
    gains = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}"}
    sds = {(r.layer, r.lang): r.value for r in rows if r.metric == f"gain_{metric}_sd"}
    targets = [lang for lang in langs if lang != source]
    groups = [g for g in _groups(task, rows) if g != "targets"] or ["targets"]
    x = np.arange(len(confs))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(confs) + 4), 4.6),
                                      dpi=120)  # fmt: skip
    means = [np.mean([values[(c, t)] for t in targets if (c, t) in values] or [np.nan])
             for c in confs]  # fmt: skip
    left.bar(x, 100 * np.asarray(means), color="#9bb7d4", label="mean over targets")
    markers = "osD^v<>ph*"
    for j, lang in enumerate(langs):
        ys = [100 * values.get((c, lang), np.nan) for c in confs]
        left.plot(x, ys, linestyle="none", marker="x" if lang == source else markers[j % 10],
                  ms=5, label=f"{lang} (source)" if lang == source else lang)  # fmt: skip
    shown = [v for v in values.values() if np.isfinite(v)]
    if shown:
        left.set_ylim(max(0.0, 100 * min(shown) - 10), min(100.0, 100 * max(shown) + 5))
    left.set_xticks(x, confs, rotation=30, ha="right")
    left.set_ylabel(f"{metric} x100")
    left.set_title(f"{task.name}: score per configuration", fontsize=9)
    left.legend(fontsize=7, ncol=2)
    left.grid(axis="y", alpha=0.3)
    others = [c for c in confs if c != BASELINE]
    width = 0.8 / max(1, len(groups))
    for j, group in enumerate(groups):
        ys = [100 * gains.get((c, group), np.nan) for c in others]
        err = [100 * sds.get((c, group), 0.0) for c in others] if sds else None
        right.bar(np.arange(len(others)) + (j - (len(groups) - 1) / 2) * width, ys, width,
                  yerr=err, capsize=2, label=group)  # fmt: skip
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(np.arange(len(others)), others, rotation=30, ha="right")
    right.set_ylabel(f"gain over '{BASELINE}' in {metric} x100")
    right.set_title("gain by language group (enf/noenf: in/outside the source's family)",
                    fontsize=9)  # fmt: skip
    right.legend(fontsize=7)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(f"intermediate tasks -> {task.name} (source {source}), {key}", fontsize=9)
    return save_figure(fig, path)

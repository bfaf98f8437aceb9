"""`probe calibration`: how well zero-shot confidences match accuracy, per language and layer.

Two training regimes are compared: an English-only head (the source language's training
split) and a multilingual head (the training splits of several languages pooled; with
`match_size` capped to the English head's word count, split evenly, so diversity rather
than data size is what differs). For each regime: a linear probe per layer and DLFA
(last, k). Every head is scored on every language's evaluation split: accuracy (or the task
metric), ECE, NLL and a reliability diagram. Temperature scaling: one T per head fitted by
NLL on that head's own dev data (the source dev split(s), never a target), then ECE/NLL
again on every language. Languages in neither regime's training set are the held-out
targets the two regimes are compared on.

Result rows (results.csv): head `<kind>@<regime>` (`linear@en`, `dlfa@en+de+fr`), layer
(`3` or `3,6` for DLFA), lang, metric in {task metric, accuracy, ece, nll, ece_ts, nll_ts};
on lang `dev`: `temperature`, `nll`/`nll_ts` (the fit) and `train_words`; on lang
`held-out`: the mean over held-out languages. reliability.json holds every diagram's bins.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.calibration import (
    apply_temperature,
    fit_temperature,
    log_probs,
    nll,
    reliability,
)
from probe.analysis.metrics import score
from probe.data.tasks import Task, expand_languages, get_task
from probe.errors import ProbeError
from probe.extract import (
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.results.report import Row, provenance, run_directory, text_table, write_table
from probe.train import TrainConfig
from probe.train.select import (
    DLFA_TRAINING,
    FuseLayer,
    HeadSpec,
    fit_dlfa,
    n_words,
    predict,
    resolve_fuse_layer,
    train_head,
)
from probe.train.splits import CachedSplit, opener, train_dev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationConfig:
    """One `probe calibration` run; `langs` are the evaluation languages."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # the English-only regime's language (default: the task's)
    pooled: tuple[str, ...] = ("en", "de", "fr")  # the multilingual regime's languages
    match_size: bool = True
    fuse_layer: FuseLayer = "best"
    reduction: int = 4
    n_bins: int = 15
    results_dir: Path = Path("results")
    train: TrainConfig = field(default_factory=TrainConfig)
    dlfa_train: TrainConfig = DLFA_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None


@dataclass
class CalibrationResult:
    rows: list[Row]
    directory: Path
    table: str
    diagrams: dict[str, Any]
    seconds: float
    extract_seconds: float
    settings: dict[str, Any]


@dataclass
class _Regime:
    """One training regime: its name, languages, and pooled train and dev splits."""

    name: str
    langs: tuple[str, ...]
    train: list[CachedSplit]
    dev: list[CachedSplit]


def run_calibration(config: CalibrationConfig, progress: bool = True) -> CalibrationResult:
    """Extract what is missing, train both regimes' heads, score, temperature-scale, write."""
    task = get_task(config.task)
    if task.level != "word":
        raise ProbeError(
            f"calibration trains token-level heads (linear, DLFA); {task.name!r} is "
            f"{task.level}-level. Use a word-level task (pos, ner, panx, udpos)."
        )
    source = config.source or task.default_source
    pooled = tuple(dict.fromkeys(config.pooled))
    for lang in (source, *pooled):
        task.check_language(lang)
    if len(pooled) < 2:
        raise ProbeError(f"--pooled needs two or more languages, got {','.join(pooled)}")
    data_dir = config.paths.require_data_dir("calibration")
    train_langs = tuple(dict.fromkeys((source, *pooled)))
    eval_langs = tuple(
        dict.fromkeys((*train_langs, *expand_languages(task, config.langs, data_dir)))
    )
    held_out = [lang for lang in eval_langs if lang not in train_langs]

    t0 = time.perf_counter()
    splits = tuple(
        dict.fromkeys(s for s in (task.train_split, task.dev_split, task.eval_split) if s)
    )
    cap = config.max_sentences
    requests = [ExtractRequest(task.name, train_langs, splits, max_sentences=cap)]
    if held_out:
        requests.append(
            ExtractRequest(task.name, tuple(held_out), (task.eval_split,), max_sentences=cap)
        )
    cache = ensure_cached(config.spec, requests, config.options, config.paths, progress=progress)
    key = cache.key
    extract_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    open_split = opener(cache.root, key, task)
    regimes = _regimes(task, open_split, source, pooled, config)
    evals = {lang: open_split(lang, task.eval_split) for lang in eval_langs}
    n_layers = cache.n_layers
    fuse = resolve_fuse_layer(config.fuse_layer, n_layers)
    rows: list[Row] = []
    diagrams: dict[str, Any] = {}
    from tqdm.auto import tqdm

    steps = len(regimes) * (n_layers + (0 if fuse is None else 1))
    try:
        with tqdm(
            total=steps, desc=f"calibration {task.name}", unit="head", disable=not progress
        ) as bar:
            for regime in regimes:
                rows.append(
                    Row(
                        f"linear@{regime.name}",
                        "-",
                        "dev",
                        "train_words",
                        float(n_words(regime.train)),
                    )
                )
                for layer in range(n_layers):
                    spec = HeadSpec.linear(layer)
                    result = train_head(
                        spec, regime.train, regime.dev, len(task.labels), config.train
                    )
                    rows += _evaluate(task, spec, result.head, regime, evals, config, diagrams)
                    bar.update()
                if fuse is not None:
                    spec, result, _ = fit_dlfa(
                        fuse,
                        n_layers,
                        regime.train,
                        regime.dev,
                        len(task.labels),
                        config.dlfa_train,
                        config.reduction,
                    )
                    rows += _evaluate(task, spec, result.head, regime, evals, config, diagrams)
                    bar.update()
    finally:
        for split in {id(s): s for r in regimes for s in (*r.train, *r.dev)}.values():
            split.reader.close()
        for split in evals.values():
            split.reader.close()
    rows += _held_out_means(task, rows, held_out)
    seconds = time.perf_counter() - t1

    settings = {
        "command": "calibration",
        "task": task.name,
        "model": config.spec.model,
        "source": source,
        "pooled": list(pooled),
        "match_size": config.match_size,
        "languages": list(eval_langs),
        "held_out": held_out,
        "cache_key": key,
        "fuse_layer": config.fuse_layer,
        "reduction": config.reduction,
        "n_bins": config.n_bins,
        "train": asdict(config.train),
        "dlfa_train": asdict(config.dlfa_train),
        "train_split": task.train_split,
        "eval_split": task.eval_split,
        "dev_split": task.dev_split or f"{config.dev_fraction:.0%} of {task.train_split}",
        "dev_fraction": config.dev_fraction,
        "max_train_words": config.max_train_words,
        "max_sentences": config.max_sentences,
        "temperature_fit": "one T per head, NLL on that head's own dev split(s), LBFGS on log T",
        "seconds": round(seconds, 3),
        "extract_seconds": round(extract_seconds, 3),
        "provenance": provenance(config.train.seed),
    }
    directory = run_directory(
        config.results_dir / task.name / key,
        f"calibration-{source}",
        settings,
        volatile=("seconds", "extract_seconds", "provenance"),
    )
    write_table(rows, directory, settings)
    (directory / "reliability.json").write_text(json.dumps(diagrams, indent=1))
    table = summary(task, rows, [r.name for r in regimes], list(eval_langs), held_out, n_layers)
    (directory / "summary.txt").write_text(table + "\n")
    plot_reliability(diagrams, [r.name for r in regimes], list(eval_langs), directory, key)
    plot_ece(task, rows, [r.name for r in regimes], list(eval_langs), n_layers, directory, key)
    return CalibrationResult(rows, directory, table, diagrams, seconds, extract_seconds, settings)


def _regimes(
    task: Task, open_split: Any, source: str, pooled: tuple[str, ...], config: CalibrationConfig
) -> list[_Regime]:
    """English-only (the source) and pooled; pooled is size-matched to the source if asked."""
    seed = config.train.seed
    tr, dv = train_dev(task, open_split, source, config.max_train_words, config.dev_fraction, seed)
    regimes = [_Regime(source, (source,), [tr], [dv])]
    cap = config.max_train_words
    if config.match_size:
        cap = max(1, n_words([tr, dv]) // len(pooled))
    trains, devs = [], []
    for lang in pooled:
        t, d = train_dev(task, open_split, lang, cap, config.dev_fraction, seed)
        trains.append(t)
        devs.append(d)
    regimes.append(_Regime("+".join(pooled), pooled, trains, devs))
    return regimes


def _evaluate(
    task: Task,
    spec: HeadSpec,
    head: Any,
    regime: _Regime,
    evals: dict[str, CachedSplit],
    config: CalibrationConfig,
    diagrams: dict[str, Any],
) -> list[Row]:
    """Fit T on the regime's dev data, then score every language before and after scaling."""
    name = f"{spec.kind}@{regime.name}"
    dev_probs = predict(spec, head, regime.dev)
    dev_gold = np.concatenate([d.labels for d in regime.dev])
    temperature = fit_temperature(log_probs(dev_probs), dev_gold)
    dev_scaled = apply_temperature(log_probs(dev_probs), temperature)
    rows = [
        Row(name, spec.name, "dev", "temperature", temperature),
        Row(name, spec.name, "dev", "nll", nll(dev_probs, dev_gold)),
        Row(name, spec.name, "dev", "nll_ts", nll(dev_scaled, dev_gold)),
    ]
    for lang, split in evals.items():
        probs = predict(spec, head, [split])
        scaled = apply_temperature(log_probs(probs), temperature)
        for metric, value in score(
            task.metric, probs, split.labels, offsets=split.offsets, label_names=task.labels
        ).items():
            rows.append(Row(name, spec.name, lang, metric, value))
        before = reliability(probs, split.labels, config.n_bins)
        after = reliability(scaled, split.labels, config.n_bins)
        rows += [
            Row(name, spec.name, lang, "ece_ts", after.ece),
            Row(name, spec.name, lang, "nll", nll(probs, split.labels)),
            Row(name, spec.name, lang, "nll_ts", nll(scaled, split.labels)),
        ]
        diagrams.setdefault(name, {}).setdefault(spec.name, {})[lang] = {
            "ece": before.ece,
            "ece_ts": after.ece,
            "temperature": temperature,
            "before": before.as_dict(),
            "after": after.as_dict(),
        }
    return rows


def _held_out_means(task: Task, rows: list[Row], held_out: list[str]) -> list[Row]:
    """The mean of each (head, layer, metric) over the held-out languages."""
    if not held_out:
        return []
    metrics = {task.metric, "accuracy", "ece", "ece_ts", "nll", "nll_ts"}
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if r.lang in held_out and r.metric in metrics:
            groups.setdefault((r.head, r.layer, r.metric), []).append(r.value)
    return [
        Row(h, layer, "held-out", m, float(np.mean(v)))
        for (h, layer, m), v in groups.items()
        if len(v) == len(held_out)
    ]


# --- output ------------------------------------------------------------------------------------


def _names(rows: list[Row], head: str) -> list[str]:
    return list(dict.fromkeys(r.layer for r in rows if r.head == head and r.layer != "-"))


def summary(
    task: Task,
    rows: list[Row],
    regimes: list[str],
    langs: list[str],
    held_out: list[str],
    n_layers: int,
) -> str:
    """ECE before/after temperature scaling per regime, then the regimes on held-out targets."""
    cells = {(r.head, r.layer, r.lang, r.metric): r.value for r in rows}
    lines = []
    for regime in regimes:
        words = cells.get((f"linear@{regime}", "-", "dev", "train_words"), float("nan"))
        temps: list[str] = []
        for metric, what in (("ece", "ECE"), ("ece_ts", "ECE after temperature scaling")):
            table: dict[tuple[str, str], float] = {}
            names = []
            temps = []
            for kind in ("linear", "dlfa"):
                head = f"{kind}@{regime}"
                for layer in _names(rows, head):
                    name = layer if kind == "linear" else f"D{layer}"
                    names.append(name)
                    temps.append(f"{name} {cells[(head, layer, 'dev', 'temperature')]:.2f}")
                    for lang in langs:
                        if (head, layer, lang, metric) in cells:
                            table[(name, lang)] = cells[(head, layer, lang, metric)]
            lines += [
                f"{what} x100, heads trained on {regime} ({int(words):,} words; D = DLFA k,last)",
                text_table(names, langs, table),
                "",
            ]
        lines += [f"temperature T fitted on the {regime} dev data: {', '.join(temps)}", ""]
    if held_out:
        names = [*map(str, range(n_layers))]
        if _names(rows, f"dlfa@{regimes[0]}"):
            names.append("dlfa")
        for scale, digits, what, metrics in (
            (
                100.0,
                1,
                f"{task.metric}, ECE, ECE after T (x100)",
                (
                    (task.metric, "acc" if task.metric == "accuracy" else "F1"),
                    ("ece", "ECE"),
                    ("ece_ts", "ECE-T"),
                ),
            ),
            (1.0, 3, "NLL, NLL after T (nats)", (("nll", "NLL"), ("nll_ts", "NLL-T"))),
        ):
            cols, table = [], {}
            for metric, label in metrics:
                for regime in regimes:
                    col = f"{label}:{regime}"
                    cols.append(col)
                    for kind in ("linear", "dlfa"):
                        for layer in _names(rows, f"{kind}@{regime}"):
                            value = cells.get((f"{kind}@{regime}", layer, "held-out", metric))
                            if value is not None:
                                table[(layer if kind == "linear" else "dlfa", col)] = value
            lines += [
                f"held-out targets ({', '.join(held_out)}), mean {what}, per regime",
                text_table(names, cols, table, scale=scale, digits=digits),
                "",
            ]
    return "\n".join(lines).rstrip()


def _bars(ax: Any, rel: dict[str, Any], color: str, label: str, filled: bool) -> None:
    edges = np.asarray(rel["edges"])
    acc = np.asarray([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    if filled:
        ax.bar(
            centres,
            np.nan_to_num(acc),
            width=np.diff(edges),
            color=color,
            alpha=0.55,
            edgecolor="none",
            label=label,
        )
    else:
        ax.plot(centres, acc, ".-", color=color, ms=3, lw=1, label=label)


def plot_reliability(
    diagrams: dict[str, Any], regimes: list[str], langs: list[str], directory: Path, key: str
) -> list[Path]:
    """Per regime, a grid of reliability diagrams: languages x heads (layers, then DLFA).
    Bars: accuracy per confidence bin before scaling; line: after temperature scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    paths = []
    for regime in regimes:
        heads = [
            (h, layer)
            for h in (f"linear@{regime}", f"dlfa@{regime}")
            for layer in diagrams.get(h, {})
        ]
        fig, axes = plt.subplots(
            len(langs),
            len(heads),
            dpi=90,
            squeeze=False,
            figsize=(1.9 * len(heads) + 0.6, 1.9 * len(langs) + 0.6),
            sharex=True,
            sharey=True,
        )
        for i, lang in enumerate(langs):
            for j, (head, layer) in enumerate(heads):
                ax = axes[i, j]
                entry = diagrams[head][layer][lang]
                ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
                _bars(ax, entry["before"], "tab:blue", "before", True)
                _bars(ax, entry["after"], "tab:red", "after T", False)
                ax.text(
                    0.03,
                    0.97,
                    f"ECE {100 * entry['ece']:.1f}\n→{100 * entry['ece_ts']:.1f}",
                    va="top",
                    fontsize=6,
                    transform=ax.transAxes,
                )
                if i == 0:
                    kind = "DLFA " if head.startswith("dlfa") else "layer "
                    ax.set_title(f"{kind}{layer}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{lang}\naccuracy", fontsize=8)
                if i == len(langs) - 1:
                    ax.set_xlabel("confidence", fontsize=7)
                ax.tick_params(labelsize=6)
        axes[0, 0].legend(fontsize=6, loc="lower right")
        fig.suptitle(
            f"reliability, head trained on {regime} ({key}); bars before, line after "
            "temperature scaling",
            fontsize=9,
        )
        paths.append(save_figure(fig, directory / f"reliability_{regime.replace('+', '-')}.png"))
    return paths


def plot_ece(
    task: Task,
    rows: list[Row],
    regimes: list[str],
    langs: list[str],
    n_layers: int,
    directory: Path,
    key: str,
) -> Path:
    """ECE per layer, one panel per language: each regime before (solid) and after T (dashed);
    DLFA at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    cells = {(r.head, r.layer, r.lang, r.metric): r.value for r in rows}
    cols = min(3, len(langs))
    n_rows = -(-len(langs) // cols)
    fig, axes = plt.subplots(
        n_rows, cols, figsize=(4.2 * cols, 3.2 * n_rows), dpi=110, squeeze=False, sharey=True
    )
    layers = list(range(n_layers))
    for ax, lang in zip(axes.flat, langs, strict=False):
        for regime, color in zip(regimes, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            for metric, style in (("ece", "-"), ("ece_ts", "--")):
                ys = [
                    100 * cells.get((f"linear@{regime}", str(i), lang, metric), np.nan)
                    for i in layers
                ]
                label = f"{regime}{' after T' if metric == 'ece_ts' else ''}"
                ax.plot(layers, ys, style, marker="o", ms=3, color=color, label=label)
                dlfa = [
                    v
                    for (h, _, g, m), v in cells.items()
                    if h == f"dlfa@{regime}" and g == lang and m == metric
                ]
                if dlfa:
                    ax.plot(
                        [n_layers],
                        [100 * dlfa[0]],
                        "*" if metric == "ece" else "x",
                        ms=8,
                        color=color,
                    )
        ax.set_xticks([*layers, n_layers], [*map(str, layers), "DLFA"])
        ax.set_title(lang, fontsize=9)
        ax.set_ylabel("ECE x100", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(langs) :]:
        ax.axis("off")
    fig.suptitle(
        f"{task.name} ({key}): ECE per layer, per training regime, before/after T", fontsize=10
    )
    return save_figure(fig, directory / "ece_per_layer.png")

"""`probe domain-shift`: train on one corpus of a language, score in-domain and out-of-domain.

For every language, heads are trained on the in-domain task's training split (for `pos`: EWT
dev for en, GSD dev for de/fr/es, IMST dev for tr; `dev_fraction` of it held out for early
stopping) and scored on that task's evaluation split (in-domain) and on the evaluation split
of every out-of-domain task that has the language (`pos-gum`: English GUM; `pos-pud`: the
PUD treebanks). Heads: a linear probe per layer, and DLFA fusing the last layer with layer k.
The drop is the in-domain score minus the out-of-domain score of the same head; comparing
DLFA's drop with the last-layer probe's asks whether fusion makes a head more robust to
domain shift. A language whose training split has fewer than `low_resource_words` words is
flagged low-resource (`--max-train-words` simulates a small training set anywhere).
Where sentence ids encode a genre (EWT, GUM, PUD) every evaluation set is also scored per
genre, a finer-grained shift read from the same predictions.

Result rows (results.csv): `lang` names the evaluation set as `<lang>:<task>` (`en:pos`,
`en:pos-gum`) or `<lang>:<task>#<genre>`; `drop_<metric>` rows sit on the out-of-domain set
and hold in-domain minus out-of-domain; per language, `train_words` and `low_resource`
(1/0) rows have layer "-", and DLFA's `dev_loss` rows give the loss of every k tried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.metrics import score
from probe.data.sources.conllu import genre_of
from probe.data.tasks import Task, expand_languages, get_task, local_files
from probe.errors import ProbeError
from probe.extract import (
    CacheHandle,
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
from probe.train.splits import CachedSplit, opener, subset, train_dev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainShiftConfig:
    """One `probe domain-shift` run. `task` is the in-domain task, `langs` the languages to
    run (those without an out-of-domain corpus are skipped, with a warning)."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    out_tasks: tuple[str, ...] = ("pos-gum", "pos-pud")
    fuse_layer: FuseLayer = "best"  # DLFA (last, k): k, "best" by dev loss, or None (no DLFA)
    reduction: int = 4
    genres: bool = True
    results_dir: Path = Path("results")
    train: TrainConfig = field(default_factory=TrainConfig)
    dlfa_train: TrainConfig = DLFA_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    low_resource_words: int = 15_000


@dataclass
class DomainShiftResult:
    rows: list[Row]
    directory: Path
    table: str
    seconds: float
    extract_seconds: float
    settings: dict[str, Any]


def run_domain_shift(config: DomainShiftConfig, progress: bool = True) -> DomainShiftResult:
    """Extract what is missing, train per language, score in and out of domain, write results."""
    task = get_task(config.task)
    outs = _out_tasks(task, config.out_tasks)
    data_dir = config.paths.require_data_dir("domain-shift")
    plan = _plan(task, outs, expand_languages(task, config.langs, data_dir), data_dir)

    t0 = time.perf_counter()
    cache = _extract_all(config, task, plan, progress)
    extract_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    root, key = cache.root, cache.key
    rows: list[Row] = []
    from tqdm.auto import tqdm

    with tqdm(
        total=len(plan), desc=f"domain shift {task.name}", unit="lang", disable=not progress
    ) as bar:
        for lang, lang_outs in plan.items():
            rows += _run_language(config, task, lang_outs, lang, root, key)
            bar.update()
    rows += drops(rows, task, plan)
    seconds = time.perf_counter() - t1

    n_layers = cache.n_layers
    settings = {
        "command": "domain-shift",
        "task": task.name,
        "out_tasks": [o.name for o in outs],
        "model": config.spec.model,
        "languages": {k: [o.name for o in v] for k, v in plan.items()},
        "cache_key": key,
        "fuse_layer": config.fuse_layer,
        "reduction": config.reduction,
        "genres": config.genres,
        "train": asdict(config.train),
        "dlfa_train": asdict(config.dlfa_train),
        "dev_fraction": config.dev_fraction,
        "max_train_words": config.max_train_words,
        "max_sentences": config.max_sentences,
        "low_resource_words": config.low_resource_words,
        "train_split": task.train_split,
        "in_domain_split": task.eval_split,
        "out_domain_splits": {o.name: o.eval_split for o in outs},
        "seconds": round(seconds, 3),
        "extract_seconds": round(extract_seconds, 3),
        "provenance": provenance(config.train.seed),
    }
    directory = run_directory(
        config.results_dir / task.name / key,
        "domain-shift",
        settings,
        volatile=("seconds", "extract_seconds", "provenance"),
    )
    write_table(rows, directory, settings)
    table = summary(task, rows, plan, n_layers, config)
    (directory / "summary.txt").write_text(table + "\n")
    plot_domain_shift(task, rows, plan, n_layers, directory, key)
    return DomainShiftResult(rows, directory, table, seconds, extract_seconds, settings)


# --- planning and extraction -------------------------------------------------------------------


def _out_tasks(task: Task, names: tuple[str, ...]) -> list[Task]:
    """The out-of-domain tasks, each word-level with the in-domain task's labels and metric."""
    if task.level != "word":
        raise ProbeError(
            f"domain-shift needs a word-level task (pos, pos-gum, pos-gsd, ner, ...); "
            f"{task.name!r} is {task.level}-level"
        )
    if not names:
        raise ProbeError("name at least one out-of-domain task (--out-tasks pos-gum,pos-pud)")
    outs = []
    for name in dict.fromkeys(names):
        out = get_task(name)
        if out.name == task.name:
            raise ProbeError(
                f"out-of-domain task {name!r} is the in-domain task itself; name another corpus"
            )
        if out.level != "word" or out.labels != task.labels or out.metric != task.metric:
            raise ProbeError(
                f"out-of-domain task {name!r} does not share {task.name!r}'s label set and "
                f"metric ({task.metric}); pick a task with the same tags (e.g. pos-gum, pos-pud "
                "for pos)"
            )
        outs.append(out)
    return outs


def _has_split(task: Task, data_dir: Path, lang: str, split: str) -> bool:
    try:
        local_files(task, data_dir, lang, split)
    except ProbeError:
        return False
    return True


def _plan(
    task: Task, outs: list[Task], langs: tuple[str, ...], data_dir: Path
) -> dict[str, list[Task]]:
    """Language -> the out-of-domain tasks with data for it; languages with none are skipped."""
    plan: dict[str, list[Task]] = {}
    for lang in langs:
        found = [
            o for o in outs if lang in o.languages and _has_split(o, data_dir, lang, o.eval_split)
        ]
        if not found:
            log.warning(
                "%s: no out-of-domain corpus among %s; skipped",
                lang,
                ", ".join(o.name for o in outs),
            )
            continue
        missing = [
            s
            for s in (task.train_split, task.dev_split, task.eval_split)
            if s and not _has_split(task, data_dir, lang, s)
        ]
        if missing:
            log.warning("%s: %s has no %s split here; skipped", lang, task.name, missing[0])
            continue
        plan[lang] = found
    if not plan:
        raise ProbeError(
            f"no language of {', '.join(langs)} has both {task.name!r} training data and an "
            f"out-of-domain corpus among {', '.join(o.name for o in outs)}"
        )
    return plan


def _extract_all(
    config: DomainShiftConfig, task: Task, plan: dict[str, list[Task]], progress: bool
) -> CacheHandle:
    """In-domain train/dev/eval splits of every planned language, and each out-of-domain
    task's eval split: one extraction call, so one key and one encoder load."""
    splits = tuple(
        dict.fromkeys(s for s in (task.train_split, task.dev_split, task.eval_split) if s)
    )
    cap = config.max_sentences
    requests = [ExtractRequest(task.name, tuple(plan), splits, max_sentences=cap)]
    out_names = dict.fromkeys(o.name for outs in plan.values() for o in outs)
    for name in out_names:
        out = get_task(name)
        langs = tuple(lang for lang, outs in plan.items() if out in outs)
        requests.append(ExtractRequest(name, langs, (out.eval_split,), max_sentences=cap))
    return ensure_cached(config.spec, requests, config.options, config.paths, progress=progress)


# --- training and scoring ----------------------------------------------------------------------


def _run_language(
    config: DomainShiftConfig, task: Task, outs: list[Task], lang: str, root: Path, key: str
) -> list[Row]:
    open_in = opener(root, key, task)
    train, dev = train_dev(
        task, open_in, lang, config.max_train_words, config.dev_fraction, config.train.seed
    )
    evals = {f"{lang}:{task.name}": open_in(lang, task.eval_split)}
    for out in outs:
        evals[f"{lang}:{out.name}"] = opener(root, key, out)(lang, out.eval_split)
    words = n_words([train, dev])
    rows = [
        Row("data", "-", lang, "train_words", float(words)),
        Row("data", "-", lang, "low_resource", float(words < config.low_resource_words)),
    ]
    n_layers = train.reader.n_layers
    n_classes = len(task.labels)
    fuse = resolve_fuse_layer(config.fuse_layer, n_layers)
    try:
        for layer in range(n_layers):
            spec = HeadSpec.linear(layer)
            result = train_head(spec, [train], [dev], n_classes, config.train)
            rows += score_sets(task, spec, result.head, evals, config.genres)
        if fuse is not None:
            spec, result, dev_loss = fit_dlfa(
                fuse, n_layers, [train], [dev], n_classes, config.dlfa_train, config.reduction
            )
            rows += [
                Row("dlfa", f"{k},{n_layers - 1}", lang, "dev_loss", v) for k, v in dev_loss.items()
            ]
            rows += score_sets(task, spec, result.head, evals, config.genres)
    finally:
        for split in (train, dev, *evals.values()):
            split.reader.close()
    return rows


def genre_groups(split: CachedSplit) -> dict[str, np.ndarray]:
    """Sentence indices per genre read off the cached sentence ids; {} unless two or more."""
    if split.rows is not None:
        return {}
    groups: dict[str, list[int]] = {}
    for i, sent_id in enumerate(split.reader.strings("sentence_ids")):
        genre = genre_of({"sent_id": sent_id})
        if genre is not None:
            groups.setdefault(genre, []).append(i)
    if len(groups) < 2:
        return {}
    return {g: np.asarray(items, dtype=np.int64) for g, items in sorted(groups.items())}


def score_sets(
    task: Task, spec: HeadSpec, head: Any, evals: dict[str, CachedSplit], genres: bool
) -> list[Row]:
    """Score one trained head on every evaluation set (and, optionally, each set's genres)."""
    rows = []
    for name, split in evals.items():
        probs = predict(spec, head, [split])
        for metric, value in score(
            task.metric, probs, split.labels, offsets=split.offsets, label_names=task.labels
        ).items():
            rows.append(Row(spec.kind, spec.name, name, metric, value))
        for genre, items in (genre_groups(split) if genres else {}).items():
            part = subset(split, items)
            assert part.rows is not None
            value = score(
                task.metric,
                probs[part.rows],
                part.labels,
                offsets=part.offsets,
                label_names=task.labels,
            )[task.metric]
            rows.append(Row(spec.kind, spec.name, f"{name}#{genre}", task.metric, value))
    return rows


def drops(rows: list[Row], task: Task, plan: dict[str, list[Task]]) -> list[Row]:
    """In-domain minus out-of-domain score of the same head, per out-of-domain set."""
    metric = task.metric
    value = {(r.head, r.layer, r.lang): r.value for r in rows if r.metric == metric}
    heads = dict.fromkeys((r.head, r.layer) for r in rows if r.metric == metric)
    out = []
    for lang, outs in plan.items():
        for head, layer in heads:
            inside = value.get((head, layer, f"{lang}:{task.name}"))
            for o in outs:
                outside = value.get((head, layer, f"{lang}:{o.name}"))
                if inside is not None and outside is not None:
                    out.append(
                        Row(head, layer, f"{lang}:{o.name}", f"drop_{metric}", inside - outside)
                    )
    return out


# --- output ------------------------------------------------------------------------------------


def _head_rows(rows: list[Row], n_layers: int) -> list[tuple[str, str]]:
    """(head, layer) in table order: each layer's probe, then DLFA (whose k may differ by
    language, so it is one row named `dlfa`)."""
    order = [("linear", str(i)) for i in range(n_layers)]
    if any(r.head == "dlfa" for r in rows):
        order.append(("dlfa", "*"))
    return order


def _cells(
    rows: list[Row], metric: str, n_layers: int
) -> tuple[list[str], dict[tuple[str, str], float]]:
    """Table cells {(row name, eval set): value}; DLFA's k goes into the DLFA row per set."""
    cells: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.metric != metric:
            continue
        if r.head == "linear":
            cells[(r.layer, r.lang)] = r.value
        elif r.head == "dlfa":
            cells[("dlfa", r.lang)] = r.value
    names = [layer if head == "linear" else "dlfa" for head, layer in _head_rows(rows, n_layers)]
    return names, cells


def summary(
    task: Task,
    rows: list[Row],
    plan: dict[str, list[Task]],
    n_layers: int,
    config: DomainShiftConfig,
) -> str:
    """Scores per head and evaluation set, drops, DLFA vs last layer, data sizes, genres."""
    metric = task.metric
    last = str(n_layers - 1)
    in_sets = [f"{lang}:{task.name}" for lang in plan]
    out_sets = [f"{lang}:{o.name}" for lang, outs in plan.items() for o in outs]
    sets = [
        s
        for lang in plan
        for s in (f"{lang}:{task.name}", *(f"{lang}:{o.name}" for o in plan[lang]))
    ]
    names, cells = _cells(rows, metric, n_layers)
    _, drop_cells = _cells(rows, f"drop_{metric}", n_layers)
    ks = {
        r.lang: r.layer
        for r in rows
        if r.head == "dlfa" and r.lang in in_sets and r.metric == metric
    }
    k_note = ", ".join(f"{s.split(':')[0]} {k}" for s, k in ks.items())
    lines = [
        f"{task.name} domain shift: {metric} x100 per head and evaluation set; heads trained per "
        f"language on {task.name}/{task.train_split} ({config.dev_fraction:.0%} held out for "
        f"early stopping); in-domain = {task.name}/{task.eval_split}",
        f"dlfa = DLFA (k,last) with k per language: {k_note or 'not run'}",
        text_table(names, sets, cells, corner="head"),
        "",
        f"drop = in-domain minus out-of-domain {metric} x100 (smaller = more robust); "
        f"last-D = last-layer drop minus DLFA drop (> 0: DLFA drops less)",
    ]
    for s in out_sets:
        if (last, s) in drop_cells and ("dlfa", s) in drop_cells:
            drop_cells[("last-D", s)] = drop_cells[(last, s)] - drop_cells[("dlfa", s)]
    drop_names = [*names, "last-D"] if "dlfa" in names else names
    lines.append(text_table(drop_names, out_sets, drop_cells, corner="head"))
    lines += ["", "training data per language (words incl. the held-out dev part):"]
    for lang in plan:
        words = next(r.value for r in rows if r.lang == lang and r.metric == "train_words")
        low = next(r.value for r in rows if r.lang == lang and r.metric == "low_resource")
        flag = f"low-resource (< {config.low_resource_words:,} words)" if low else ""
        lines.append(f"  {lang:<4} {int(words):>8,}  {flag}")
    genre_sets = sorted({r.lang for r in rows if "#" in r.lang}, key=lambda s: (s.split("#")[0], s))
    if genre_sets:
        width = max(len(s) for s in genre_sets) + 2
        heads = [f"layer {last}", *(["dlfa"] if "dlfa" in names else [])]
        lines += [
            "",
            f"{metric} x100 per genre (from sentence ids), same heads:",
            f"{'set':<{width}}" + "".join(f"{h:>10}" for h in heads),
        ]
        for s in genre_sets:
            vals = [cells.get((last, s)), cells.get(("dlfa", s))][: len(heads)]
            lines.append(
                f"{s:<{width}}"
                + "".join(f"{100 * v:>10.1f}" if v is not None else f"{'-':>10}" for v in vals)
            )
    return "\n".join(lines)


def plot_domain_shift(
    task: Task,
    rows: list[Row],
    plan: dict[str, list[Task]],
    n_layers: int,
    directory: Path,
    key: str,
) -> Path:
    """One panel per (language, out-of-domain set): in- and out-of-domain score per layer
    (linear probes) and DLFA's pair at the right; the drop is the gap between the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    metric = task.metric
    _, cells = _cells(rows, metric, n_layers)
    panels = [(lang, o.name) for lang, outs in plan.items() for o in outs]
    cols = min(3, len(panels))
    n_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        n_rows, cols, figsize=(4.2 * cols, 3.3 * n_rows), dpi=110, squeeze=False
    )
    layers = list(range(n_layers))
    for ax, (lang, out) in zip(axes.flat, panels, strict=False):
        in_set, out_set = f"{lang}:{task.name}", f"{lang}:{out}"
        for s, style, label in (
            (in_set, "o-", f"in-domain ({task.name})"),
            (out_set, "s--", f"out-of-domain ({out})"),
        ):
            ax.plot(
                layers,
                [100 * cells.get((str(i), s), np.nan) for i in layers],
                style,
                ms=3,
                label=label,
            )
            if ("dlfa", s) in cells:
                ax.plot(
                    [n_layers],
                    [100 * cells[("dlfa", s)]],
                    style[0],
                    ms=7,
                    mfc="none",
                    color=ax.lines[-1].get_color(),
                )
        ax.set_xticks([*layers, n_layers], [*map(str, layers), "DLFA"])
        ax.set_title(f"{lang}: {task.name} -> {out}", fontsize=9)
        ax.set_xlabel("layer (linear probe) / DLFA (k,last)", fontsize=8)
        ax.set_ylabel(f"{metric} x100", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"domain shift, {key}: the drop is the gap between the curves", fontsize=10)
    path = save_figure(fig, directory / "domain_shift.png")
    _plot_drops(task, rows, panels, n_layers, directory / "drop_per_layer.png", key)
    return path


def _plot_drops(
    task: Task,
    rows: list[Row],
    panels: list[tuple[str, str]],
    n_layers: int,
    path: Path,
    key: str,
) -> None:
    """The drop per layer, one line per (language, out-of-domain set); DLFA's drop at the right."""
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    _, drops_ = _cells(rows, f"drop_{task.metric}", n_layers)
    layers = list(range(n_layers))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for lang, out in panels:
        s = f"{lang}:{out}"
        line = ax.plot(
            layers, [100 * drops_.get((str(i), s), np.nan) for i in layers], "o-", ms=3, label=s
        )[0]
        if ("dlfa", s) in drops_:
            ax.plot([n_layers], [100 * drops_[("dlfa", s)]], "*", ms=10, color=line.get_color())
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks([*layers, n_layers], [*map(str, layers), "DLFA"])
    ax.set_xlabel("layer (linear probe) / DLFA (k,last)")
    ax.set_ylabel(f"drop in {task.metric} x100 (in - out)")
    ax.set_title(f"{task.name} domain shift ({key}): drop per head", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)

"""`probe domain-shift` on screen and on disk: scores and drops per head and set, the plots.

Rows are selected by their typed fields: `config` (the language whose heads they are),
`eval_task` (the out-of-domain task scored, "" in-domain), `subset` (a genre) and `layers`;
the legacy `lang` strings (`en:pos-gum#news`) are only ever printed, built here from the
same fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from probe.data.tasks import Task, get_task
from probe.results.report import save_figure, text_table
from probe.results.rows import Row
from probe.results.table import Table

Plan = Mapping[str, Sequence[str]]  # language -> its out-of-domain task names


def set_name(lang: str, eval_task: str, genre: str = "") -> str:
    """How an evaluation set is printed: `en:pos-gum`, `en:pos-gum#news`."""
    return f"{lang}:{eval_task}" + (f"#{genre}" if genre else "")


def _label(task: Task, row: Row) -> str:
    return set_name(row.config, row.eval_task or task.name, row.subset)


def _cells(task: Task, rows: Table, metric: str) -> dict[tuple[str, str], float]:
    """{(head row, set): value}: a probe's row is its layer, DLFA's is `dlfa` (its k may
    differ by language, so the table gives it one row)."""
    cells: dict[tuple[str, str], float] = {}
    for r in rows.filter(metric=metric, head="linear"):
        cells[(str(r.layers[0]), _label(task, r))] = r.value
    for r in rows.filter(metric=metric, head="dlfa"):
        cells[("dlfa", _label(task, r))] = r.value
    return cells


def _head_names(rows: Table, n_layers: int) -> list[str]:
    """Table rows in order: each layer's probe, then DLFA if it ran."""
    return [*map(str, range(n_layers)), *(["dlfa"] if rows.filter(head="dlfa") else [])]


def render_domain_shift(
    task: Task, rows: Table, plan: Plan, n_layers: int, directory: Path, key: str, *,
    dev_fraction: float, small_train_words: int, max_train_words: int | None = None,
    skipped: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Write domain_shift.png and drop_per_layer.png; return the summary text."""
    plot_domain_shift(task, rows, plan, n_layers, directory, key)
    return summary(task, rows, plan, n_layers, dev_fraction, small_train_words,
                   max_train_words, skipped or {})  # fmt: skip


def split_choice(task: Task) -> str:
    """`pos/dev (--train-split dev; the task's own is train)`, or `pos/train` for the task's
    own training split: which split trained, said in every robustness summary."""
    own = get_task(task.name).train_split
    split = task.train_split
    chosen = f" (--train-split {split}; the task's own is {own})" if split != own else ""
    return f"{task.name}/{split}{chosen}"


def design_line(task: Task, max_train_words: int | None) -> str:
    """The run's design in one line: which split trained (the task's own or --train-split)
    and whether the languages' training sets are size-matched (--max-train-words)."""
    if max_train_words is not None:
        size = (f"size-matched: each language's training data is a seeded sample of at most "
                f"{max_train_words:,} words (--max-train-words)")  # fmt: skip
    else:
        size = ("not size-matched: each language trains on all of it (sizes below; "
                "--max-train-words N matches them)")  # fmt: skip
    return f"design: every language's heads train on its own {split_choice(task)}; {size}"


def skipped_line(skipped: Mapping[str, str]) -> str:
    """The languages asked for (or found) that did not run, each with its reason."""
    return "skipped: " + "; ".join(f"{lang} ({why})" for lang, why in skipped.items())


def summary(
    task: Task, rows: Table, plan: Plan, n_layers: int, dev_fraction: float,
    small_train_words: int, max_train_words: int | None = None,
    skipped: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Scores per head and evaluation set, drops, DLFA vs last layer, data sizes, genres;
    the design and the skipped languages first."""
    metric = task.metric
    last = str(n_layers - 1)
    out_sets = [set_name(lang, o) for lang, outs in plan.items() for o in outs]
    sets = [set_name(lang, t) for lang in plan for t in (task.name, *plan[lang])]
    names = _head_names(rows, n_layers)
    cells = _cells(task, rows, metric)
    drop_cells = _cells(task, rows, f"drop_{metric}")
    whole_in = rows.filter(head="dlfa", metric=metric, eval_task="", subset="")
    ks = {r.config: r.layer for r in whole_in}
    k_note = ", ".join(f"{lang} {k}" for lang, k in ks.items())
    lines = [
        f"{task.name} domain shift: {metric} x100 per head and evaluation set; heads trained per "
        f"language on {task.name}/{task.train_split} ({dev_fraction:.0%} held out for "
        f"early stopping); in-domain = {task.name}/{task.eval_split}",
        design_line(task, max_train_words),
        *([skipped_line(skipped)] if skipped else []),
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
        words = rows.one(head="data", config=lang, metric="train_words")
        small = rows.one(head="data", config=lang, metric="small_train")
        flag = f"small training set (< {small_train_words:,} words)" if small else ""
        lines.append(f"  {lang:<4} {int(words):>8,}  {flag}")
    # Genre sets sort under their whole set, then by name.
    whole = {_label(task, r): set_name(r.config, r.eval_task or task.name)
             for r in rows.filter(subset=bool)}  # fmt: skip
    genre_sets = sorted(whole, key=lambda s: (whole[s], s))
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
            lines.append(f"{s:<{width}}" + "".join(
                f"{100 * v:>10.1f}" if v is not None else f"{'-':>10}" for v in vals))  # fmt: skip
    return "\n".join(lines)


def plot_domain_shift(
    task: Task, rows: Table, plan: Plan, n_layers: int, directory: Path, key: str
) -> Path:
    """One panel per (language, out-of-domain set): in- and out-of-domain score per layer
    (linear probes) and DLFA's pair at the right; the drop is the gap between the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = task.metric
    cells = _cells(task, rows, metric)
    panels = [(lang, o) for lang, outs in plan.items() for o in outs]
    cols = min(3, len(panels))
    n_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.3 * n_rows), dpi=110,
                             squeeze=False)  # fmt: skip
    layers = list(range(n_layers))
    for ax, (lang, out) in zip(axes.flat, panels, strict=False):
        for s, style, label in (
            (set_name(lang, task.name), "o-", f"in-domain ({task.name})"),
            (set_name(lang, out), "s--", f"out-of-domain ({out})"),
        ):
            ax.plot(layers, [100 * cells.get((str(i), s), np.nan) for i in layers], style, ms=3,
                    label=label)  # fmt: skip
            if ("dlfa", s) in cells:
                ax.plot([n_layers], [100 * cells[("dlfa", s)]], style[0], ms=7, mfc="none",
                        color=ax.lines[-1].get_color())  # fmt: skip
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
    task: Task, rows: Table, panels: list[tuple[str, str]], n_layers: int, path: Path, key: str
) -> None:
    """The drop per layer, one line per (language, out-of-domain set); DLFA's drop at the right."""
    import matplotlib.pyplot as plt

    drops = _cells(task, rows, f"drop_{task.metric}")
    layers = list(range(n_layers))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for lang, out in panels:
        s = set_name(lang, out)
        line = ax.plot(layers, [100 * drops.get((str(i), s), np.nan) for i in layers], "o-", ms=3,
                       label=s)[0]  # fmt: skip
        if ("dlfa", s) in drops:
            ax.plot([n_layers], [100 * drops[("dlfa", s)]], "*", ms=10, color=line.get_color())
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks([*layers, n_layers], [*map(str, layers), "DLFA"])
    ax.set_xlabel("layer (linear probe) / DLFA (k,last)")
    ax.set_ylabel(f"drop in {task.metric} x100 (in - out)")
    ax.set_title(f"{task.name} domain shift ({key}): drop per head", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)

"""`probe domain-shift` on screen and on disk: scores and drops per head and set, the plots.

Rows are selected by their typed fields: `config` (the language whose heads they are),
`eval_task` (the out-of-domain task scored, "" in-domain), `subset` (a genre) and `layers`;
the legacy `lang` strings (`en:pos-gum#news`) are only ever printed, built here from the
same fields. Tables print the seed means (rows with seed None) with their sd over seeds
(stat "sd" rows), and a "*" beside a number whose 95% interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from probe.data.tasks import Task, get_task
from probe.results.intervals import interval_text, mark
from probe.results.report import save_figure
from probe.results.rows import Row
from probe.results.table import Table

Plan = Mapping[str, Sequence[str]]  # language -> its out-of-domain task names


def set_name(lang: str, eval_task: str, genre: str = "") -> str:
    """How an evaluation set is printed: `en:pos-gum`, `en:pos-gum#news`."""
    return f"{lang}:{eval_task}" + (f"#{genre}" if genre else "")


def _label(task: Task, row: Row) -> str:
    return set_name(row.config, row.eval_task or task.name, row.subset)


def _cell_rows(task: Task, rows: Table, metric: str) -> dict[tuple[str, str], Row]:
    """{(head row, set): the seed-mean row}: a probe's row is its layer, DLFA's is `dlfa` (its
    k may differ by language, so the table gives it one row)."""
    cells: dict[tuple[str, str], Row] = {}
    means = rows.filter(metric=metric, seed=None, stat="")
    for r in means.filter(head="linear"):
        cells[(str(r.layers[0]), _label(task, r))] = r
    for r in means.filter(head="dlfa"):
        cells[("dlfa", _label(task, r))] = r
    return cells


def _cells(task: Task, rows: Table, metric: str) -> dict[tuple[str, str], float]:
    """{(head row, set): seed-mean value} (see `_cell_rows`)."""
    return {key: r.value for key, r in _cell_rows(task, rows, metric).items()}


def _sd(rows: Table, row: Row) -> float | None:
    """The sd over seeds of a mean row, None with one seed."""
    found = rows.filter(head=row.head, layers=row.layers, lang=row.lang, config=row.config,
                        eval_task=row.eval_task, subset=row.subset, group=row.group,
                        metric=f"{row.metric}_sd", stat="sd")  # fmt: skip
    return found[0].value if found else None


def pm(value: float, sd: float | None, scale: float = 100.0, sign: bool = False) -> str:
    """`82.1±0.3` (x scale), or `82.1` without an sd."""
    text = f"{value * scale:+.1f}" if sign else f"{value * scale:.1f}"
    return text if sd is None else f"{text}±{sd * scale:.1f}"


def _pm_cells(
    task: Task, rows: Table, metric: str, marks: bool = False
) -> dict[tuple[str, str], str]:
    """{(head row, set): "mean±sd"}, with "*" when `marks` and the interval excludes 0."""
    return {key: pm(r.value, _sd(rows, r)) + (mark(r) if marks else "")
            for key, r in _cell_rows(task, rows, metric).items()}  # fmt: skip


def str_table(
    row_names: Sequence[str], col_names: Sequence[str], cells: Mapping[tuple[str, str], str],
    *, corner: str = "head",
) -> str:  # fmt: skip
    """A fixed-width table of ready-made cells (missing ones print as '-')."""
    width = max(6, *(len(c) for c in col_names), *(len(v) for v in cells.values())) + 1
    first = max(6, len(corner), *(len(r) for r in row_names))
    lines = [f"{corner:<{first}}" + "".join(f"{c:>{width}}" for c in col_names)]
    for r in row_names:
        lines.append(f"{r:<{first}}" + "".join(f"{cells.get((r, c), '-'):>{width}}"
                                               for c in col_names))  # fmt: skip
    return "\n".join(lines)


def _head_names(rows: Table, n_layers: int) -> list[str]:
    """Table rows in order: each layer's probe, then DLFA if it ran."""
    return [*map(str, range(n_layers)), *(["dlfa"] if rows.filter(head="dlfa") else [])]


def render_domain_shift(
    task: Task, rows: Table, plan: Plan, n_layers: int, directory: Path, key: str, *,
    dev_fraction: float, small_train_words: int, max_train_words: int | None = None,
    skipped: Mapping[str, str] | None = None, recipe: str = "", seeds: Sequence[int] = (0,),
) -> str:  # fmt: skip
    """Write domain_shift.png and drop_per_layer.png; return the summary text."""
    plot_domain_shift(task, rows, plan, n_layers, directory, key)
    return summary(task, rows, plan, n_layers, dev_fraction, small_train_words,
                   max_train_words, skipped or {}, recipe, seeds)  # fmt: skip


def seeds_line(seeds: Sequence[int]) -> str:
    """How the numbers combine over seeds and what the intervals are (every robustness run)."""
    listed = ",".join(map(str, seeds))
    if len(seeds) == 1:
        return (f"seed {listed} (one per head: no sd; intervals resample test items only, "
                "--seeds 0,1,2 adds seeds)")  # fmt: skip
    return (
        f"seeds {listed}: every head trains once per seed; cells are mean±sd over seeds; "
        "intervals are 95% bootstraps over test sentences and seeds (* = excludes 0)"
    )


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
    skipped: Mapping[str, str] | None = None, recipe: str = "", seeds: Sequence[int] = (0,),
) -> str:  # fmt: skip
    """Scores per head and evaluation set, drops, DLFA against its matched baselines (last
    layer, layer k), data sizes, genres; the design, recipe, seeds and skipped languages
    first."""
    metric = task.metric
    last = str(n_layers - 1)
    out_sets = [set_name(lang, o) for lang, outs in plan.items() for o in outs]
    sets = [set_name(lang, t) for lang in plan for t in (task.name, *plan[lang])]
    names = _head_names(rows, n_layers)
    cells = _pm_cells(task, rows, metric)
    drop_cells = _pm_cells(task, rows, f"drop_{metric}", marks=True)
    lines = [
        f"{task.name} domain shift: {metric} x100 per head and evaluation set; heads trained per "
        f"language on {task.name}/{task.train_split} ({dev_fraction:.0%} held out for "
        f"early stopping); in-domain = {task.name}/{task.eval_split}",
        design_line(task, max_train_words),
        *([recipe] if recipe else []),
        seeds_line(seeds),
        *([skipped_line(skipped)] if skipped else []),
        f"dlfa = DLFA (k,last) with k per language: {_k_note(rows, metric) or 'not run'}",
        str_table(names, sets, cells),
        "",
        f"drop = in-domain minus out-of-domain {metric} x100 (smaller = more robust; * = its "
        "interval excludes 0: in- and out-of-domain are different test sets, bootstrapped "
        "independently)",
        str_table(names, out_sets, drop_cells),
    ]
    lines += _comparison(task, rows, out_sets, last)
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
            lines.append(f"{s:<{width}}" + "".join(f"{v or '-':>10}" for v in vals))
    return "\n".join(lines)


def _k_note(rows: Table, metric: str) -> str:
    """DLFA's k per language; per seed where the seeds chose differently ("best")."""
    ks: dict[str, list[int]] = {}
    per_seed = rows.filter(head="dlfa", metric=metric, eval_task="", subset="",
                           seed=lambda s: s is not None)  # fmt: skip
    for r in per_seed:
        ks.setdefault(r.config, []).append(r.layers[0])
    return ", ".join(f"{lang} {found[0]}" if len(set(found)) == 1
                     else f"{lang} {'/'.join(map(str, found))} (per seed)"
                     for lang, found in ks.items())  # fmt: skip


def _comparison(task: Task, rows: Table, out_sets: Sequence[str], last: str) -> list[str]:
    """DLFA against its matched single-layer baselines: last-D and k-D per set and over all."""
    found = rows.filter(metric=f"dropdiff_{task.metric}", stat="")
    if not found:
        return []
    cols = ("last-D", "95% CI", "k-D", "95% CI ")
    cells: dict[tuple[str, str], str] = {}
    for r in found:
        where = "all sets" if r.group == "sets" else r.lang
        col = 0 if r.head == "last-D" else 2
        cells[(where, cols[col])] = pm(r.value, _sd(rows, r), sign=True) + mark(r)
        cells[(where, cols[col + 1])] = interval_text(r)
    order = [s for s in (*out_sets, "all sets") if any(k[0] == s for k in cells)]
    return [
        "",
        f"DLFA against its matched single-layer baselines, trained alike: last-D = layer {last}'s "
        "drop minus DLFA's, k-D = layer k's drop minus DLFA's (k = the layer DLFA fuses), x100; "
        "> 0: DLFA drops less; interval paired within each test set",
        str_table(order, cols, cells, corner="set"),
    ]


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

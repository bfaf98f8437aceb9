"""`probe layers` on screen and on disk: the per-layer table, the layer curves, the MDL plot
and the random-twin comparison.

Every score cell is the mean over seeds ± their sd; the target average carries its 95%
paired bootstrap interval over sentences and seeds (probe.analysis.bootstrap), and so do
selectivity, the best layer's lead over the next best and the trained − random Δ; a "*" marks
an interval that excludes 0 (probe.results.intervals.mark).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.gains import SD
from probe.results.intervals import interval_text, mark
from probe.results.render.mdl import COMPRESSION, ONLINE, plot_mdl
from probe.results.report import plot_layer_curves
from probe.results.rows import Row
from probe.results.table import Table

# Row.config of the best layer's Δ over the next best ("next-best 6") and of the random
# twin's rows and Δs.
NEXT_BEST = "next-best"
RANDOM = "random-weights"
# Above this majority-label share of the source's training words selectivity is flagged as
# not informative (probe.analysis.control.majority_share says why).
SELECTIVITY_MAJORITY_LIMIT = 0.5

Cells = dict[tuple[str, str], str]


def render_layers(
    task: Task, rows: Table, source: str, langs: Sequence[str], n_layers: int,
    directory: Path, key: str, seeds: Sequence[int] = (0,),
) -> str:  # fmt: skip
    """Write score_per_layer.png, source_vs_target.png (and mdl_per_layer.png with MDL rows);
    return the summary table(s).

    The headline metric's table carries the target average with its interval, selectivity,
    source ECE, MDL when computed, and on the best layer's line its lead over the next best;
    each of the task's `extra_metrics` (pos_f1 on UPOS tasks) follows as a table of its own,
    then the random twin's table when the run has one.
    """
    metric = task.metric
    trained = rows.filter(config=lambda c: not c.startswith(RANDOM))
    means, sds = _means(trained, metric)
    layer_names = [str(i) for i in range(n_layers) if (str(i), source) in means]
    spread = "mean ± sd over seeds " if len(seeds) > 1 else "seed "
    lines = [f"{task.name}: {metric} x100 of a linear probe per layer (source {source}; "
             f"{spread}{','.join(map(str, seeds))})"]  # fmt: skip
    cells = _score_cells(means, sds, langs)
    cells.update(_target_cells(trained, metric, layer_names))
    columns = [*langs, "tgt-avg", "tgt 95% CI"]
    select = trained.filter(head="linear", metric="selectivity", lang=source, stat="")
    if select:
        cells.update(_selectivity_cells(trained, source))
        columns += ["select", "sel 95% CI"]
    for r in trained.filter(head="linear", metric="ece", lang=source, seed=None, stat=""):
        cells[(r.layer, "ECE-src")] = _num(r.value)
    columns.append("ECE-src")
    mdl = trained.filter(head="linear", metric=lambda m: m in (ONLINE, COMPRESSION))
    if mdl:
        for r in mdl:
            cells[(r.layer, "MDL kb" if r.metric == ONLINE else "compr")] = f"{r.value:.2f}"
        columns += ["MDL kb", "compr"]
    best = _best_line(trained, metric, source)
    if best is not None:
        best_layer, text, lead = best
        cells[(best_layer, "vs next")] = lead
        columns.append("vs next")
    lines.append(_table([*layer_names, *_mix(cells)], columns, cells))
    note = ("tgt-avg: mean over the targets; 95% CI: paired bootstrap over sentences and "
            "seeds; * = the interval excludes 0")  # fmt: skip
    if _mix(cells) and len(seeds) > 1:
        note += f"; mix: seed {seeds[0]} only"
    lines.append(note)
    if best is not None:
        lines.append(best[1])
    lines += _selectivity_notes(trained, source, bool(select))
    _plot(task, means, source, langs, n_layers, directory, key)
    if mdl:
        twin_mdl = rows.filter(head="linear", config=RANDOM,
                               metric=lambda m: m in (ONLINE, COMPRESSION))  # fmt: skip
        compare = {"random twin": twin_mdl} if twin_mdl else None
        plot_mdl(Table(mdl), directory / "mdl_per_layer.png",
                 title=f"{task.name} ({key}): online code of the source labels per layer",
                 label="trained", compare=compare)  # fmt: skip
        lines.append("MDL kb: online code length (Voita & Titov 2020) of the source training "
                     "labels, kbits (lower: easier to learn from the layer); compr: uniform / "
                     "online code (1 = no help); plot: mdl_per_layer.png")  # fmt: skip
    out = ["\n".join(lines)]
    for name in task.extra_metrics:
        other_means, other_sds = _means(trained, name)
        if other_means:
            cells = _score_cells(other_means, other_sds, langs)
            cells.update(_target_cells(trained, name, layer_names))
            title = f"{task.name}: {name} x100 of the same probes; {METRIC_NOTES[name]}"
            out.append(
                title
                + "\n"
                + _table([*layer_names, *_mix(cells)], [*langs, "tgt-avg", "tgt 95% CI"], cells)
            )
    twin = render_twin(rows, metric, source, langs, layer_names)
    if twin:
        out.append(twin)
    return "\n\n".join(out)


def render_twin(
    rows: Table, metric: str, source: str, langs: Sequence[str], layer_names: Sequence[str]
) -> str:
    """Per layer: the trained model's and the random twin's score on the source and averaged
    over the targets, and trained − random with its interval (paired on the same sentences);
    "" when the run has no twin."""
    twin = rows.filter(head="linear", config=RANDOM, metric=metric, seed=None, stat="",
                       group="")  # fmt: skip
    if not twin:
        return ""
    trained = rows.filter(head="linear", config="", metric=metric, seed=None, stat="", group="")
    targets = [lang for lang in langs if lang != source]
    cells: Cells = {}
    for name, table in (("", trained), ("rand ", twin)):
        for layer in layer_names:
            score = {r.lang: r.value for r in table.filter(layer=layer)}
            if source in score:
                cells[(layer, f"{name}src")] = _num(score[source])
            found = [score[t] for t in targets if t in score]
            if found:
                cells[(layer, f"{name}tgt")] = _num(float(np.mean(found)))
    deltas = rows.filter(head="linear", config=RANDOM, metric=f"gain_{metric}", stat="")
    for scope, column in ((source, "Δsrc"), ("targets", "Δtgt")):
        for r in deltas.filter(lang=scope):
            cells[(r.layer, column)] = f"{r.value * 100:+.1f}{mark(r)}"
            cells[(r.layer, f"{column} 95% CI")] = interval_text(r)
    columns = ["src", "rand src", "Δsrc", "Δsrc 95% CI"]
    if targets:
        columns += ["tgt", "rand tgt", "Δtgt", "Δtgt 95% CI"]
    model = twin[0].model
    title = (f"trained vs its random-weights twin ({model}): {metric} x100 of the same linear "
             "probes; Δ = trained − random, paired bootstrap over sentences and seeds")  # fmt: skip
    return title + "\n" + _table(layer_names, columns, cells)


# --- cells -----------------------------------------------------------------------------------


def _means(rows: Table, metric: str) -> tuple[dict[tuple[str, str], float],
                                              dict[tuple[str, str], float]]:  # fmt: skip
    """Seed means and sds of one metric per (layer or "mix", language)."""
    means: dict[tuple[str, str], float] = {}
    sds: dict[tuple[str, str], float] = {}
    for head in ("linear", "scalar_mix"):
        for r in rows.filter(head=head, seed=None, group="", config=""):
            layer = r.layer if head == "linear" else "mix"
            if r.metric == metric and not r.stat:
                means[(layer, r.lang)] = r.value
            elif r.metric == f"{metric}_sd" and r.stat == SD:
                sds[(layer, r.lang)] = r.value
    return means, sds


def _score_cells(
    means: Mapping[tuple[str, str], float], sds: Mapping[tuple[str, str], float],
    langs: Sequence[str],
) -> Cells:  # fmt: skip
    wanted = set(langs)
    return {k: _num(v, sds.get(k)) for k, v in means.items() if k[1] in wanted}


def _target_cells(rows: Table, metric: str, layer_names: Sequence[str]) -> Cells:
    """tgt-avg and its interval per layer (the "targets" rows); the mix's mean without one."""
    cells: Cells = {}
    for r in rows.filter(head=lambda h: h in ("linear", "scalar_mix"), lang="targets",
                         metric=metric, config="", stat=""):  # fmt: skip
        layer = "mix" if r.head == "scalar_mix" else r.layer
        cells[(layer, "tgt-avg")] = _num(r.value)
        cells[(layer, "tgt 95% CI")] = _interval(r)
    return {k: v for k, v in cells.items() if k[0] in (*layer_names, "mix")}


def _selectivity_cells(rows: Table, source: str) -> Cells:
    cells: Cells = {}
    sds = {r.layer: r.value for r in rows.filter(head="linear", metric="selectivity_sd",
                                                 lang=source, stat=SD)}  # fmt: skip
    for r in rows.filter(head="linear", metric="selectivity", lang=source, stat=""):
        cells[(r.layer, "select")] = _num(r.value, sds.get(r.layer)) + mark(r)
        cells[(r.layer, "sel 95% CI")] = interval_text(r)
    return cells


def _best_line(rows: Table, metric: str, source: str) -> tuple[str, str, str] | None:
    """(best layer, the sentence saying whether it beats the next best beyond the interval,
    its "vs next" cell), from the NEXT_BEST Δ rows."""
    found = rows.filter(head="linear", metric=f"gain_{metric}", stat="",
                        config=lambda c: c.startswith(NEXT_BEST))  # fmt: skip
    scoped = found.filter(lang="targets") or found.filter(lang=source)
    if not scoped:
        return None
    r = scoped[0]
    runner_up = r.config.removeprefix(NEXT_BEST).strip()
    where = "target average" if r.lang == "targets" else f"{source} score"
    if r.ci_low is None or r.ci_high is None or math.isnan(r.ci_low):
        verdict = "no interval (no item statistics)"
    elif r.ci_low > 0:
        verdict = "beyond the interval: it beats the next best"
    else:
        verdict = "inside the interval: not distinguishable from the next best"
    text = (
        f"best layer by {where}: {r.layer}; vs the next best, layer {runner_up}: "
        f"Δ {r.value * 100:+.1f} {interval_text(r)}, {verdict} (chosen on the test scores)"
    )
    return r.layer, text, f"{r.value * 100:+.1f}{mark(r)}"


def _selectivity_notes(rows: Table, source: str, with_select: bool) -> list[str]:
    notes = []
    if with_select:
        notes.append("select: task − control accuracy on the source's evaluation sentences, "
                     "control averaged over one Hewitt & Liang map per seed; interval paired "
                     "on sentences")  # fmt: skip
    share = rows.filter(head="control", metric="majority_share")
    if share and share[0].value > SELECTIVITY_MAJORITY_LIMIT:
        notes.append(f"selectivity is not informative here: the majority label "
                     f"{share[0].config!r} holds {share[0].value:.0%} of the source training "
                     f"words (> {SELECTIVITY_MAJORITY_LIMIT:.0%}), so task and control probes "
                     "both score near that share by predicting it")  # fmt: skip
    return notes


def _mix(cells: Cells) -> list[str]:
    """The "mix" line, where the run has a scalar mix."""
    return ["mix"] if any(layer == "mix" for layer, _ in cells) else []


def _num(value: float, sd: float | None = None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if sd is None or math.isnan(sd):
        return f"{value * 100:.1f}"
    return f"{value * 100:.1f}±{sd * 100:.1f}"


def _interval(row: Row) -> str:
    return interval_text(row).replace("+", "")  # a score interval is not a signed Δ


def _table(row_names: Sequence[str], col_names: Sequence[str], cells: Cells) -> str:
    """A fixed-width table of text cells; missing cells print as '-'."""
    widths = [max(6, len(c), *(len(cells.get((r, c), "-")) for r in row_names)) + 1
              for c in col_names]  # fmt: skip
    lines = ["layer " + "".join(f"{c:>{w}}" for c, w in zip(col_names, widths, strict=True))]
    for r in row_names:
        values = "".join(f"{cells.get((r, c), '-'):>{w}}"
                         for c, w in zip(col_names, widths, strict=True))  # fmt: skip
        lines.append(f"{r:<6}" + values)
    return "\n".join(lines)


def _plot(
    task: Task, means: dict[tuple[str, str], float], source: str, langs: Sequence[str],
    n_layers: int, directory: Path, key: str,
) -> None:  # fmt: skip
    metric = task.metric
    layers = list(range(n_layers))
    series = {lang: [means.get((str(i), lang), float("nan")) for i in layers] for lang in langs}
    plot_layer_curves(layers, series, directory / "score_per_layer.png", highlight=source,
                      title=f"{task.name} ({key}): linear probe per layer (seed mean)",
                      ylabel=f"{metric} (x100)")  # fmt: skip
    targets = [lang for lang in langs if lang != source]
    if targets:
        mean_target = [float(np.nanmean([series[t][i] for t in targets])) for i in layers]
        plot_layer_curves(
            layers, {f"source ({source})": series[source], "mean of targets": mean_target},
            directory / "source_vs_target.png", highlight=f"source ({source})",
            title=f"{task.name}: source score vs mean zero-shot target score", ylabel=metric,
        )  # fmt: skip

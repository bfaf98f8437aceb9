"""`probe layers` on screen and on disk: the per-layer table and the two layer curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.report import plot_layer_curves, text_table
from probe.results.table import Table


def render_layers(
    task: Task, rows: Table, source: str, langs: Sequence[str], n_layers: int,
    directory: Path, key: str,
) -> str:  # fmt: skip
    """Write score_per_layer.png and source_vs_target.png; return the summary table(s).

    The headline metric's table carries selectivity and source ECE; each of the task's
    `extra_metrics` (pos_f1 on UPOS tasks) follows as a table of its own.
    """
    metric = task.metric
    cells, layer_names = _cells(rows, metric)
    extra: dict[tuple[str, str], float] = _target_means(cells, layer_names, source, langs)
    for column, name in (("select", "selectivity"), ("ECE-src", "ece")):
        for r in rows.filter(head="linear", metric=name, lang=source):
            extra[(str(r.layers[0]), column)] = r.value
    title = f"{task.name}: {metric} x100 of a linear probe per layer (source {source})"
    table = text_table([*layer_names, "mix"], [*langs, "tgt-avg", "select", "ECE-src"],
                       {**cells, **extra})  # fmt: skip
    _plot(task, cells, source, langs, n_layers, directory, key)
    out = [title + "\n" + table]
    for name in task.extra_metrics:
        other, names = _cells(rows, name)
        if other:
            means = _target_means(other, names, source, langs)
            title = f"{task.name}: {name} x100 of the same probes; {METRIC_NOTES[name]}"
            table = text_table([*names, "mix"], [*langs, "tgt-avg"], {**other, **means})
            out.append(title + "\n" + table)
    return "\n\n".join(out)


def _cells(rows: Table, metric: str) -> tuple[dict[tuple[str, str], float], list[str]]:
    """One metric per (layer or "mix", language), and the probed layers in order."""
    linear = rows.filter(head="linear", metric=metric)
    cells = {(str(r.layers[0]), r.lang): r.value for r in linear}
    cells.update({("mix", r.lang): r.value
                  for r in rows.filter(head="scalar_mix", metric=metric)})  # fmt: skip
    return cells, [str(i) for i in dict.fromkeys(r.layers[0] for r in linear)]


def _target_means(
    cells: dict[tuple[str, str], float], layer_names: Sequence[str], source: str,
    langs: Sequence[str],
) -> dict[tuple[str, str], float]:  # fmt: skip
    """The mean over target languages per layer (the "tgt-avg" column)."""
    targets = [lang for lang in langs if lang != source]
    means = {}
    for layer in layer_names:
        scores = [cells[(layer, t)] for t in targets if (layer, t) in cells]
        if scores:
            means[(layer, "tgt-avg")] = float(np.mean(scores))
    return means


def _plot(
    task: Task, cells: dict[tuple[str, str], float], source: str, langs: Sequence[str],
    n_layers: int, directory: Path, key: str,
) -> None:  # fmt: skip
    metric = task.metric
    layers = list(range(n_layers))
    series = {lang: [cells.get((str(i), lang), float("nan")) for i in layers] for lang in langs}
    plot_layer_curves(layers, series, directory / "score_per_layer.png", highlight=source,
                      title=f"{task.name} ({key}): linear probe per layer",
                      ylabel=f"{metric} (x100)")  # fmt: skip
    targets = [lang for lang in langs if lang != source]
    if targets:
        mean_target = [float(np.nanmean([series[t][i] for t in targets])) for i in layers]
        plot_layer_curves(
            layers, {f"source ({source})": series[source], "mean of targets": mean_target},
            directory / "source_vs_target.png", highlight=f"source ({source})",
            title=f"{task.name}: source score vs mean zero-shot target score", ylabel=metric,
        )  # fmt: skip

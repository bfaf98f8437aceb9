"""`probe finetune` on screen: the main metric per language of the fine-tuned encoder."""

from __future__ import annotations

from collections.abc import Sequence

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.table import Table


def layers_name(layers: tuple[int, ...]) -> str:
    """'last' for the last layer alone, else 'k,last' (the legacy `layer` column)."""
    return "last" if len(layers) == 1 else ",".join(str(i) for i in layers)


def finetune_table(task: Task, rows: Table, source: str, langs: Sequence[str], steps: int) -> str:
    """The main metric x100 per language (and the mean over target languages), then one
    line per extra metric of the task (pos_f1: the number XTREME's tables report)."""
    metric = task.metric
    cols = [*langs, "targets"]
    width = max(7, *(len(c) + 1 for c in cols))
    scores = rows.filter(metric=metric, subset="")
    layer = layers_name(scores[0].layers) if scores else "-"
    best_epoch = int(rows.one(metric="best_epoch", lang=source))
    title = (f"{task.name}: {metric} x100, encoder fine-tuned end to end ({layer}); source "
             f"{source}; best epoch {best_epoch}, {steps} steps")  # fmt: skip
    head = f"{'layer':<8}" + "".join(f"{c:>{width}}" for c in cols)
    lines = [title, head]
    for name in (metric, *task.extra_metrics):
        values = {r.group or r.lang: r.value for r in rows.filter(metric=name, subset="")}
        if name != metric and not values:
            continue
        label = layer if name == metric else name
        lines.append(f"{label:<8}" + "".join(
            f"{100 * values[c]:>{width}.1f}" if c in values else f"{'-':>{width}}" for c in cols
        ))  # fmt: skip
    notes = [f"{name}: {METRIC_NOTES[name]}" for name in task.extra_metrics if name in METRIC_NOTES]
    return "\n".join([*lines, *notes])

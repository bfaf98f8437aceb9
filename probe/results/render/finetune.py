"""`probe finetune` on screen: the main metric per language of the fine-tuned encoder."""

from __future__ import annotations

from collections.abc import Sequence

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.gains import SD
from probe.results.rows import Row
from probe.results.table import Table


def layers_name(layers: tuple[int, ...]) -> str:
    """'last' for the last layer alone, else 'k,last' (the legacy `layer` column)."""
    return "last" if len(layers) == 1 else ",".join(str(i) for i in layers)


def budget_line(
    max_steps: int | None, max_train: int | None, max_eval: int | None, unit: str
) -> str:
    """ "budget: ..." naming every cap a run was given (a small run is never read as a full
    one), or "" for a run without caps."""
    caps = [f"{name} {value}" for name, value in
            ((f"max {unit} trained", max_train), (f"max {unit} scored per language", max_eval),
             ("max steps", max_steps)) if value is not None]  # fmt: skip
    return f"budget: {', '.join(caps)}" if caps else ""


def finetune_table(
    task: Task, rows: Table, source: str, langs: Sequence[str], steps: int, *,
    system: str | None = None, budget: str = "", notes_given: Sequence[str] = (),
    dev: bool = False,
) -> str:  # fmt: skip
    """The main metric x100 per language (and the mean over target languages), averaged over
    the seeds, with its sd over seeds (several seeds) and its 95% bootstrap interval; then one
    line per extra metric of the task (pos_f1: the number XTREME's tables report).

    `system` names the fine-tuned head in the title (default: its layers); `budget` (from
    `budget_line`) and `notes_given` are printed under the table; `dev` adds the kept epoch's
    source-dev score (pair tasks, where the source's evaluation split may be unlabelled)."""
    metric = task.metric
    cols = [*langs, "targets"]
    means = rows.filter(seed=None)  # per-seed rows stay in results.csv
    width = max(7, *(len(c) + 1 for c in cols))
    seeds = [s for s in rows.values("seed", metric="best_epoch", lang=source) if s is not None]
    scores = means.filter(metric=metric, subset="", stat="")
    if any(r.ci_low is not None for r in scores):  # " [100.0, 100.0]" fits
        width = max(width, 15)
    layer = layers_name(scores[0].layers) if scores else "-"
    system = system or layer
    # Per-seed rows where the run kept them (a table of seed-less rows is one run).
    found = rows.filter(metric="best_epoch", lang=source, seed=lambda s: s is not None)
    epochs = [int(r.value) for r in found or rows.filter(metric="best_epoch", lang=source)]
    epoch_text = (f"best epoch {epochs[0]}" if len(epochs) == 1
                  else f"best epochs {', '.join(map(str, epochs))}")  # fmt: skip
    seed_text = ("" if not seeds else f"; seed {seeds[0]}" if len(seeds) == 1
                 else f"; mean of seeds {seeds}")  # fmt: skip
    title = (f"{task.name}: {metric} x100, encoder fine-tuned end to end ({system}); source "
             f"{source}; {epoch_text}, {steps} steps{seed_text}")  # fmt: skip
    head = f"{'layer':<8}" + "".join(f"{c:>{width}}" for c in cols)
    lines = [title, head]
    for name in (metric, *task.extra_metrics):
        found = means.filter(metric=name, subset="", stat="")
        values = {r.group or r.lang: r for r in found}
        if name != metric and not values:
            continue
        label = layer if name == metric else name
        lines.append(f"{label:<8}" + "".join(
            f"{100 * values[c].value:>{width}.1f}" if c in values else f"{'-':>{width}}"
            for c in cols
        ))  # fmt: skip
        if name != metric:
            continue
        sds = {r.group or r.lang: r.value
               for r in means.filter(metric=f"{name}_sd", stat=SD, subset="")}  # fmt: skip
        if sds:
            lines.append(f"{'± sd':<8}" + "".join(
                f"{100 * sds[c]:>{width}.1f}" if c in sds else f"{'-':>{width}}" for c in cols
            ))  # fmt: skip
        if any(r.ci_low is not None for r in values.values()):
            lines.append(f"{'95% CI':<8}" + "".join(
                f"{_interval(values[c]):>{width}}" if c in values else f"{'-':>{width}}"
                for c in cols
            ))  # fmt: skip
    if dev:
        kept = means.filter(metric=f"dev_{metric}", subset="dev", stat="", lang=source)
        if kept:
            lines.append(f"source dev {metric} of the kept epoch: {100 * kept[0].value:.1f}")
    notes = [f"{name}: {METRIC_NOTES[name]}" for name in task.extra_metrics if name in METRIC_NOTES]
    notes += [*notes_given, *([budget] if budget else [])]
    if any(line.startswith("95% CI") for line in lines):
        notes.append("95% CI: bootstrap over the evaluation sentences"
                     + (" and the seeds" if len(seeds) > 1 else "")
                     + " (docs/finetune.md)")  # fmt: skip
    return "\n".join([*lines, *notes])


def _interval(row: Row) -> str:
    """ "[85.2, 87.0]" (x100), or "n/a" when the row has no interval."""
    if row.ci_low is None or row.ci_high is None or row.ci_low != row.ci_low:
        return "n/a"
    return f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"

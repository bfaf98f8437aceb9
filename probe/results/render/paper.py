"""`probe paper` on screen and on disk: the seed paper's table (tasks as columns, the baseline
and D_k as rows, ours beside the published numbers), every Δ with its interval over the
baseline and over the best single layer chosen on dev, and the gain per k per task."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.results.gains import language_groups
from probe.results.intervals import interval_text, mark
from probe.results.rows import Row
from probe.results.table import Table

BASELINE = "baseline"  # the last layer through the head (the paper's baseline row)
SINGLE = "single (dev)"  # the best single layer, chosen per seed on the source dev score
CHOSEN = "dlfa (dev)"  # D_k with k chosen per seed on the source dev score
# The paper's tasks as it names them, and the metric its numbers are (XTREME's): accuracy,
# entity F1, and for POS XTREME's seqeval-0.0.12 F1 (probe.analysis.metrics "pos_f1").
TASK_NAMES = {"xnli": "XNLI", "pawsx": "PAWS-X", "panx": "NER", "udpos": "POS"}
PAPER_METRIC = {"udpos": "pos_f1"}
# mBERT, from a secondary summary of Chen et al. 2022 (not verified against its PDF):
# (baseline, best k, D_k at the best k). The baseline equals XTREME's published fine-tuned
# mBERT, so the paper very likely fine-tuned the encoder.
PUBLISHED: dict[str, tuple[float, int, float]] = {
    "xnli": (65.40, 11, 66.91), "pawsx": (81.94, 10, 84.33),
    "panx": (62.17, 8, 63.34), "udpos": (70.28, 10, 71.81),
}  # fmt: skip
CAVEAT = (
    "The paper's numbers are mBERT's, from a secondary summary of the paper (not verified "
    "against its PDF); its baseline equals XTREME's fine-tuned mBERT, so it very likely "
    "fine-tuned the encoder. Compare shapes (which k, how large a gain), not levels, unless "
    "this run fine-tuned mBERT on the full data."
)


def fused_name(k: int) -> str:
    """'D8': the last layer fused with layer k, as the paper names it."""
    return f"D{k}"


def metric_of(task: str, default: str) -> str:
    """The metric the paper reports for `task` (POS: XTREME's F1)."""
    return PAPER_METRIC.get(task, default)


def render_paper(rows: Table, settings: Mapping[str, Any], directory: Path) -> str:
    """Write paper_table.csv/json and gain_per_k.png; return the summary text."""
    tasks = [str(t) for t in settings["tasks"]]
    systems = _system_order(rows, tasks)
    cells = _cells(rows, tasks, systems)
    _write_table(cells, directory)
    plot_gains(rows, tasks, directory / "gain_per_k.png", str(settings["model"]))
    return "\n".join(_summary(rows, tasks, systems, cells, settings))


def _system_order(rows: Table, tasks: Sequence[str]) -> list[str]:
    names = set(rows.values("layer", group="all"))
    fused = sorted((n for n in names if n.startswith("D") and n[1:].isdigit()),
                   key=lambda n: int(n[1:]))  # fmt: skip
    return [n for n in (BASELINE, *fused, SINGLE, CHOSEN) if n in names]


def _level(rows: Table, task: str, system: str, group: str = "all") -> Row | None:
    found = rows.filter(task=task, layer=system, group=group, seed=None, stat="",
                        metric=lambda m: not m.startswith("gain_"))  # fmt: skip
    return found[0] if found else None


def _is_gain(metric: str) -> bool:
    return metric.startswith("gain_") and not metric.endswith("_sd")


def _delta(rows: Table, task: str, system: str, against: str, group: str) -> Row | None:
    found = rows.filter(task=task, layer=system, group=group, config=f"vs {against}", stat="",
                        metric=_is_gain)  # fmt: skip
    return found[0] if found else None


def _best(rows: Table, task: str, systems: Sequence[str]) -> str | None:
    """The D_k with the highest level on this table (chosen on test: optimistic); a tie goes
    to the lower k."""
    fused = [(r.value, -int(s[1:]), s) for s in systems if s.startswith("D")
             for r in [_level(rows, task, s)] if r is not None]  # fmt: skip
    return max(fused)[2] if fused else None


def _cells(rows: Table, tasks: Sequence[str], systems: Sequence[str]) -> list[dict[str, Any]]:
    """One record per (system, task): ours, the paper's, the Δs with intervals, best mark."""
    out = []
    for task in tasks:
        best = _best(rows, task, systems)
        published = PUBLISHED.get(task)
        for system in systems:
            level = _level(rows, task, system)
            if level is None:
                continue
            paper = None
            if published is not None:
                base, k, fused = published
                paper = base if system == BASELINE else fused if system == fused_name(k) else None
            record: dict[str, Any] = {
                "task": task,
                "system": system,
                "metric": level.metric,
                "ours": round(100 * level.value, 2),
                "paper": paper,
                "best": system == best,
            }
            for group in ("targets", "enf", "noenf"):  # the level per language group
                other = _level(rows, task, system, group)
                record[f"ours_{group}"] = None if other is None else round(100 * other.value, 2)
            # over the same languages as "ours" (all scored, the source included), so the Δ of
            # a row is the difference of its "ours" and the baseline's (up to rounding)
            for against in (BASELINE, SINGLE):
                d = _delta(rows, task, system, against, "all")
                tag = "baseline" if against == BASELINE else "single"
                record[f"delta_vs_{tag}"] = None if d is None else round(100 * d.value, 2)
                for end in ("ci_low", "ci_high"):
                    value = None if d is None else getattr(d, end)
                    record[f"delta_vs_{tag}_{end}"] = (
                        None if value is None else round(100 * value, 2)
                    )
            out.append(record)
    return out


def _write_table(cells: Sequence[Mapping[str, Any]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "paper_table.json").write_text(json.dumps(list(cells), indent=2) + "\n")
    if not cells:
        return
    with (directory / "paper_table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(cells[0]))
        writer.writeheader()
        writer.writerows(cells)


def _summary(
    rows: Table, tasks: Sequence[str], systems: Sequence[str],
    cells: Sequence[Mapping[str, Any]], settings: Mapping[str, Any],
) -> list[str]:  # fmt: skip
    seeds = ",".join(str(s) for s in settings["seeds"])
    budgets = ", ".join(f"{k} {v:,}" for k, v in settings["budgets"].items() if v is not None)
    lines = [
        f"Chen et al. 2022's protocol, {settings['mode']}, on {settings['model']}: the last "
        "layer (baseline) and D_k = the last layer fused with layer k through DLFA's gate",
        f"score x100 (XNLI, PAWS-X: accuracy; NER: entity F1; POS: XTREME's F1), mean over "
        f"seeds {seeds} of the average over every scored language (as XTREME averages: the "
        "source too, where its labels are), per task:",
        *_coverage_lines(rows, tasks, settings),
        f"budgets: {budgets or 'none (full data)'}",
        "",
    ]
    by = {(c["task"], c["system"]): c for c in cells}
    width = 15
    lines.append(f"{'system':<14}" + "".join(f"{TASK_NAMES.get(t, t):>{width}}" for t in tasks))
    lines.append(f"{'':<14}" + "".join(f"{'ours  paper':>{width}}" for _ in tasks))
    for system in systems:
        line = f"{system:<14}"
        for task in tasks:
            cell = by.get((task, system))
            if cell is None:
                line += f"{'-':>{width}}"
                continue
            ours = f"{cell['ours']:.2f}{'◀' if cell['best'] else ' '}"
            paper = f"{cell['paper']:.2f}" if cell["paper"] is not None else "-"
            line += f"{ours:>8}{paper:>7}"
        lines.append(line)
    lines += [
        "◀ the best D_k of this table per task (chosen on test, so optimistic; 'dlfa (dev)' is "
        "the zero-shot choice); the paper's column holds its baseline and its best D_k only.",
        *_published_lines(tasks, systems),
        *_chosen_lines(rows, tasks),
    ]
    if SINGLE not in systems:
        lines.append(f"{SINGLE}: not run in this mode (one more fine-tuning per layer); no Δ "
                     "over the best single layer is shown")  # fmt: skip
    lines.append("")
    for against in (BASELINE, SINGLE):
        for group in _distinct_groups(rows, tasks, settings["sources"]):
            lines += _delta_table(rows, tasks, systems, against, group)
    lines += _verdict(rows, tasks, systems)
    lines += ["", f"caveat: {CAVEAT}"]
    return lines


def _coverage_lines(rows: Table, tasks: Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """Per task, the split and languages its averages cover (XNLI and PAN-X are scored on
    dev here, the paper on test)."""
    out = []
    for task in tasks:
        langs = rows.values("lang", task=task, group="", subset="", stat="",
                            metric=lambda m: not m.startswith(("gain_", "chosen")))  # fmt: skip
        split = settings.get("eval_splits", {}).get(task, "?")
        out.append(f"  {TASK_NAMES.get(task, task)}: {split} of {len(langs)} "
                   f"({', '.join(sorted(langs))})")  # fmt: skip
    return out


def _published_lines(tasks: Sequence[str], systems: Sequence[str]) -> list[str]:
    """The paper's best D_k where this run left that k out (--ks)."""
    out = []
    for task in tasks:
        if task in PUBLISHED and fused_name(PUBLISHED[task][1]) not in systems:
            _, k, value = PUBLISHED[task]
            out.append(f"paper's best for {TASK_NAMES.get(task, task)}: D{k} {value:.2f} "
                       "(not in this run's --ks)")  # fmt: skip
    return out


def _chosen_lines(rows: Table, tasks: Sequence[str]) -> list[str]:
    out = []
    for system, letter in ((SINGLE, "j"), (CHOSEN, "k")):
        per_task = []
        for task in tasks:
            chosen = rows.filter(task=task, config=system, metric="chosen_layer")
            values = [int(r.value) for r in sorted(chosen, key=lambda r: r.seed or 0)]
            if values:
                per_task.append(
                    f"{TASK_NAMES.get(task, task)} {letter}={','.join(map(str, values))}"
                )
        if per_task:
            out.append(f"{system}: chosen per seed on source dev: " + "; ".join(per_task))
    return out


def _distinct_groups(rows: Table, tasks: Sequence[str], sources: Mapping[str, str]) -> list[str]:
    """The language groups worth a table: "all" (what the table's scores average), "targets",
    and "enf"/"noenf" where some task's group is not all of its targets (else the table
    would repeat the targets one)."""
    out = ["all", "targets"]
    for group in ("enf", "noenf"):
        for task in tasks:
            langs = rows.values("lang", task=task, group="", subset="", stat="")
            groups = language_groups(sources[task], langs)
            if group in groups and groups[group] != groups["targets"]:
                out.append(group)
                break
    return out


def _delta_table(
    rows: Table, tasks: Sequence[str], systems: Sequence[str], against: str, group: str
) -> list[str]:
    found = [(s, t, _delta(rows, t, s, against, group)) for s in systems for t in tasks]
    if not any(d is not None for _, _, d in found):
        return []
    width = 22
    lines = [f"Δ x100 over {against}, {group} average [95% interval over sentences and seeds]; "
             "* = the interval excludes 0"]  # fmt: skip
    lines.append(f"{'system':<14}" + "".join(f"{TASK_NAMES.get(t, t):>{width}}" for t in tasks))
    for system in systems:
        cells = [_delta(rows, t, system, against, group) for t in tasks]
        if all(c is None for c in cells):
            continue
        text = "".join(
            f"{'-' if c is None else f'{100 * c.value:+.1f} {interval_text(c)}{mark(c)}':>{width}}"
            for c in cells
        )
        lines.append(f"{system:<14}" + text)
    return [*lines, ""]


def _verdict(rows: Table, tasks: Sequence[str], systems: Sequence[str]) -> list[str]:
    """Per task, in words: does D_k with k chosen on dev beat the baseline, and the best
    single layer, beyond the interval on the targets?"""
    lines = ["Does fusion help? D_k with k chosen on source dev, targets average:"]
    for task in tasks:
        parts = []
        for against in (BASELINE, SINGLE):
            d = _delta(rows, task, CHOSEN, against, "targets")
            if d is None:
                continue
            verdict = ("beats" if mark(d) and d.value > 0 else
                       "is below" if mark(d) else "does not differ from")  # fmt: skip
            parts.append(f"{verdict} {against} ({100 * d.value:+.1f} {interval_text(d)})")
        if parts:
            lines.append(f"  {TASK_NAMES.get(task, task)}: " + "; ".join(parts))
    return lines if len(lines) > 1 else []


def plot_gains(rows: Table, tasks: Sequence[str], path: Path, model: str) -> None:
    """Δ per k per task (targets average, 95% interval): over the baseline, and over the
    best single layer chosen on dev."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, against in zip(axes, (BASELINE, SINGLE), strict=True):
        for task in tasks:
            points = []
            for r in rows.filter(
                task=task,
                group="targets",
                config=f"vs {against}",
                stat="",
                metric=_is_gain,
            ):
                if r.layer.startswith("D") and r.layer[1:].isdigit():
                    points.append((int(r.layer[1:]), r))
            if not points:
                continue
            points.sort(key=lambda p: p[0])
            ks = np.array([k for k, _ in points])
            values = np.array([100 * r.value for _, r in points])
            low = np.array(
                [100 * (r.ci_low if r.ci_low is not None else r.value) for _, r in points]
            )
            high = np.array(
                [100 * (r.ci_high if r.ci_high is not None else r.value) for _, r in points]
            )
            ax.errorbar(ks, values, yerr=[values - low, high - values], marker="o", capsize=3,
                        label=TASK_NAMES.get(task, task))  # fmt: skip
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("k (the layer fused with the last)")
        ax.set_ylabel(f"Δ x100 over {against}, targets average")
        ax.set_title(f"D_k over {against}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{model}: gain of fusing layer k with the last layer, per task (95% intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`probe grid` on screen and on disk: scores per system, every Δ against the matched
baselines with its seed sd and interval, a verdict per baseline, and the heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.gains import language_groups
from probe.results.intervals import interval_text, mark
from probe.results.rows import Row
from probe.results.table import Table

Pair = tuple[int, ...]
GROUPS = ("targets", "enf", "noenf")  # the gain rows' groups, in the tables' order
# What every fused system is compared with (probe.experiments.grid explains each).
BASELINES = ("last", "gated-last", "single (dev)", "layer k", "concat")
DEV_CHOSEN = ("dlfa (dev)", "single (dev)")


def pair_name(pair: Pair) -> str:
    """'3,6': how a pair is printed (and the legacy `layer` column)."""
    return ",".join(str(i) for i in pair)


def render_grid(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair,
    directory: Path, key: str, head: str = "dlfa",
) -> str:  # fmt: skip
    """Write grid_heatmap.png; return the summary: scores, Δ tables, verdict."""
    plot_grid(task, rows, source, langs, baseline, directory / "grid_heatmap.png", key, head)
    return grid_table(task, rows, source, langs, baseline, head)


def _system_name(r: Row) -> str:
    return r.config if r.config in DEV_CHOSEN else f"{r.head} {pair_name(r.layers)}"


def _systems(rows: Table, metric: str, head: str, last: int) -> list[tuple[str, Table]]:
    """(name, mean and sd score rows) of every system in the table's order: the last layer,
    the controls, the single layers, the fused pairs, the dev-chosen ones, concat."""
    means = rows.filter(metric=lambda m: m in (metric, f"{metric}_sd"), seed=None, subset="",
                        group="")  # fmt: skip
    order: dict[str, int] = {}
    for r in means:
        if r.stat:
            continue
        name = _system_name(r)
        single = len(r.layers) == 2 and r.layers[0] == r.layers[1]
        rank = (0 if r.layers == (last, last) and r.head == head else
                1 if r.head == "gated-last" else
                2 if single else
                3 if r.head == head and not r.config else
                4 if r.config in DEV_CHOSEN else 5)  # fmt: skip
        order.setdefault(name, rank)
    names = sorted(order, key=lambda n: order[n])  # stable: first-seen within a rank
    return [(n, Table(r for r in means if _system_name(r) == n)) for n in names]


def _chosen(rows: Table, config: str) -> str:
    """'k = 6,6,8' (per seed) for a dev-chosen system, '' when there is none."""
    chosen = rows.filter(metric="chosen_layer", config=config, seed=lambda s: s is not None)
    return ",".join(str(int(r.value)) for r in sorted(chosen, key=lambda r: r.seed or 0))


def _score_cell(mean: float | None, sd: float | None, width: int) -> str:
    if mean is None or np.isnan(mean):
        return f"{'-':>{width}}"
    text = f"{100 * mean:.1f}" + (f"±{100 * sd:.1f}" if sd is not None else "")
    return f"{text:>{width}}"


def _delta_cell(row: Row | None, sd: Row | None) -> str:
    if row is None:
        return "-"
    text = f"{100 * row.value:+.1f}" + (f"±{100 * sd.value:.1f}" if sd is not None else "")
    return f"{text} {interval_text(row)}{mark(row)}"


def grid_table(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair, head: str = "dlfa"
) -> str:
    """Scores (mean ± sd over seeds) per system and language, then per language group the Δ of
    every fused system over every baseline with its interval, then the verdict (x100)."""
    last = baseline[-1]
    seeds = sorted({r.seed for r in rows if r.seed is not None})
    over = f"mean ± sd over seeds {','.join(map(str, seeds))}" if seeds else "one run"
    lines = [
        f"{task.name}: {task.metric} x100, {over}; "
        f"trained on source {source}, every system with the same recipe; single (dev) / "
        "dlfa (dev): the single layer / fused pair with the best source dev score, per seed"
    ]
    lines += _score_lines(task.metric, rows, langs, head, last)
    groups = language_groups(source, langs)
    for group in GROUPS:  # a group with the same languages as "targets" would repeat it
        if group in groups and (group == "targets" or groups[group] != groups["targets"]):
            lines += _delta_lines(task.metric, rows, group)
    lines += _verdict(task.metric, rows)
    for name in task.extra_metrics:  # pos_f1 on UPOS tasks: what XTREME and DLFA report
        if rows.filter(metric=name):
            lines += ["", f"{task.name}: {name} x100; {METRIC_NOTES[name]}"]
            lines += _score_lines(name, rows, langs, head, last)[1:]
            lines += _delta_lines(name, rows, "targets")
    return "\n".join(lines)


def _score_lines(metric: str, rows: Table, langs: Sequence[str], head: str, last: int
                 ) -> list[str]:  # fmt: skip
    width = max(11, *(len(c) + 1 for c in langs))
    found = []
    for name, table in _systems(rows, metric, head, last):
        chosen = _chosen(rows, name) if name in DEV_CHOSEN else ""
        label = f"{name} [{'j' if name.startswith('single') else 'k'}={chosen}]"
        found.append((label if chosen else name, table))
    label_width = max([18, *(len(label) + 1 for label, _ in found)])
    lines = ["", f"{'system':<{label_width}}" + "".join(f"{c:>{width}}" for c in langs)]
    for label, table in found:
        mean = {r.lang: r.value for r in table if not r.stat}
        sd = {r.lang: r.value for r in table if r.stat}
        cells = "".join(_score_cell(mean.get(c), sd.get(c), width) for c in langs)
        lines.append(f"{label:<{label_width}}" + cells)
    return lines


def _deltas(metric: str, rows: Table, group: str) -> dict[tuple[str, str], tuple[Row, Row | None]]:
    """{(system, baseline): (Δ row, sd row or None)} of one language group."""
    found = rows.filter(metric=lambda m: m in (f"gain_{metric}", f"gain_{metric}_sd"),
                        group=group, seed=None)  # fmt: skip
    out: dict[tuple[str, str], tuple[Row, Row | None]] = {}
    for r in found.filter(stat=""):
        sd = found.filter(stat="sd", layers=r.layers, head=r.head, config=r.config, layer=r.layer)
        system = "dlfa (dev)" if r.layer == "dev" else f"{r.head} {pair_name(r.layers)}"
        out[(system, r.config.removeprefix("vs "))] = (r, sd[0] if sd else None)
    return out


def _delta_lines(metric: str, rows: Table, group: str) -> list[str]:
    deltas = _deltas(metric, rows, group)
    if not deltas:
        return []
    present = [b for b in BASELINES if any(base == b for _, base in deltas)]
    width = 26
    lines = [
        "",
        f"Δ {metric} x100 on the {group} average: mean ± sd over seeds [95% interval "
        "over sentences and seeds]; * = the interval excludes 0",
        f"{'system':<14}" + "".join(f"{'vs ' + b:>{width}}" for b in present),
    ]
    for system in dict.fromkeys(s for s, _ in deltas):
        cells = [_delta_cell(*deltas.get((system, b), (None, None))) for b in present]
        lines.append(f"{system:<14}" + "".join(f"{c:>{width}}" for c in cells))
    return lines


def _verdict(metric: str, rows: Table) -> list[str]:
    """Does fusion help? Per baseline, whether DLFA with k chosen on source dev beats it
    beyond its interval (target average); then the same for the best pair read off the test
    table, labelled as chosen on test (optimistic: the choice saw the targets)."""
    deltas = _deltas(metric, rows, "targets")
    lines: list[str] = []
    fused = {s: d for (s, b), d in deltas.items() if b == "last" and s != "dlfa (dev)"}
    best = max(fused, key=lambda s: fused[s][0].value) if fused else None
    for system, title in (("dlfa (dev)", "DLFA with k chosen on source dev"),
                          (best, f"the best pair on the target average, {best} (chosen on "
                                 "test, so optimistic)")):  # fmt: skip
        against = {b: d for (s, b), d in deltas.items() if s == system}
        if not against:
            continue
        lines += ["", f"Does fusion help? {title}, target average:"]
        for base in BASELINES:
            if base in against:
                row, sd = against[base]
                lines.append(f"  vs {base}: {_delta_cell(row, sd)}: {_beats(row)}")
    return lines


def _beats(row: Row) -> str:
    if row.ci_low is None or row.ci_high is None:
        return "no interval (no item statistics)"
    if row.ci_low > 0:
        return "beats it beyond the interval"
    if row.ci_high < 0:
        return "is worse than it beyond the interval"
    return "does not beat it beyond the interval"


def plot_grid(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair,
    path: Path, key: str, head: str = "dlfa",
) -> Path:  # fmt: skip
    """Heatmap: the head's pairs x languages, colour = mean gain over the last-layer baseline
    (a dot where its interval includes 0), text = mean score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    metric = task.metric
    scored = rows.filter(metric=metric, seed=None, subset="", group="", stat="", head=head,
                         config="")  # fmt: skip
    pairs = [p for p in scored.values("layers") if p == baseline or p[0] != p[1]]
    values = {(r.layers, r.lang): r.value for r in scored}
    gains = {(r.layers, r.group or r.lang): r
             for r in rows.filter(metric=f"gain_{metric}", config="vs last", seed=None, stat="",
                                  head=head, layer=lambda x: x != "dev")}  # fmt: skip
    cols = [*langs, "enf", "noenf"]
    grid = np.full((len(pairs), len(cols)), np.nan)
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            g = gains.get((p, c))
            grid[i, j] = (
                0.0 if p == baseline and c in langs else np.nan if g is None else 100 * g.value
            )
    limit = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.42 * len(pairs)), dpi=120)
    im = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            v, g = values.get((p, c)), gains.get((p, c))
            if v is not None:
                text = f"{100 * v:.1f}"
            else:
                text = f"{grid[i, j]:+.1f}" if np.isfinite(grid[i, j]) else ""
            if g is not None and not mark(g):
                text += "·"  # the gain's interval includes 0
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(pairs)), [pair_name(p) + (" (baseline)" if p == baseline else "")
                                      for p in pairs])  # fmt: skip
    ax.set_xlabel("language (enf/noenf: mean gain inside/outside the source's family)")
    ax.set_ylabel("layer pair (k, last)")
    ax.set_title(f"{task.name} {key}: {metric} (text, seed mean) and gain over last layer "
                 f"(colour; · = interval includes 0), source {source}", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, label=f"gain in {metric} (x100)")
    return save_figure(fig, path)  # wraps the title, which names the cache key, to fit

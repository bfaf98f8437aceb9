"""`probe structural` on screen and on disk: one table and one layer curve per metric.

Each cell is the seed mean (± sd with several seeds) x100; the target average of `uuas` and
`root_acc` carries its 95% paired bootstrap interval, the Spearman averages their plain
mean. Under each table: the layer where the source's and the targets' curves peak, and
where that lies in the network (the literature's shape is a peak in the middle layers,
below the top: Hewitt & Manning 2019, Chi et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from probe.data.tasks import Task
from probe.results.gains import SD
from probe.results.render.layers import _interval, _num, _table
from probe.results.report import plot_layer_curves, text_table
from probe.results.table import Table

# The metrics of each probe kind, in table order.
METRICS: dict[str, tuple[str, ...]] = {"distance": ("uuas", "dspr"), "depth": ("root_acc", "nspr")}
NAMES = {
    "uuas": "UUAS (MST of predicted distances vs the gold tree, punctuation excluded)",
    "dspr": "distance Spearman (averaged over sentence lengths 5-50)",
    "root_acc": "root accuracy (least-deep non-punctuation word is the root)",
    "nspr": "depth Spearman (averaged over sentence lengths 5-50)",
}


def render_structural(
    task: Task, rows: Table, source: str, langs: Sequence[str], n_layers: int,
    directory: Path, key: str, seeds: Sequence[int] = (0,),
) -> str:  # fmt: skip
    """Write <metric>_per_layer.png for every metric the run has; return the tables."""
    spread = "mean ± sd over seeds " if len(seeds) > 1 else "seed "
    layer_names = [str(i) for i in range(n_layers)]
    out = []
    for kind, metrics in METRICS.items():
        for metric in metrics:
            chosen = rows.filter(head=kind, metric=lambda m, x=metric: m in (x, f"{x}_sd"))
            if not chosen:
                continue
            cells: dict[tuple[str, str], str] = {}
            means: dict[tuple[str, str], float] = {}
            sds = {(r.layer, r.lang): r.value for r in chosen.filter(stat=SD)}
            for r in chosen.filter(seed=None, stat="", group=""):
                means[(r.layer, r.lang)] = r.value
                cells[(r.layer, r.lang)] = _num(r.value, sds.get((r.layer, r.lang)))
            columns = list(langs)
            for r in chosen.filter(lang="targets", stat=""):
                means[(r.layer, "targets")] = r.value
                cells[(r.layer, "tgt-avg")] = _num(r.value)
                if r.ci_low is not None:
                    cells[(r.layer, "tgt 95% CI")] = _interval(r)
            if any(c == "tgt-avg" for _, c in cells):
                columns.append("tgt-avg")
            if any(c == "tgt 95% CI" for _, c in cells):
                columns.append("tgt 95% CI")
            out.append(f"{task.name}: {NAMES[metric]} x100, {kind} probe per layer (source "
                       f"{source}; {spread}{','.join(map(str, seeds))})")  # fmt: skip
            out.append(_table(layer_names, columns, cells))
            out.append(peak_line(means, source, n_layers, metric))
            out.append("")
            series = {lang: [means.get((str(i), lang), float("nan")) for i in range(n_layers)]
                      for lang in langs}  # fmt: skip
            plot_layer_curves(
                list(range(n_layers)), series, directory / f"{metric}_per_layer.png",
                highlight=source, ylabel=f"{metric} (x100)",
                title=f"{task.name} ({key}): {kind} probe, {metric} per layer",
            )  # fmt: skip
    if len(langs) > 1:
        out.append("tgt-avg: mean over the targets; 95% CI: paired bootstrap over sentences "
                   "and seeds (uuas, root_acc)")  # fmt: skip
    return "\n".join(out).rstrip()


def peak_layer(values: Sequence[float]) -> int | None:
    """The index of the largest value (NaN left out; ties: the first), or None if none."""
    found = [i for i, v in enumerate(values) if v == v]
    return max(found, key=lambda i: values[i]) if found else None  # ties: the lowest layer


def depth_word(layer: int, n_layers: int) -> str:
    """Where a layer sits among the hidden layers 1..L: lower, middle or upper third, or the
    embeddings (0) or the top (L)."""
    top = n_layers - 1
    if layer == 0:
        return "the embeddings"
    if layer == top:
        return "the top layer"
    third = layer / top
    return "the lower layers" if third < 1 / 3 else "the middle layers" if third <= 2 / 3 else (
        "the upper layers")  # fmt: skip


def peak_line(means: dict[tuple[str, str], float], source: str, n_layers: int, metric: str) -> str:
    """The sentence saying where the source's and the targets' curves of `metric` peak."""
    parts = []
    for scope, name in ((source, source), ("targets", "the target average")):
        values = [means.get((str(i), scope), float("nan")) for i in range(n_layers)]
        best = peak_layer(values)
        if best is not None:
            parts.append(f"layer {best} of {n_layers - 1} ({depth_word(best, n_layers)}, "
                         f"{values[best] * 100:.1f}) on {name}")  # fmt: skip
    return f"{metric} peaks at " + "; at ".join(parts) if parts else f"{metric}: no scores"


# --- the map's structural curves ---------------------------------------------------------------


def map_curves(
    rows: Table, task: str, metric: str, source: str, targets: Sequence[str], n_layers: int
) -> dict[str, dict[str, list[float]]]:
    """{curve: {"source": per layer, "targets": per layer}}: the task's own probe first (its
    seed-mean `metric`), then each `--structural` curve (head "structural": uuas, or a word
    task's accuracy); {} when the run has no extra curve."""
    curves = list(dict.fromkeys(rows.values("config", head="structural")))
    if not curves:
        return {}

    def per_layer(chosen: Table, lang: str) -> list[float]:
        cells = {r.layers[0]: r.value for r in chosen if r.lang == lang and r.layers}
        return [cells.get(i, float("nan")) for i in range(n_layers)]

    def both(chosen: Table) -> dict[str, list[float]]:
        by_target = [per_layer(chosen, t) for t in targets]
        mean = [_nanmean([t[i] for t in by_target]) for i in range(n_layers)]
        return {"source": per_layer(chosen, source), "targets": mean}

    out = {f"{task} {metric}": both(rows.filter(head="linear", metric=metric, seed=None,
                                                stat="", group="", config=""))}  # fmt: skip
    for curve in curves:
        wanted = "uuas" if curve == "uuas" else "accuracy"
        out[curve if curve == "uuas" else f"{curve} accuracy"] = both(
            rows.filter(head="structural", config=curve, metric=wanted, stat="", group="")
        )
    return out


def map_curve_lines(curves: dict[str, dict[str, list[float]]], source: str) -> list[str]:
    """The map summary's structural-curves table (source scores x100) and where each curve
    peaks, on the source and on the target average."""
    if not curves:
        return []
    n_layers = len(next(iter(curves.values()))["source"])
    names = list(curves)
    cells = {(str(i), name): curves[name]["source"][i] for name in names for i in range(n_layers)}
    lines = [f"structural curves per layer, x100 (source {source}; --structural curves: first "
             "seed)", text_table([str(i) for i in range(n_layers)], names, cells)]  # fmt: skip
    for name in names:
        means = {(str(i), scope): curves[name][key][i] for i in range(n_layers)
                 for scope, key in ((source, "source"), ("targets", "targets"))}  # fmt: skip
        lines.append(peak_line(means, source, n_layers, name))
    return [*lines, ""]


def plot_map_curves(curves: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """structural_curves.png: every curve's source score per layer."""
    if curves:
        n_layers = len(next(iter(curves.values()))["source"])
        plot_layer_curves(list(range(n_layers)), {k: v["source"] for k, v in curves.items()},
                          path, title=title, ylabel="source score (x100)")  # fmt: skip


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")

"""MDL probing on screen and on disk: the per-layer online-code table, its rows and its plot.

Input is per-layer values, {layer: OnlineCode} (what `probe.train.mdl.online_code` returns
for each layer), or a `Table` holding the rows `mdl_rows` writes, so a finished run can be
re-plotted from its results.csv. Code lengths print in kbits: a 20k-word English POS sample
costs 83 kbits with the uniform code and 7-19 kbits online (me5-small), so layers differ by
kbits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.analysis.mdl import OnlineCode
from probe.results.report import save_figure
from probe.results.rows import Row
from probe.results.table import Table

# Metric names of the rows; kbits so results.csv reads like the table.
ONLINE, UNIFORM, COMPRESSION = "mdl_online_kbits", "mdl_uniform_kbits", "mdl_compression"


@dataclass(frozen=True)
class _Point:
    online_kbits: float
    uniform_kbits: float
    compression: float


PerLayer = Mapping[int, OnlineCode] | Table


def mdl_rows(codes: Mapping[int, OnlineCode], *, lang: str, head: str = "linear") -> list[Row]:
    """Three rows per layer (online and uniform kbits, compression) for `lang`'s training
    split, `layers=(layer,)`, ready for results.csv."""
    rows = []
    for layer, code in sorted(codes.items()):
        for metric, value in ((ONLINE, code.online_kbits), (UNIFORM, code.uniform_kbits),
                              (COMPRESSION, code.compression)):  # fmt: skip
            rows.append(Row(head, str(layer), lang, metric, value, layers=(layer,)))
    return rows


def _points(values: PerLayer, head: str) -> dict[int, _Point]:
    if not isinstance(values, Table):
        return {layer: _Point(c.online_kbits, c.uniform_kbits, c.compression)
                for layer, c in values.items()}  # fmt: skip
    picked: dict[int, dict[str, float]] = {}
    for row in values.filter(head=head):
        if row.metric in (ONLINE, UNIFORM, COMPRESSION) and len(row.layers) == 1 and not row.stat:
            picked.setdefault(row.layers[0], {})[row.metric] = row.value
    return {layer: _Point(v.get(ONLINE, math.nan), v.get(UNIFORM, math.nan),
                          v.get(COMPRESSION, math.nan))
            for layer, v in picked.items()}  # fmt: skip


def mdl_table(values: PerLayer, *, head: str = "linear") -> str:
    """A fixed-width table, one line per layer: online and uniform code (kbits), compression."""
    points = _points(values, head)
    lines = [f"{'layer':<6}{'online kbits':>14}{'uniform kbits':>15}{'compress':>10}"]
    for layer, p in sorted(points.items()):
        lines.append(f"{layer:<6}{p.online_kbits:>14.2f}{p.uniform_kbits:>15.2f}"
                     f"{p.compression:>10.2f}")  # fmt: skip
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mdl(
    values: PerLayer,
    path: Path,
    *,
    title: str,
    label: str = "probe",
    compare: Mapping[str, PerLayer] | None = None,
    head: str = "linear",
) -> Path:
    """Top: online code length per layer (kbits; lower = the labels are easier to learn from
    the layer), with the uniform code as a dotted line. Bottom: compression, uniform / online
    (1 = no help from the features). `compare` adds dashed curves (a random-weights twin, a
    control task) on both panels."""
    plt = _pyplot()
    series = {label: _points(values, head)}
    for name, other in (compare or {}).items():
        series[name] = _points(other, head)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.4), dpi=120, sharex=True)
    cmap = plt.get_cmap("tab10")
    for i, (name, points) in enumerate(series.items()):
        layers = sorted(points)
        style = "-" if i == 0 else "--"
        colour = cmap(i % 10)
        top.plot(layers, [points[x].online_kbits for x in layers], style, marker="o", ms=3.5,
                 lw=2.2 if i == 0 else 1.5, color=colour, label=f"{name}: online code")  # fmt: skip
        bottom.plot(layers, [points[x].compression for x in layers], style, marker="o", ms=3.5,
                    lw=2.2 if i == 0 else 1.5, color=colour, label=name)  # fmt: skip
    first = series[label]
    if first:
        layers = sorted(first)
        top.plot(layers, [first[x].uniform_kbits for x in layers], ":", color="grey", lw=1.5,
                 label="uniform code (no features)")  # fmt: skip
        bottom.set_xticks(layers)
    bottom.axhline(1.0, color="grey", lw=1, ls=":")
    top.set_ylim(bottom=0)
    top.set_ylabel("code length (kbits)")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best")
    bottom.set_xlabel("layer (0 = embeddings)")
    bottom.set_ylabel("compression (uniform / online)")
    bottom.grid(alpha=0.3)
    if len(series) > 1:
        bottom.legend(fontsize=8, loc="best")
    return save_figure(fig, path)

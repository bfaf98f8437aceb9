"""The per-layer atlas: one column per measure a run reports layer by layer.

Structural columns say how well a layer encodes the source language's structure (a task's
probe score, selectivity, the structural probes' UUAS / Spearman, a morphological feature);
cross-lingual ones say how much of it carries over or how language-neutral the layer is
(zero-shot score on the targets, transfer ratio, Tatoeba retrieval, CKA with English, DLFA
fused with the last layer). Every value is read from a run's rows or its map.csv as the run
wrote it: the atlas recomputes no score, so its numbers are the runs' summaries' numbers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from probe.results.atlas.runs import MORPH_PREFIX, Run
from probe.results.table import Table

STRUCTURAL, CROSSLINGUAL = "structural", "cross-lingual"

# `probe structural`'s metrics (issue 21), in the order the atlas shows them.
STRUCTURE_METRICS = {
    "uuas": "UUAS",
    "dspr": "distance Spearman",
    "root_acc": "root accuracy",
    "nspr": "depth Spearman",
}
# Rows that are not a task's score: what `_task_metric` never takes for the task's metric.
_NOT_SCORES = ("selectivity", "ece", "best_epoch", "mix_weight", "nll")


@dataclass(frozen=True)
class Cell:
    """One layer's value, with its interval ([low, high], a 95% bootstrap) or its standard
    deviation over seeds, whichever the run reported (None when neither)."""

    value: float
    low: float | None = None
    high: float | None = None
    sd: float | None = None


@dataclass(frozen=True)
class Column:
    """One measure over the layers (0 = embeddings), read from one run."""

    label: str
    group: str
    what: str  # one line: what the number is, for the column's tooltip and the legend
    run: Run = field(compare=False, repr=False)
    cells: dict[int, Cell] = field(default_factory=dict)
    # A task probe's score on its source: the kind of column whose peak is "most structural"
    # (the first such, the main task's; the map marks its most structural layer the same way).
    task_score: bool = False

    def peak(self) -> int | None:
        """The best layer; ties go to the lower layer (as the map's extreme layers do)."""
        finite = [(c.value, -layer) for layer, c in self.cells.items() if not math.isnan(c.value)]
        return -max(finite)[1] if finite else None


@dataclass(frozen=True)
class Atlas:
    """The columns of one model, its depth and its two marked layers (with the rule)."""

    columns: list[Column]
    n_layers: int
    most_structural: int | None
    structural_rule: str
    most_neutral: int | None
    neutral_rule: str

    def column(self, label: str) -> Column | None:
        return next((c for c in self.columns if c.label == label), None)


def build_atlas(runs: Iterable[Run]) -> Atlas:
    """The atlas of the runs the report reads (one per command and task)."""
    columns: list[Column] = []
    seen: set[str] = set()
    for run in runs:
        for col in _columns(run):
            if col.label not in seen and col.cells:  # an earlier command's column wins
                seen.add(col.label)
                columns.append(col)
    columns.sort(key=lambda c: c.group != STRUCTURAL)  # stable: structural first
    depth = max((max(c.cells) + 1 for c in columns), default=0)
    structural = _first(columns, STRUCTURAL, lambda c: c.task_score)
    neutral = _first(columns, CROSSLINGUAL, lambda c: c.label == "retrieval") or _first(
        columns, CROSSLINGUAL, lambda c: c.label == "CKA"
    )
    return Atlas(
        columns,
        depth,
        structural.peak() if structural else None,
        _rule(structural) if structural else "no probe score: run probe layers",
        neutral.peak() if neutral else None,
        _rule(neutral) if neutral else "no retrieval or CKA: run probe map",
    )


def _rule(column: Column) -> str:
    """Why a layer is marked: the peak of `column`, and the layers that print the same value
    (x100, one decimal), so a mark is not read as a difference the table does not show."""
    peak = column.peak()
    if peak is None:
        return f"{column.label} has no values"
    shown = round(100 * column.cells[peak].value, 1)
    ties = [k for k, c in column.cells.items() if k != peak and round(100 * c.value, 1) == shown]
    same = f"; layer{'s' if len(ties) > 1 else ''} {', '.join(map(str, ties))} print the same"
    return f"the peak of {column.label}, {shown:.1f}" + (f"{same} {shown:.1f}" if ties else "")


def _first(columns: list[Column], group: str, test: Callable[[Column], bool]) -> Column | None:
    return next((c for c in columns if c.group == group and test(c)), None)


def _columns(run: Run) -> list[Column]:
    if run.command in ("layers", "map"):
        cols = _probe_columns(run)
        return cols + (_map_columns(run) if run.command == "map" else [])
    if run.command == "structural":
        return _structure_columns(run)
    if run.command == "grid":
        return _grid_columns(run)
    return []


# --- probes per layer (layers, map) ------------------------------------------------------------


def _task_metric(rows: Table, head: str = "linear", n_layers: int = 1) -> str | None:
    """The task's metric: the first its per-layer rows of `head` (reading `n_layers` layers:
    2 for a fused pair) report: accuracy for POS, entity F1 for NER, as the run's summary
    leads with it."""
    for row in rows:
        if (
            row.head == head
            and row.stat == ""
            and len(row.layers) == n_layers
            and not row.metric.endswith("_sd")
            and row.metric not in _NOT_SCORES
        ):
            return row.metric
    return None


def _layer_cells(rows: Table, metric: str, **where: object) -> dict[int, Cell]:
    """{layer: Cell} of the seed-mean rows of `metric`, with the `<metric>_sd` rows' sd."""
    where = {"subset": "", "eval_task": "", **where}  # the whole evaluation set, the task's own
    mean = {
        int(r.layer): r
        for r in rows.filter(metric=metric, stat="", seed=None, **where)
        if r.layer.isdigit()
    }
    sd = {
        int(r.layer): r.value
        for r in rows.filter(metric=f"{metric}_sd", stat="sd", **where)
        if r.layer.isdigit()
    }
    return {
        layer: Cell(r.value, r.ci_low, r.ci_high, sd.get(layer))
        for layer, r in sorted(mean.items())
    }


def _probe_columns(run: Run) -> list[Column]:
    rows = run.rows.filter(head="linear")
    metric = _task_metric(rows)
    if metric is None:
        return []
    src, task = run.source, run.task
    if task.startswith(MORPH_PREFIX):
        feature = task[len(MORPH_PREFIX) :]
        return [
            Column(
                f"{feature} ({src})",
                STRUCTURAL,
                f"morphology: {feature} {metric} of a linear probe on {src}",
                run,
                _layer_cells(rows, metric, lang=src),
                task_score=True,
            )
        ]
    cols = [
        Column(
            f"{task} {metric} ({src})",
            STRUCTURAL,
            f"{task} {metric} of a linear probe trained and scored on {src}",
            run,
            _layer_cells(rows, metric, lang=src),
            task_score=True,
        ),
        Column(
            f"{task} selectivity ({src})",
            STRUCTURAL,
            f"{task} accuracy minus a control task's (Hewitt & Liang) on {src}",
            run,
            _layer_cells(rows, "selectivity", lang=src),
        ),
        Column(
            f"{task} zero-shot",
            CROSSLINGUAL,
            f"{task} {metric} of the {src} probe on the targets, mean over {' '.join(run.targets)}",
            run,
            _layer_cells(rows, metric, lang="targets", group="targets"),
        ),
    ]
    return cols


def _map_columns(run: Run) -> list[Column]:
    """Transfer ratio, retrieval and CKA from the map's own per-layer curves (map.csv): the
    means over the targets the map's summary prints and marks its extreme layers by."""
    path = run.path / "map.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        records = list(csv.DictReader(f))
    wanted = {
        "transfer_ratio": ("transfer ratio", "target / source score, mean over the targets"),
        "retrieval": (
            "retrieval",
            "Tatoeba retrieval with English, centred, mean of xx->en "
            "and en->xx over the targets with pairs",
        ),
        "cka": ("CKA", "linear CKA with English on Tatoeba pairs, mean over the targets"),
    }
    cols = []
    for name, (label, what) in wanted.items():
        cells = {
            int(r["layer"]): Cell(float(r[name]))
            for r in records
            if r.get(name) not in (None, "") and not math.isnan(float(r[name]))
        }
        cols.append(Column(label, CROSSLINGUAL, what, run, cells))
    return cols


# --- structural probes (probe structural) ------------------------------------------------------


def _structure_columns(run: Run) -> list[Column]:
    """UUAS and the Spearman measures on the source, and UUAS zero-shot on the targets."""
    rows = run.rows
    src = run.source
    cols = []
    for metric, name in STRUCTURE_METRICS.items():
        cells = _layer_cells(rows, metric, lang=src)
        cols.append(
            Column(
                f"{name} ({src})",
                STRUCTURAL,
                f"structural probe ({run.task}): {name} on {src}",
                run,
                cells,
            )
        )
    targets = _layer_cells(rows, "uuas", lang="targets")
    if not targets:
        rows = rows.filter(metric="uuas", stat="", seed=None, subset="", eval_task="")
        targets = _mean_over(((r.layer, r.lang, r.value) for r in rows), run.targets)
    what = f"structural probe: UUAS of the {src} probe, mean over {' '.join(run.targets)}"
    cols.append(Column("UUAS zero-shot", CROSSLINGUAL, what, run, targets))
    return cols


def _mean_over(values: Iterable[tuple[str, str, float]], langs: list[str]) -> dict[int, Cell]:
    """{layer: mean over `langs`} of (layer, language, value) triples, for the layers every
    language has (a mean over fewer languages would not be the same measure)."""
    by_layer: dict[int, dict[str, float]] = {}
    for layer, lang, value in values:
        if lang in langs and layer.isdigit():
            by_layer.setdefault(int(layer), {})[lang] = value
    return {
        layer: Cell(sum(v.values()) / len(v))
        for layer, v in sorted(by_layer.items())
        if len(v) == len(langs) and langs
    }


# --- DLFA fused with the last layer (probe grid) -----------------------------------------------


def _grid_columns(run: Run) -> list[Column]:
    """DLFA (k, last) per k: the grid's fused heads, mean over the targets per layer k."""
    rows = run.rows.filter(head="dlfa", stat="", seed=None, subset="", eval_task="")
    metric = _task_metric(rows, head="dlfa", n_layers=2)
    if metric is None:
        return []
    last = max((max(r.layers) for r in rows if r.layers), default=None)
    if last is None:
        return []
    pairs = (
        (str(r.layers[0]), r.lang, r.value)
        for r in rows.filter(metric=metric, config="")
        if len(r.layers) == 2 and r.layers[1] == last
    )
    what = (
        f"{run.task} {metric} of DLFA fusing layer k with the last ({last}), trained on "
        f"{run.source}, mean over {' '.join(run.targets)}"
    )
    return [
        Column(
            f"DLFA (k,{last}) zero-shot", CROSSLINGUAL, what, run, _mean_over(pairs, run.targets)
        )
    ]

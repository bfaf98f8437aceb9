"""The typed result row: one number and every coordinate that says what it measures.

The first five fields are the long-format columns `results.csv` has always had (notebooks
read them); the typed fields after them carry the structure those strings used to encode
(`layers=(3, 6)` rather than `"3,6"`, `eval_task="pos-gum"` rather than `"en:pos-gum"`), so
summaries and plots filter on fields instead of parsing strings back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# results.csv columns, in order: the five long-format ones, then the typed ones.
COLUMNS = ("head", "layer", "lang", "metric", "value", "task", "model", "layers", "config",
           "eval_task", "subset", "group", "seed", "ci_low", "ci_high", "stat")  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One number of a run.

    head: the head or analysis (linear, control, scalar_mix, dlfa, concat, finetune, ...);
    layer: the layer column as printed ("3", "3,6", "mix", or a configuration name);
    lang: the language scored, or an aggregate ("targets", "enf", a family);
    metric, value: what was measured and its value.
    task / model: the task trained for and the cache key (or model slug) — stamped on every
    row by the experiment base; layers: the layer indices read (() when none); config: a
    configuration, regime or method; eval_task: the evaluation task when it is not `task`;
    subset: a part of the evaluation data (a genre, "dev"); group: the aggregate a row
    averages over; seed: None for a single run or a mean over seeds; ci_low/ci_high: room
    for a confidence interval; stat: what the value is of its coordinates ("" the number
    itself, "sd" its standard deviation over seeds).
    """

    head: str
    layer: str
    lang: str
    metric: str
    value: float
    task: str = ""
    model: str = ""
    layers: tuple[int, ...] = ()
    config: str = ""
    eval_task: str = ""
    subset: str = ""
    group: str = ""
    seed: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    stat: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        """The inverse of `to_dict` (JSON gives lists); rows saved before the typed fields
        existed load with their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["layers"] = tuple(int(x) for x in values.get("layers", ()))
        return cls(**values)

"""Per-item statistics of score rows: what jobs return beside their rows, for the intervals.

A job that scores a system on a language returns, beside the score `Row`, an `ItemScores`
with the same coordinates and the per-item counts of that metric
(probe.analysis.item_scores). They travel with the rows through the pool and the journal, and
reach the experiment's aggregation as `Context.items`, where `probe.results.intervals` turns
them into bootstrap intervals. They are not results themselves: results.csv holds the
intervals, not the counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analysis.item_scores import ITEM_COLUMNS, item_stats
from probe.analysis.metrics import score
from probe.results.rows import Row


@dataclass(frozen=True, eq=False)
class ItemScores:
    """The per-item statistics (items, columns) of the score row `row` (its value unused)."""

    row: Row
    stats: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row.to_dict(), "stats": self.stats.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemScores:
        return cls(Row.from_dict(data["row"]), np.asarray(data["stats"], dtype=np.int64))


def item_key(row: Row) -> Row:
    """The coordinates that name a score row: every field but its value, task and model (the
    run stamps those after the jobs)."""
    return dataclasses.replace(row, value=0.0, task="", model="", ci_low=None, ci_high=None)


def scored_items(
    row: Row,
    pred: np.ndarray,
    gold: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
) -> ItemScores:
    """The item statistics of the score row `row` (its metric) from predicted label ids."""
    stats = item_stats(row.metric, pred, gold, offsets=offsets, label_names=label_names)
    return ItemScores(row, stats)


def scored_rows(
    make_row: Callable[[str, float], Row],
    metric: str,
    probs: np.ndarray,
    gold: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    extra: Sequence[str] = (),
) -> list[Row | ItemScores]:
    """Every score of `probs` against `gold` (`probe.analysis.metrics.score`) as a row
    (`make_row(metric, value)` gives its coordinates), each followed by its item statistics
    where the metric has them: what a job returns for one system on one evaluation set."""
    pred = probs.argmax(axis=1)
    rows: list[Row | ItemScores] = []
    for name, value in score(metric, probs, gold, offsets=offsets, label_names=label_names,
                             extra=extra).items():  # fmt: skip
        scored = make_row(name, value)
        rows.append(scored)
        if name in ITEM_COLUMNS:
            rows.append(scored_items(scored, pred, gold, offsets=offsets, label_names=label_names))
    return rows


class ItemSet:
    """Every job's item statistics of one run, looked up by the score rows they belong to."""

    def __init__(self, items: Iterable[ItemScores] = ()) -> None:
        self._by_key: dict[Row, np.ndarray] = {}
        for item in items:
            key = item_key(item.row)
            if key in self._by_key and self._by_key[key] is not item.stats:
                # Two systems under one name would be paired with themselves: a falsely
                # tight interval. Jobs must tell their score rows apart (head, layers,
                # config, seed, ...).
                raise ValueError(f"two item statistics for one score row: {key}")
            self._by_key[key] = item.stats

    def triples(self) -> list[tuple[str, str, np.ndarray]]:
        """(lang, metric, stats) of every entry: what `PairedBootstrap.prepare` takes."""
        return [(key.lang, key.metric, stats) for key, stats in self._by_key.items()]

    def entries(self) -> list[ItemScores]:
        """Every entry, as ItemScores (to build a larger set from this one)."""
        return [ItemScores(key, stats) for key, stats in self._by_key.items()]

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._by_key)

    def __contains__(self, row: object) -> bool:
        return isinstance(row, Row) and item_key(row) in self._by_key

    def stats(self, row: Row) -> np.ndarray:
        try:
            return self._by_key[item_key(row)]
        except KeyError:
            raise KeyError(f"no item statistics for {row}") from None

    def systems(self, rows: Iterable[Row]) -> dict[str, list[np.ndarray]]:
        """{lang: [item statistics per seed]} of a system's score rows (one per language and
        seed, ordered by seed): the input of `PairedBootstrap`. Rows of one language are
        ordered by seed so that two systems' seed lists line up."""
        by_lang: dict[str, list[tuple[int, np.ndarray]]] = {}
        for row in rows:
            by_lang.setdefault(row.lang, []).append((row.seed or 0, self.stats(row)))
        return {lang: [s for _, s in sorted(found, key=lambda x: x[0])]
                for lang, found in by_lang.items()}  # fmt: skip

    def covers(self, rows: Iterable[Row]) -> bool:
        """Whether every row has item statistics (an interval can be computed)."""
        return all(row in self for row in rows)


def split_output(output: Sequence[Any]) -> tuple[list[Row], list[ItemScores]]:
    """A job's output cut into its rows and its item statistics."""
    rows = [x for x in output if isinstance(x, Row)]
    items = [x for x in output if isinstance(x, ItemScores)]
    return rows, items


# What one job returns: its rows, and the item statistics of its score rows (if any).
JobOutput = Sequence[Row | ItemScores]

"""A small table of typed rows: filter, pivot, look up one value, and read/write results files."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from probe.results.rows import COLUMNS, Row


class Table(Sequence[Row]):
    """Rows in order, with the few queries summaries and plots need.

    `filter(head="linear", lang=lambda l: l != "en")`: a field equals a value, or a predicate
    holds. `pivot("layer", "lang", head="linear", metric="accuracy")`: {layer: {lang: value}}
    in first-seen order. `one(...)`: the value of exactly one matching row.
    """

    def __init__(self, rows: Iterable[Row] = ()) -> None:
        self._rows = list(rows)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> Table: ...

    def __getitem__(self, index: int | slice) -> Row | Table:
        if isinstance(index, slice):
            return Table(self._rows[index])
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __add__(self, other: Iterable[Row]) -> Table:
        return Table([*self._rows, *other])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Table | list) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Table({len(self)} rows)"

    def filter(self, **where: Any) -> Table:
        return Table(r for r in self._rows if _matches(r, where))

    def one(self, **where: Any) -> float:
        found = self.filter(**where)
        if len(found) != 1:
            raise KeyError(f"{len(found)} rows match {where}, expected exactly one")
        return found[0].value

    def values(self, field: str, **where: Any) -> list[Any]:
        """The distinct values of `field` among the matching rows, in first-seen order."""
        return list(dict.fromkeys(getattr(r, field) for r in self.filter(**where)))

    def pivot(self, index: str, columns: str, **where: Any) -> dict[Any, dict[Any, float]]:
        out: dict[Any, dict[Any, float]] = {}
        for r in self.filter(**where):
            out.setdefault(getattr(r, index), {})[getattr(r, columns)] = r.value
        return out

    def write(self, directory: Path, settings: Mapping[str, Any]) -> None:
        """results.csv (one row per number), results.json (settings + rows), settings.json."""
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "results.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in self._rows:
                writer.writerow([_cell(name, getattr(r, name)) for name in COLUMNS])
        payload = {"settings": dict(settings), "rows": [r.to_dict() for r in self._rows]}
        (directory / "results.json").write_text(json.dumps(payload, indent=1, default=str))
        (directory / "settings.json").write_text(json.dumps(dict(settings), indent=1, default=str))


def read_table(path: Path) -> Table:
    """The rows of a results.json or results.csv (or of the directory holding them)."""
    if path.is_dir():
        path = path / "results.json"
    if path.suffix == ".json":
        return Table(Row.from_dict(r) for r in json.loads(path.read_text())["rows"])
    with path.open(newline="") as f:
        return Table(_row_from_csv(record) for record in csv.DictReader(f))


def _matches(row: Row, where: Mapping[str, Any]) -> bool:
    for name, wanted in where.items():
        value = getattr(row, name)
        if callable(wanted):
            if not wanted(value):
                return False
        elif value != wanted:
            return False
    return True


def _cell(name: str, value: Any) -> str:
    if name == "value":
        return f"{value:.6g}"
    if name == "layers":
        return " ".join(str(i) for i in value)
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _row_from_csv(record: Mapping[str, str]) -> Row:
    parse: dict[str, Callable[[str], Any]] = {
        "value": float,
        "layers": lambda s: tuple(int(x) for x in s.split()),
        "seed": lambda s: int(s) if s else None,
        "ci_low": lambda s: float(s) if s else None,
        "ci_high": lambda s: float(s) if s else None,
    }
    return Row(**{k: parse.get(k, str)(v) for k, v in record.items() if k in COLUMNS})

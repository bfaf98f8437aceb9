"""Typed result rows and the table: queries, and results files that read back as written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from probe.results.rows import COLUMNS, Row
from probe.results.table import Table, read_table

ROWS = [
    Row("linear", "3", "en", "accuracy", 0.9, task="pos", model="m-1", layers=(3,)),
    Row("linear", "3", "de", "accuracy", 0.7, task="pos", model="m-1", layers=(3,)),
    Row(
        "dlfa",
        "3,6",
        "de",
        "accuracy",
        0.75,
        layers=(3, 6),
        config="x",
        seed=2,
        ci_low=0.7,
        ci_high=0.8,
    ),  # fmt: skip
    Row("linear", "3", "de", "accuracy", 0.6, eval_task="pos-gum", subset="news"),
]


def test_filter_pivot_one_and_values() -> None:
    table = Table(ROWS)
    assert len(table.filter(head="linear")) == 3
    assert table.filter(lang=lambda lang: lang != "en", eval_task="").one(head="linear") == 0.7
    assert table.pivot("lang", "layers", head="linear", eval_task="") == {
        "en": {(3,): 0.9}, "de": {(3,): 0.7}}  # fmt: skip
    assert table.values("head") == ["linear", "dlfa"]
    with pytest.raises(KeyError, match="2 rows match"):
        table.one(head="linear", lang="de")


@pytest.mark.parametrize("name", ["results.json", "results.csv"])
def test_results_files_read_back_as_written(tmp_path: Path, name: str) -> None:
    Table(ROWS).write(tmp_path, {"command": "test"})
    assert list(read_table(tmp_path / name)) == ROWS


def test_csv_keeps_the_five_long_format_columns_first(tmp_path: Path) -> None:
    Table(ROWS).write(tmp_path, {})
    with (tmp_path / "results.csv").open() as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS and header[:5] == ["head", "layer", "lang", "metric", "value"]


def test_rows_saved_before_the_typed_fields_still_load() -> None:
    old = {"head": "linear", "layer": "2", "lang": "en", "metric": "accuracy", "value": 0.5}
    assert Row.from_dict(old) == Row("linear", "2", "en", "accuracy", 0.5)

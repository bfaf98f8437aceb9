"""UPOS tasks declare pos_f1 beside their accuracy headline, and the summaries print it."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.data.tasks import get_task
from probe.errors import ProbeError
from probe.results.render.finetune import finetune_table
from probe.results.render.grid import grid_table
from probe.results.rows import Row
from probe.results.table import Table


@pytest.mark.parametrize("name", ["pos", "udpos", "pos-gum", "pos-gsd", "pos-pud"])
def test_upos_tasks_keep_accuracy_as_headline_and_add_pos_f1(name: str) -> None:
    task = get_task(name)
    assert task.metric == "accuracy" and task.extra_metrics == ("pos_f1",)


@pytest.mark.parametrize("name", ["ner", "panx", "xnli"])
def test_other_tasks_declare_no_pos_f1(name: str) -> None:
    assert get_task(name).extra_metrics == ()


def test_finetune_summary_prints_pos_f1_under_accuracy() -> None:
    rows = Table([
        Row("finetune", "last", "en", "best_epoch", 2.0, layers=(5,)),
        Row("finetune", "last", "en", "accuracy", 0.95, layers=(5,)),
        Row("finetune", "last", "de", "accuracy", 0.80, layers=(5,)),
        Row("finetune", "last", "targets", "accuracy", 0.80, layers=(5,), group="targets"),
        Row("finetune", "last", "en", "pos_f1", 0.91, layers=(5,)),
        Row("finetune", "last", "de", "pos_f1", 0.72, layers=(5,)),
        Row("finetune", "last", "targets", "pos_f1", 0.72, layers=(5,), group="targets"),
    ])  # fmt: skip
    lines = finetune_table(get_task("pos"), rows, "en", ["en", "de"], steps=10).splitlines()
    assert lines[0].startswith("pos: accuracy x100")  # the headline stays accuracy
    assert lines[2].split() == ["last", "95.0", "80.0", "80.0"]
    assert lines[3].split() == ["pos_f1", "91.0", "72.0", "72.0"]
    assert "XTREME" in lines[4] and lines[4].startswith("pos_f1:")


def test_grid_summary_adds_a_pos_f1_table() -> None:
    rows = Table(
        [Row("dlfa", "2,2", lang, "accuracy", acc, layers=(2, 2)) for lang, acc in
         (("en", 0.9), ("de", 0.6))]
        + [Row("dlfa", "1,2", lang, "accuracy", acc, layers=(1, 2)) for lang, acc in
           (("en", 0.92), ("de", 0.65))]
        + [Row("dlfa", "2,2", lang, "pos_f1", f1, layers=(2, 2)) for lang, f1 in
           (("en", 0.85), ("de", 0.5))]
        + [Row("dlfa", "1,2", lang, "pos_f1", f1, layers=(1, 2)) for lang, f1 in
           (("en", 0.875), ("de", 0.55))]
    )  # fmt: skip
    text = grid_table(get_task("udpos"), rows, "en", ["en", "de"], (2, 2))
    head, _, f1 = text.partition("\n\nudpos: pos_f1")
    assert head.startswith("udpos: accuracy x100")
    assert "XTREME" in f1.splitlines()[0]
    lines = f1.splitlines()
    assert lines[2].split() == ["dlfa", "2,2", "85.0", "50.0"]  # the last layer first
    assert lines[3].split() == ["dlfa", "1,2", "87.5", "55.0"]


_TASK_FILE = """
name = "my-upos"
level = "{level}"
format = "{fmt}"
labels = ["NOUN", "VERB", "SCONJ"]
source = "en"
eval = "test"
{extra}

[paths]
test = "{{lang}}/test.txt"
"""


def test_a_task_file_may_declare_pos_f1(tmp_path: Path) -> None:
    from probe.data.taskfile import load_task_file

    path = tmp_path / "task.toml"
    path.write_text(_TASK_FILE.format(level="word", fmt="token-tag",
                                      extra='extra_metrics = ["pos_f1"]'))  # fmt: skip
    assert load_task_file(path).extra_metrics == ("pos_f1",)
    path.write_text(_TASK_FILE.format(level="word", fmt="token-tag", extra=""))
    assert load_task_file(path).extra_metrics == ()
    path.write_text(_TASK_FILE.format(level="pair", fmt="pair-tsv",
                                      extra='extra_metrics = ["pos_f1"]'))  # fmt: skip
    with pytest.raises(ProbeError, match="extra_metrics must be"):
        load_task_file(path)
    path.write_text(_TASK_FILE.format(level="word", fmt="token-tag",
                                      extra='extra_metrics = ["pos-f1"]'))  # fmt: skip
    with pytest.raises(ProbeError, match="extra_metrics must be"):
        load_task_file(path)

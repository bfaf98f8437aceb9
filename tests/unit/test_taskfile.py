"""Tasks defined in TOML files: parsed, checked, registered once, found on disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.data import taskfile
from probe.data.discovery import languages_for
from probe.data.tasks import TASKS, read_split
from probe.errors import ProbeError
from tests.helpers import SENTENCES, conllu_text

EXAMPLE = Path(__file__).parents[2] / "examples" / "tasks" / "my_pos.toml"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Task files registered by a test are removed again (the registry is process-wide)."""
    monkeypatch.delenv(taskfile.ENV, raising=False)
    before = set(TASKS.names())
    yield
    for name in set(TASKS.names()) - before:
        del TASKS._entries[name]
    taskfile._loaded.clear()


def make_example(root: Path) -> Path:
    """The example task file beside a `data/` folder with en train/dev/test and xx test."""
    path = root / "my_pos.toml"
    shutil.copy(EXAMPLE, path)
    for lang, splits in {"en": ("train", "dev", "test"), "xx": ("test",)}.items():
        for split in splits:
            file = root / "data" / lang / f"{lang}-{split}.conllu"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(conllu_text(SENTENCES), encoding="utf-8")
    return path


def test_example_file_defines_a_task_with_labels_from_the_training_data(tmp_path: Path) -> None:
    task = taskfile.load_task_file(make_example(tmp_path))
    assert (task.name, task.level, task.metric, task.default_source) == (
        "my-pos", "word", "accuracy", "en",
    )  # fmt: skip
    assert task.labels == tuple(sorted({t for s in read_split(task, tmp_path, "en", "train")
                                        for t in s.tags}))  # fmt: skip
    # Languages come from the eval pattern on disk; --data-dir does not move the files.
    assert languages_for(task, tmp_path / "elsewhere") == ("en", "xx")
    assert (task.train_split, task.dev_split, task.eval_split) == ("train", "dev", "test")


def test_registered_once_and_named_for_child_processes(
    tmp_path: Path, registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_example(tmp_path)
    taskfile.use_task_files([path])
    taskfile.use_task_files([path])  # the same file again: one registration
    assert "my-pos" in TASKS
    assert taskfile.os.environ[taskfile.ENV] == str(path.resolve())
    other = tmp_path / "other.toml"
    other.write_text(path.read_text().replace("my-pos", "pos"))
    with pytest.raises(ProbeError, match="a task named 'pos' already exists"):
        taskfile.register_task_file(other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('level = "word"', 'level = "doc"'), "level must be word or pair"),
        (('format = "conllu"', 'format = "pair-tsv"'), "does not hold word-level"),
        (('metric = "accuracy"', 'metric = "bleu"'), "metric must be"),
        (('source = "en"', 'source = "en"\ncolour = 1'), "unknown key 'colour'"),
        (('eval = "test"', 'eval = "final"'), "split 'final' has no pattern"),
        (("{lang}/{lang}-train", "{genre}/train"), "unknown field \\{genre\\}"),
        (('labels = "from-training-data"', "labels = 3"), "labels must be a list"),
        (('name = "my-pos"', "name = "), "not valid TOML"),
    ],
)
def test_bad_task_files_fail_with_one_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = make_example(tmp_path)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(ProbeError, match=message):
        taskfile.load_task_file(path)

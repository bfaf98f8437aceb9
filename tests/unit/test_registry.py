"""The generic registry: unique names, 'did you mean', lazy loading, scoped overrides."""

from __future__ import annotations

import pytest

from probe.errors import ProbeError
from probe.registry import Registry


def test_duplicate_names_are_refused_naming_the_first() -> None:
    heads: Registry[int] = Registry("head")
    heads.register("linear", 1)
    with pytest.raises(
        ValueError, match=r"head 'linear' is already registered \(at .*test_registry"
    ):
        heads.register("linear", 2)
    assert heads.get("linear") == 1


def test_unknown_names_suggest_close_ones_and_list_all() -> None:
    heads: Registry[str] = Registry("head")

    @heads.register("dlfa")
    def dlfa() -> str:
        return "dlfa"

    heads.register("linear", "x")  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match=r"unknown head 'dlf'\. Did you mean 'dlfa'\? Available: "
                                         r"dlfa, linear\."):  # fmt: skip
        heads.get("dlf")
    assert heads.names() == ("dlfa", "linear") and "dlfa" in heads and len(heads) == 2


def test_load_runs_once_on_first_lookup() -> None:
    calls: list[int] = []
    tasks: Registry[int] = Registry(
        "task", load=lambda: (calls.append(1), tasks.register("pos", 7))
    )
    assert calls == []
    assert tasks.get("pos") == 7 and tasks.names() == ("pos",)
    assert calls == [1]


def test_override_is_scoped() -> None:
    tasks: Registry[int] = Registry("task")
    tasks.register("pos", 1)
    with tasks.override("pos", 2), tasks.override("copy", 3):
        assert tasks.get("pos") == 2 and tasks.get("copy") == 3
    assert tasks.get("pos") == 1 and "copy" not in tasks

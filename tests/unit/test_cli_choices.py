"""The CLI's choices and defaults are the library's own: registries and constants, never copies."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.cli.options import LibraryOption

REPO = Path(__file__).resolve().parents[2]


def _options(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Option]]:
    """Every option of every command, as ('grid --head', option), walking groups recursively."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _options(command, (*path, name))
        for param in command.params:
            if isinstance(param, click.Option):
                yield " ".join((*path, name, param.opts[0])), param


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def _expected_choices() -> dict[str, tuple[str, ...]]:
    """Option destination -> the library's names for it, read here independently of the CLI."""
    from probe.data.tasks import TASKS, TOKEN_VIEW
    from probe.extract.spec import COMPUTE_DTYPES, OVERWRITE, POOLINGS, STORAGE_DTYPES
    from probe.heads.registry import BODIES, HEADS, PAIR_POOLS, STRUCTURAL_PROBES
    from probe.runtime.precision import PRECISIONS
    from probe.train.schedules import SCHEDULES
    from probe.train.select import RECIPES

    assert COMPUTE_DTYPES == PRECISIONS
    return {
        # the registry's tasks, then each pair task's token view (`xnli@tokens`)
        "task": (
            *TASKS.names(),
            *(n + TOKEN_VIEW for n in TASKS.names() if TASKS.get(n).level == "pair"),
        ),
        "pair_pool": PAIR_POOLS,
        "probes": (*STRUCTURAL_PROBES, "both"),  # structural: distance, depth or both
        "pooling": POOLINGS,
        "dtype": STORAGE_DTYPES,
        "compute_dtype": PRECISIONS,
        "overwrite": OVERWRITE,
        "head": tuple(name for name, kind in HEADS.items() if kind.reads == "pair"),
        "body": BODIES.names(),
        "schedule": (*SCHEDULES, "both"),
        "recipe": (*RECIPES, "split"),  # domain-shift, calibration: how every head trains
    }


def test_every_choice_is_a_registry_or_a_library_constant() -> None:
    expected = _expected_choices()
    seen = set()
    for where, option in _options(cli):
        if not isinstance(option.type, click.Choice):
            continue
        assert option.name in expected, f"{where}: a choice list the library does not own"
        assert tuple(option.type.choices) == expected[option.name], where
        seen.add(option.name)
    assert seen == set(expected)  # each library list feeds at least one option


def test_task_choices_follow_a_new_registration() -> None:
    """A task registered after the CLI was built is a valid --task at once."""
    from dataclasses import replace

    from probe.data.tasks import TASKS

    task_options = [(where, o) for where, o in _options(cli) if o.name == "task"]
    assert len(task_options) == 9
    with TASKS.override("pos-copy", replace(TASKS.get("pos"), name="pos-copy")):
        for where, option in task_options:
            assert "pos-copy" in option.type.choices, where  # type: ignore[attr-defined]
    assert all("pos-copy" not in o.type.choices for _, o in task_options)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "command, option, ref",
    [
        ("extract", "--max-length", "probe.extract.spec:ExtractSpec.max_length"),
        ("extract", "--pool", "probe.extract.spec:ExtractSpec.pooling"),
        ("extract", "--overwrite", "probe.extract.spec:ExtractOptions.overwrite"),
        ("extract", "--shard-rows", "probe.extract.spec:ExtractOptions.shard_rows"),
        ("grid", "--lr", "probe.train.select:DLFA_TRAINING.lr"),
        ("grid", "--max-epochs", "probe.train.select:DLFA_TRAINING.max_epochs"),
        ("map", "--net-steps", "probe.analysis.crosslingual.alignment:NetConfig.steps"),
        ("map", "--net-lr", "probe.analysis.crosslingual.alignment:NetConfig.lr"),
        ("finetune", "--lr", "probe.experiments.finetune:FinetuneConfig.lr"),
        ("intermediate", "--max-epochs",
         "probe.experiments.intermediate:INTERMEDIATE_TRAINING.max_epochs"),
    ],
)  # fmt: skip
def test_defaults_are_the_library_defaults(command: str, option: str, ref: str) -> None:
    from probe.cli.options import library

    (found,) = [o for where, o in _options(cli) if where == f"{command} {option}"]
    with click.Context(cli.commands[command]) as ctx:
        assert found.get_default(ctx) == library(ref)


def test_help_quotes_the_library_defaults() -> None:
    """Options left None (the library resolves None itself) quote the library's value."""
    from probe.analysis.crosslingual.alignment import NetConfig
    from probe.experiments.finetune import DEFAULT_EPOCHS
    from probe.models.aliases import MODELS

    intermediate = CliRunner().invoke(cli, ["intermediate", "--help"], terminal_width=200)
    assert intermediate.exit_code == 0, intermediate.output
    assert f"--finetune: epochs per stage (default {DEFAULT_EPOCHS})." in intermediate.output
    assert f"Alias ({', '.join(MODELS.names())}), hub id" in intermediate.output
    finetune = CliRunner().invoke(cli, ["finetune", "--help"], terminal_width=200).output
    assert f"XTREME's {DEFAULT_EPOCHS} for word tasks" in finetune
    assert f"[default: {NetConfig.steps};" in CliRunner().invoke(cli, ["map", "--help"]).output


def test_every_command_renders_its_help() -> None:
    """Each library value an option names still exists (a rename fails here, not in use)."""
    for path in _commands(cli):
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
    library_options = [o for _, o in _options(cli) if isinstance(o, LibraryOption)]
    assert len(library_options) > 20


def test_python_m_probe_cli_runs_without_loading_torch() -> None:
    """`python -m probe.cli` (torchrun's form) works; the CLI itself imports no torch."""
    help_ = subprocess.run([sys.executable, "-m", "probe.cli", "--help"], capture_output=True,
                           text=True, cwd=REPO, check=True)  # fmt: skip
    assert "Commands:" in help_.stdout and "extract" in help_.stdout
    code = "import sys, probe.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"

"""The `probe` command line: the root group (one-line errors, logging) and its commands.

Each command module builds a config from its options and calls one library function; the
options several commands share are declared once in probe.cli.options.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from probe.cli import cache, extract, paper, probing, report, robustness, structural, transfer
from probe.errors import ProbeError
from probe.runtime.threads import set_openmp_waiting


class ProbeGroup(click.Group):
    """Every command's failure ends as one `Error: ...` line, with no traceback.

    User errors (ProbeError) carry their own message; an OSError names its path and reason;
    anything else is named as unexpected. `-vv` lets the exception through with its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as err:
            if ctx.meta.get("probe.verbose", 0) >= 2:
                raise
            raise click.ClickException(_one_line(err)) from err


def _one_line(err: Exception) -> str:
    if isinstance(err, ProbeError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"unexpected {type(err).__name__}: {first} (rerun with -vv for the traceback)"


@click.group(
    cls=ProbeGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-v", "--verbose", count=True, help="-v: a line per job; -vv: debug, with tracebacks."
)
@click.option(
    "--task-file", "task_files", multiple=True, metavar="TOML",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Register the task a TOML file defines (docs/guide.md; examples/tasks/); repeatable. "
    "Also read from $PROBE_TASK_FILE.",
)  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, verbose: int, task_files: tuple[Path, ...]) -> None:
    """Layer-wise probing of multilingual encoders for zero-shot cross-lingual transfer.

    \b
    probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    probe cache ls
    """
    ctx.meta["probe.verbose"] = verbose
    _configure_logging(verbose)
    if task_files:
        from probe.data.taskfile import use_task_files

        try:
            use_task_files(list(task_files))
        except ProbeError as err:
            raise click.ClickException(str(err)) from err


class _AboveProgressBars(logging.Handler):
    """Writes log lines with tqdm.write, so they land above the progress bars, never inside.

    `sys.stderr` is looked up per line: click's test runner and notebooks swap it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _configure_logging(verbose: int) -> None:
    """Default: the toolkit's INFO lines without per-job chatter; -v adds a line per trained
    head (probe.train.loop); -vv is DEBUG everywhere (and keeps tracebacks, see ProbeGroup)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AboveProgressBars)]:
        root.removeHandler(handler)
    handler = _AboveProgressBars()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    logging.getLogger("probe").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.getLogger("probe.train.loop").setLevel(logging.NOTSET if verbose else logging.WARNING)


for _command in (
    extract.extract,
    probing.layers,
    probing.grid,
    probing.map_command,
    structural.structural,
    robustness.domain_shift,
    robustness.calibration,
    transfer.finetune,
    transfer.intermediate,
    paper.paper,
    cache.cache,
    report.report,
):
    cli.add_command(_command)


def main() -> None:
    # How idle OpenMP threads wait: a short spin on an idle machine, asleep on a busy one,
    # where torch's spinning threads fight the other processes for the cores (extraction ran
    # 4-10x slower on a loaded 2-core machine with libgomp's default spin). Chosen before
    # torch loads (commands import it lazily); a policy in the environment wins.
    set_openmp_waiting()
    cli(prog_name="probe")

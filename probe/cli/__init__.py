"""The `probe` command line: parse, build a config, call one library function."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from probe.errors import ProbeError

log = logging.getLogger("probe")


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


def _task_names() -> list[str]:
    from probe.data.tasks import task_names

    return list(task_names())


@click.group(
    cls=ProbeGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-v", "--verbose", count=True, help="-v: a line per job; -vv: debug, with tracebacks."
)
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Layer-wise probing of multilingual encoders for zero-shot cross-lingual transfer.

    \b
    probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    probe cache ls
    """
    ctx.meta["probe.verbose"] = verbose
    _configure_logging(verbose)


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
    head (probe.train); -vv is DEBUG everywhere (and keeps tracebacks, see ProbeGroup)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AboveProgressBars)]:
        root.removeHandler(handler)
    handler = _AboveProgressBars()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    logging.getLogger("probe").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.getLogger("probe.train").setLevel(logging.NOTSET if verbose else logging.WARNING)


def extraction_options(
    fn: Callable[..., Any], task_flags: tuple[str, ...] = ("--task", "-t")
) -> Callable[..., Any]:
    """The options that pick a cache: model, task, languages, pooling, precision, data.

    `task_flags` renames the task option where a command calls it otherwise (`--target`);
    its value is always `opts["task"]`."""
    options = [
        click.option("--model", "-m", required=True,
                     help="Alias (mbert, xlmr, minilm, me5-small), hub id or local directory."),
        click.option(*task_flags, "task", required=True, type=click.Choice(_task_names())),
        click.option("--langs", "-l", default="all", show_default=True,
                     help="Comma list of ISO codes, or all."),
        click.option("--pool", "pooling", type=click.Choice(["first", "mean", "last"]),
                     default="first", show_default=True, help="Subword-to-word pooling."),
        click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16",
                     show_default=True, help="Storage dtype."),
        click.option("--compute", "compute_dtype",
                     type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                     default="auto", show_default=True,
                     help="Forward-pass precision (auto: bf16 where the hardware has it)."),
        click.option("--max-length", type=click.IntRange(min=1), default=512, show_default=True,
                     help="Window length in tokens; longer sentences get overlapping windows."),
        click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
                     help="Padded tokens per batch (default 4096 on CPU, 32768 on CUDA)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:1, ..."),
        click.option("--max-sentences", type=click.IntRange(min=1), default=None,
                     help="Use only the first N records of each split."),
        click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
                     default=None, help="Root of the task data (default: $PROBE_DATA)."),
        click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Cache root (default: $PROBE_CACHE or ./cache)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _not_under_torchrun(command: str) -> None:
    """Probing fans out through --workers/--cluster; under torchrun every rank would redo it."""
    from probe.runtime.ranks import current_rank

    if current_rank().distributed:
        raise ProbeError(
            f"`probe {command}` runs once, not once per rank: extract with `torchrun ... -m "
            f"probe.cli extract`, then run `probe {command} --workers N` (or --cluster ADDRESS)"
        )


def extract_config(opts: dict[str, Any], **overrides: Any) -> Any:
    """Build the ExtractConfig every cache-reading command starts from."""
    from probe.cache import default_cache_root
    from probe.extract import ExtractConfig

    fields = dict(
        model=opts["model"], task=opts["task"], langs=tuple(opts["langs"].split(",")),
        pooling=opts["pooling"], dtype=opts["dtype"], compute_dtype=opts["compute_dtype"],
        max_length=opts["max_length"], batch_tokens=opts["batch_tokens"],
        device=opts["device"], data_dir=opts["data_dir"],
        cache_root=default_cache_root(opts["cache_dir"]), max_sentences=opts["max_sentences"],
    )  # fmt: skip
    fields.update(overrides)
    return ExtractConfig(**fields)


@cli.command()
@extraction_options
@click.option(
    "--splits", default=None, help="Comma list of splits (default: what a zero-shot run needs)."
)
@click.option("--source", default=None, help="Source language (also gets its train/dev splits).")
@click.option(
    "--overwrite",
    type=click.Choice(["never", "missing", "always"]),
    default="missing",
    show_default=True,
)
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1),
    default=2_000_000,
    show_default=True,
    help="Words (or pairs) per shard file; the unit of work the ranks of a torchrun job share.",
)
def extract(**opts: Any) -> None:
    """Run the encoder once and cache every layer's word representations.

    \b
    Example:
      probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    writes cache/<model-key>/pos/<lang>/<split>.h5 for en, de, fr, es, tr.
    \b
    On several GPUs (one process each; ranks share the shards, see docs/distributed.md):
      torchrun --nproc_per_node 8 -m probe.cli extract --model mbert --task panx \\
        --langs all --shard-rows 200000
    """
    from probe.extract import extract as run_extract
    from probe.runtime.ranks import current_rank

    if not current_rank().is_main:  # one rank reports; the others only warn
        logging.getLogger("probe").setLevel(logging.WARNING)
    config = extract_config(
        opts,
        splits=tuple(opts["splits"].split(",")) if opts["splits"] else None,
        source=opts["source"],
        overwrite=opts["overwrite"],
        shard_rows=opts["shard_rows"],
    )
    report = run_extract(config, progress=True)
    if report.rank != 0:
        return
    done, skipped = report.extracted, [s for s in report.shards if s.skipped]
    click.echo(f"cache key: {report.key}  ({report.cache_dir})")
    click.echo(f"device: {report.device}, compute: {report.compute_dtype}")
    ranks = report.world_size > 1
    for shard in report.shards:
        state = (
            "cached" if shard.skipped else f"{shard.rows / max(shard.seconds, 1e-9):,.0f} rows/s"
        )
        by = f"  rank {shard.rank}" if ranks and not shard.skipped else ""
        click.echo(
            f"  {shard.path.relative_to(report.cache_dir)}  {shard.rows:>9,} rows  {state}{by}"
        )
    if done:
        click.echo(
            f"extracted {report.rows:,} rows in {report.seconds:.1f} s "
            f"({report.rows / max(report.seconds, 1e-9):,.0f} rows/s, "
            f"padding waste {100 * report.padding_waste:.1f}%); reused {len(skipped)} shard(s)"
        )
        if ranks:
            click.echo(
                f"{report.world_size} ranks: {report.wall_seconds:.1f} s wall, "
                f"{report.rows / max(report.wall_seconds, 1e-9):,.0f} rows/s together "
                "(model loading included)"
            )
    else:
        click.echo(f"nothing to do: all {len(skipped)} shard(s) cached")


@cli.command()
@extraction_options
@click.option(
    "--source", default=None, help="Source language (default: the task's, e.g. en; pcm for ner)."
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-control", is_flag=True, help="Skip the control task (selectivity).")
@click.option("--no-mix", is_flag=True, help="Skip the scalar mix.")
@click.option(
    "--max-train-words",
    type=click.IntRange(min=1),
    default=None,
    help="Cap the source training words.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Probes trained at once in local processes.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="ADDRESS",
    help="Run the probes on a Dask (tcp://host:8786, scheduler.json) or Ray "
    "(ray://host:10001) cluster; see docs/distributed.md.",
)
def layers(**opts: Any) -> None:
    """Linear probe per layer on the source language, zero-shot on every other language.

    \b
    Examples:
      probe layers --task pos --model minilm --data-dir ../shared/data
      probe layers --task ner --model minilm --data-dir ../shared/data   # source pcm
      probe layers --task pos --model mbert --workers 8
    Writes results.csv/json, settings.json, summary.txt and plots under --results-dir.
    """
    from probe.experiments.layers import LayersConfig, run_layers
    from probe.train import TrainConfig

    _not_under_torchrun("layers")
    config = LayersConfig(
        extract=extract_config(opts),
        source=opts["source"],
        results_dir=opts["results_dir"],
        train=TrainConfig(seed=opts["seed"]),
        control=not opts["no_control"],
        scalar_mix=not opts["no_mix"],
        max_train_words=opts["max_train_words"],
        workers=opts["workers"],
        cluster=opts["cluster"],
    )
    result = run_layers(config, progress=True)
    click.echo(result.table)
    weights = " ".join(f"{w:.2f}" for w in result.mix_weights)
    if weights:
        click.echo(f"scalar-mix weights (layer 0..): {weights}")
    click.echo(
        f"extraction {result.extract_seconds:.1f} s (0 when cached), probing "
        f"{result.probe_seconds:.1f} s; results in {result.directory}"
    )


@cli.command()
@extraction_options
@click.option("--source", default=None, help="Source language (default: the task's).")
@click.option(
    "--pairs",
    default="last",
    show_default=True,
    help="last: (k, last) for every k; all: every pair; or '4,6;5,6'.",
)
@click.option("--head", type=click.Choice(["dlfa", "concat"]), default="dlfa", show_default=True)
@click.option(
    "--reduction",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="AIF bottleneck ratio r.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Pairs trained at once in local processes (default: one per core).",
)
@click.option(
    "--cluster",
    default=None,
    metavar="ADDRESS",
    help="Run the pairs on a Dask (tcp://host:8786, scheduler.json) or Ray "
    "(ray://host:10001) cluster; see docs/distributed.md.",
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Head learning rate (default 1e-2).",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs of the linearly decaying rate, with early stopping on dev loss (default 8).",
)
@click.option(
    "--max-train-words",
    type=click.IntRange(min=1),
    default=None,
    help="Cap the source training words.",
)
def grid(**opts: Any) -> None:  # fmt: skip
    """Fuse the last layer with each lower layer (DLFA) and score every language zero-shot.

    \b
    Examples:
      probe grid --task pos --model minilm --data-dir ../shared/data
      probe grid --task ner --model minilm --pairs all --head concat
      probe grid --task panx --model mbert --pairs all --cluster tcp://scheduler:8786
    Prints and saves the score per layer pair and language beside the last-layer baseline,
    the gain per language and inside/outside the source's family, and a heatmap PNG.
    """
    from probe.experiments.grid import GridConfig, run_grid

    _not_under_torchrun("grid")
    config = GridConfig(
        extract=extract_config(opts),
        source=opts["source"],
        pairs=opts["pairs"],
        head=opts["head"],
        reduction=opts["reduction"],
        results_dir=opts["results_dir"],
        train=_dlfa_training(opts),
        workers=opts["workers"],
        cluster=opts["cluster"],
        max_train_words=opts["max_train_words"],
    )
    result = run_grid(config, progress=True)
    click.echo(result.table)
    click.echo(
        f"grid on cached features {result.seconds:.1f} s (extraction {result.extract_seconds:.1f}"
        f" s, 0 when cached); results in {result.directory}"
    )


@cli.command()
@click.option(
    "--model",
    "-m",
    required=True,
    help="Alias (mbert, xlmr, minilm, me5-small), hub id or local directory.",
)
@click.option("--task", "-t", required=True, type=click.Choice(_task_names()))
@click.option(
    "--langs",
    "-l",
    default="all",
    show_default=True,
    help="Comma list of ISO codes to evaluate, or all.",
)
@click.option("--source", default=None, help="Source language (default: the task's).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Root of the task data (default: $PROBE_DATA).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Cache root, for downloaded models (default: $PROBE_CACHE or ./cache).",
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
)
@click.option(
    "--fuse-layer",
    type=click.IntRange(min=0),
    default=None,
    help="DLFA head fusing the last layer with layer k (default: last layer, linear).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Default: XTREME's 10 for word tasks.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=2e-5,
    show_default=True,
    help="Encoder learning rate.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Sentences per step.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Subword tokens per sentence; words past it are not trained on.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimiser steps."
)
@click.option(
    "--max-train-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N source training sentences.",
)
def finetune(**opts: Any) -> None:  # fmt: skip
    """Fine-tune the encoder with the last-layer (or DLFA) head on the source; zero-shot eval.

    \b
    Examples:
      probe finetune --task pos --model minilm --data-dir ../shared/data --epochs 1
      probe finetune --task ner --model mbert --fuse-layer 8 --device cuda
    Prints and saves the main metric per language (results.csv/json, settings.json, summary.txt).
    """
    from probe.cache import default_cache_root
    from probe.experiments.finetune import FinetuneConfig, run_finetune

    config = FinetuneConfig(
        model=opts["model"], task=opts["task"], langs=tuple(opts["langs"].split(",")),
        source=opts["source"], data_dir=opts["data_dir"],
        cache_root=default_cache_root(opts["cache_dir"]), results_dir=opts["results_dir"],
        fuse_layer=opts["fuse_layer"], epochs=opts["epochs"], lr=opts["lr"],
        batch_size=opts["batch_size"], max_length=opts["max_length"], device=opts["device"],
        seed=opts["seed"], max_steps=opts["max_steps"],
        max_train_sentences=opts["max_train_sentences"],
    )  # fmt: skip
    result = run_finetune(config, progress=True)
    click.echo(result.table)
    click.echo(f"fine-tuning and evaluation {result.seconds:.1f} s; results in {result.directory}")


@cli.command("map")
@extraction_options
@click.option("--source", default=None, help="Source language (default: the task's).")
@click.option(
    "--parallel-langs",
    default="",
    help="More Tatoeba languages for retrieval/CKA only (comma list, or all); the task's "
    "languages are always included.",
)
@click.option(
    "--fit-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Share of each language's pairs that fits the alignment maps (the rest tests them).",
)
@click.option(
    "--ridge",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Least-squares ridge.",
)
@click.option(
    "--net-steps",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Alignment net steps.",
)
@click.option(
    "--net-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Alignment net lr.",
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--max-train-words",
    type=click.IntRange(min=1),
    default=None,
    help="Cap the source training words.",
)
def map_command(**opts: Any) -> None:
    """Structural vs cross-lingual signal per layer, and transfer vs linguistic distance.

    \b
    Example:
      probe map --task pos --model minilm --data-dir ../shared/data
    Probes every layer (source score, selectivity, zero-shot transfer ratio), scores Tatoeba
    pairs of every task language with English (retrieval, CKA, held-out retrieval after a
    least-squares / Procrustes / single-layer-net map onto English), and correlates transfer
    with URIEL distances. Writes summary.txt, map.csv, correlation.csv, distances.csv,
    results.csv/json, map.png and transfer_vs_distance.png under --results-dir.
    """
    from probe.analysis.crosslingual.alignment import NetConfig
    from probe.experiments.crosslingual_map import MapConfig, run_map
    from probe.experiments.parallel_signal import ParallelConfig
    from probe.train import TrainConfig

    extra = tuple(x.strip() for x in opts["parallel_langs"].split(",") if x.strip())
    config = MapConfig(
        extract=extract_config(opts),
        source=opts["source"],
        results_dir=opts["results_dir"],
        train=TrainConfig(seed=opts["seed"]),
        max_train_words=opts["max_train_words"],
        parallel=ParallelConfig(
            fit_fraction=opts["fit_fraction"],
            ridge=opts["ridge"],
            net=NetConfig(steps=opts["net_steps"], lr=opts["net_lr"], seed=opts["seed"]),
        ),
        extra_parallel=extra,
    )
    result = run_map(config, progress=True)
    click.echo(result.table)
    click.echo(f"results in {result.directory}")


def _fuse_layer(ctx: click.Context, param: click.Parameter, value: str) -> int | str | None:
    """--fuse-layer: a layer number k, 'best' (lowest dev loss over every k) or 'none'."""
    if value in ("best", "none"):
        return None if value == "none" else value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a layer number, 'best' or 'none'; got {value!r}"
        ) from None


def _head_training(opts: dict[str, Any]) -> tuple[Any, Any]:
    """TrainConfigs of the linear probes and of DLFA (as in `probe grid`) from the options."""
    from probe.train import TrainConfig

    probe_training = TrainConfig(seed=opts["seed"])
    if opts["max_epochs"] is not None:
        probe_training = dataclasses.replace(probe_training, max_epochs=opts["max_epochs"])
    return probe_training, _dlfa_training(opts)


def _dlfa_training(opts: dict[str, Any]) -> Any:
    """DLFA's training defaults (probe.train.select.DLFA_TRAINING) with the options."""
    from probe.train.select import DLFA_TRAINING

    overrides = {"seed": opts["seed"]}
    for name in ("lr", "max_epochs"):
        if opts.get(name) is not None:
            overrides[name] = opts[name]
    return dataclasses.replace(DLFA_TRAINING, **overrides)


def _probe_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options domain-shift and calibration share: DLFA's k, training caps, output."""
    options = [
        click.option("--fuse-layer", default="best", show_default=True, callback=_fuse_layer,
                     help="DLFA (last, k): k, 'best' (lowest dev loss over every k; slow) or "
                     "'none'."),
        click.option("--reduction", type=click.IntRange(min=1), default=4, show_default=True,
                     help="AIF bottleneck ratio r."),
        click.option("--max-epochs", type=click.IntRange(min=1), default=None,
                     help="Epoch cap of every head (default: 30 for probes, 8 for DLFA; "
                     "early stopping on dev loss)."),
        click.option("--max-train-words", type=click.IntRange(min=1), default=None,
                     help="Cap each training language's words (whole sentences)."),
        click.option("--results-dir", type=click.Path(path_type=Path, file_okay=False),
                     default=Path("results"), show_default=True),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command("domain-shift")
@extraction_options
@click.option(
    "--out-tasks",
    default="pos-gum,pos-pud",
    show_default=True,
    help="Out-of-domain tasks (same tag set) evaluated in each language they have.",
)
@click.option("--no-genres", is_flag=True, help="Skip the per-genre scores (from sentence ids).")
@click.option(
    "--low-resource-words",
    type=click.IntRange(min=1),
    default=15_000,
    show_default=True,
    help="Flag languages whose training split has fewer words.",
)
@_probe_options
def domain_shift(**opts: Any) -> None:  # fmt: skip
    """Train on one corpus of a language, score in-domain and out-of-domain, per layer and DLFA.

    \b
    Examples:
      probe domain-shift --task pos --model minilm --data-dir ../shared/data --fuse-layer 3
          # en EWT -> GUM, PUD; de, fr GSD -> PUD; tr IMST -> PUD
      probe domain-shift --task pos-gsd --langs zh,ru,id --model minilm --out-tasks pos-pud
      probe domain-shift --task pos-gum --model minilm --out-tasks pos,pos-pud   # GUM -> EWT
    Prints and saves scores, the drop (in minus out) per head, DLFA's drop beside the last
    layer's, per-genre scores, and domain_shift.png / drop_per_layer.png.
    """
    from probe.experiments.domain_shift import DomainShiftConfig, run_domain_shift

    train, dlfa_train = _head_training(opts)
    config = DomainShiftConfig(
        extract=extract_config(opts),
        out_tasks=tuple(t.strip() for t in opts["out_tasks"].split(",") if t.strip()),
        fuse_layer=opts["fuse_layer"], reduction=opts["reduction"],
        genres=not opts["no_genres"], results_dir=opts["results_dir"], train=train,
        dlfa_train=dlfa_train, max_train_words=opts["max_train_words"],
        low_resource_words=opts["low_resource_words"],
    )  # fmt: skip
    result = run_domain_shift(config, progress=True)
    click.echo(result.table)
    click.echo(
        f"heads {result.seconds:.1f} s, extraction {result.extract_seconds:.1f} s (0 when "
        f"cached); results in {result.directory}"
    )


@cli.command()
@extraction_options
@click.option(
    "--source", default=None, help="The English-only regime's language (default: the task's)."
)
@click.option(
    "--pooled",
    default="en,de,fr",
    show_default=True,
    help="Languages whose training splits the multilingual head pools.",
)
@click.option(
    "--no-match-size",
    is_flag=True,
    help="Pool all their data instead of capping it to the source's word count.",
)
@click.option(
    "--bins",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Confidence bins (ECE).",
)
@_probe_options
def calibration(**opts: Any) -> None:  # fmt: skip
    """ECE and reliability diagrams per language and layer; temperature scaling; en vs pooled.

    \b
    Examples:
      probe calibration --task pos --model minilm --data-dir ../shared/data --fuse-layer 3
          # heads on en vs en+de+fr; held-out targets es, tr
      probe calibration --task pos --model me5-small --pooled en,de,fr,es --langs tr
    Temperature T is fitted per head on its own (source) dev data. Prints and saves ECE
    before/after T per layer and language, the two regimes on held-out languages,
    reliability_<regime>.png grids, ece_per_layer.png and reliability.json.
    """
    from probe.experiments.calibration import CalibrationConfig, run_calibration

    train, dlfa_train = _head_training(opts)
    config = CalibrationConfig(
        extract=extract_config(opts), source=opts["source"],
        pooled=tuple(x.strip() for x in opts["pooled"].split(",") if x.strip()),
        match_size=not opts["no_match_size"], fuse_layer=opts["fuse_layer"],
        reduction=opts["reduction"], n_bins=opts["bins"], results_dir=opts["results_dir"],
        train=train, dlfa_train=dlfa_train, max_train_words=opts["max_train_words"],
    )  # fmt: skip
    result = run_calibration(config, progress=True)
    click.echo(result.table)
    click.echo(
        f"heads {result.seconds:.1f} s, extraction {result.extract_seconds:.1f} s (0 when "
        f"cached); results in {result.directory}"
    )


@cli.command()
@functools.partial(extraction_options, task_flags=("--target", "--task", "-t"))
@click.option(
    "--via",
    default="all",
    show_default=True,
    help="Intermediate tasks: comma list of registry tasks, or all (every word/pair "
    "task with data but the target).",
)
@click.option(
    "--sets",
    default=None,
    help="Sets of --via tasks to train on together: sizes of growing prefixes ('3'), "
    "all, or tasks joined by '+' ('pos+panx'); comma list. Default: sizes 2..all.",
)
@click.option(
    "--schedule",
    type=click.Choice(["sequential", "mixed", "both"]),
    default=None,
    help="How a set trains: one task after another, or batches interleaved. Default: both on "
    "cached features; sequential (the only one) with --finetune.",
)
@click.option("--source", default=None, help="The target's source language (default: the task's).")
@click.option(
    "--body",
    type=click.Choice(["mlp", "mix", "dlfa"]),
    default="mlp",
    show_default=True,
    help="The shared body every task's classifier reads through.",
)
@click.option(
    "--layer",
    type=click.IntRange(min=0),
    default=None,
    help="mlp: the layer read (default last); mix: the lowest layer mixed (default 0); "
    "dlfa: k fused with the last layer (default last-1).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="mlp/mix body width.",
)
@click.option(
    "--reduction",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="AIF bottleneck ratio.",
)
@click.option(
    "--seeds",
    default="0",
    show_default=True,
    help="Comma list of training seeds; scores are averaged and gains get a seed sd.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Learning rate (default 5e-3 on cached features; the encoder's 2e-5 with --finetune).",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Most epochs per stage on cached features (early stopping on dev loss).",
)
@click.option(
    "--max-train-words",
    type=click.IntRange(min=1),
    default=None,
    help="Cap every task's training words (pairs for pair tasks).",
)
@click.option(
    "--max-via-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Extract only the first N sentences (pairs) of each intermediate split (it replaces "
    "a full cached split of that task, as --max-sentences does).",
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
)
@click.option(
    "--finetune",
    "finetune_mode",
    is_flag=True,
    help="Train the encoder too, on raw data (word tasks, sequential schedule).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="--finetune: epochs per stage (default 8).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="--finetune: optimiser steps per stage.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="--finetune: sentences per step.",
)
@click.option(
    "--max-train-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="--finetune: first N training sentences of every task.",
)
@click.option(
    "--max-eval-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="--finetune: score the first N test sentences of each language.",
)
def intermediate(**opts: Any) -> None:  # fmt: skip
    """Train on intermediate tasks before the target: none, each task, growing sets.

    \b
    Examples:
      probe intermediate --target ner --via pos,udpos,panx --model minilm --data-dir ../shared/data
      probe intermediate --target pos --via all --model minilm --schedule mixed --seeds 0,1,2
      probe intermediate --target ner --via pos,udpos --model minilm --finetune --max-steps 50
    Scores every target language zero-shot per configuration and prints the gains over 'none'
    per language, inside/outside the source's family and per family; writes results.csv/json,
    settings.json, summary.txt and intermediate.png under --results-dir.
    """
    schedule = opts["schedule"] or ("sequential" if opts["finetune_mode"] else "both")
    schedules = ("sequential", "mixed") if schedule == "both" else (schedule,)
    try:
        seeds = tuple(int(s) for s in opts["seeds"].split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"expected a comma list of integers, not {opts['seeds']!r}",
                                 param_hint="--seeds") from None  # fmt: skip
    via = (opts["via"],)
    if opts["finetune_mode"]:
        from probe.cache import default_cache_root
        from probe.experiments.finetune import FinetuneConfig
        from probe.experiments.intermediate_finetune import (
            IntermediateFinetuneConfig,
            run_intermediate_finetune,
        )

        if schedules != ("sequential",):
            raise ProbeError("--finetune trains sets sequentially only: pass --schedule sequential")
        if len(seeds) != 1:
            raise ProbeError("--finetune runs one seed: pass --seeds N")
        ft = FinetuneConfig(
            model=opts["model"], task=opts["task"], langs=tuple(opts["langs"].split(",")),
            source=opts["source"], data_dir=opts["data_dir"],
            cache_root=default_cache_root(opts["cache_dir"]), results_dir=opts["results_dir"],
            epochs=opts["epochs"], lr=opts["lr"] or 2e-5, batch_size=opts["batch_size"],
            device=opts["device"], seed=seeds[0], max_steps=opts["max_steps"],
            max_train_sentences=opts["max_train_sentences"], reduction=opts["reduction"],
        )  # fmt: skip
        result = run_intermediate_finetune(
            IntermediateFinetuneConfig(
                finetune=ft, via=via, sets=opts["sets"], body=opts["body"], layer=opts["layer"],
                width=opts["width"], max_eval_sentences=opts["max_eval_sentences"],
            ),
            progress=True,
        )  # fmt: skip
    else:
        from probe.experiments.intermediate import IntermediateConfig, run_intermediate
        from probe.train import TrainConfig

        config = IntermediateConfig(
            extract=extract_config(opts), via=via, sets=opts["sets"], schedules=schedules,
            source=opts["source"], body=opts["body"], layer=opts["layer"], width=opts["width"],
            reduction=opts["reduction"], results_dir=opts["results_dir"],
            train=TrainConfig(lr=opts["lr"] or 5e-3, max_epochs=opts["max_epochs"]), seeds=seeds,
            max_train_words=opts["max_train_words"],
            max_via_sentences=opts["max_via_sentences"],
        )  # fmt: skip
        result = run_intermediate(config, progress=True)
    click.echo(result.table)
    click.echo(
        f"training and scoring {result.seconds:.1f} s (extraction {result.extract_seconds:.1f} s,"
        f" 0 when cached); results in {result.directory}"
    )


@cli.group()
def cache() -> None:
    """Inspect, verify and remove cached shards."""


@cache.command("ls")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def cache_ls(cache_dir: Path | None) -> None:
    """List cached shards: model, task, language, split, rows, layers, size."""
    from probe.cache import default_cache_root
    from probe.cache.inventory import list_shards

    root = default_cache_root(cache_dir)
    rows = list_shards(root)
    if not rows:
        click.echo(f"no shards under {root}")
        return
    header = (
        f"{'model key':<30} {'task':<8} {'lang':<5} {'split':<8} {'rows':>9} {'layers':>6} "
        f"{'size':>9}  state"
    )
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r.key:<30} {r.task:<8} {r.lang:<5} {r.split:<8} {r.rows:>9,} {r.layers:>6} "
            f"{r.size_mb:>7.1f}MB  {r.state}"
        )
    click.echo(f"{len(rows)} shard(s), {sum(r.size_mb for r in rows):,.1f} MB under {root}")


@cache.command("info")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def cache_info(path: Path) -> None:
    """Show one shard's attributes and datasets."""
    from probe.cache.inventory import shard_info

    for line in shard_info(path):
        click.echo(line)


@cache.command("verify")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def cache_verify(cache_dir: Path | None, paths: tuple[Path, ...]) -> None:
    """Recompute every layer's checksum (all shards, or the given ones)."""
    from probe.cache import default_cache_root
    from probe.cache.inventory import verify_shards

    bad = verify_shards(list(paths) or None, default_cache_root(cache_dir), echo=click.echo)
    if bad:
        raise click.ClickException(
            f"{bad} corrupt or incomplete shard(s); remove with `probe cache rm`"
        )


@cache.command("rm")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def cache_rm(paths: tuple[Path, ...], dry_run: bool) -> None:
    """Remove shards, or whole language, task or model-key folders of a cache.

    Only what is provably cache goes: a path outside the cache layout, a folder holding any
    file the cache does not write, a symbolic link or the cache root itself is refused, and
    then nothing at all is removed.

    \b
    Examples:
      probe cache rm cache/minilm-0123456789abcdef/pos/de/test.h5
      probe cache rm --dry-run cache/minilm-0123456789abcdef
    """
    from probe.cache.inventory import plan_removal, remove

    plans = [plan_removal(path) for path in paths]  # every path checked before any removal
    for plan in plans:
        if not dry_run:
            remove(plan)
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} {plan.kind} {plan.path} ({len(plan.files)} file(s))")


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning. On a shared or busy CPU, torch's spinning
    # threads fight the other processes for the cores: extraction ran 4-10x slower on a
    # loaded 2-core machine (benchmarks/README.md). Set before torch loads (commands import
    # it lazily); an explicit OMP_WAIT_POLICY in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="probe")


if __name__ == "__main__":
    main()

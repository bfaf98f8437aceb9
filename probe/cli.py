"""The `probe` command line: parse, build a config, call one library function."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from probe.errors import ProbeError

log = logging.getLogger("probe")


def _friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors print one clear line (no traceback); `-v` shows the traceback too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProbeError as err:
            if log.isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(str(err)) from err

    return wrapper


def _task_names() -> list[str]:
    from probe.tasks import task_names

    return list(task_names())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, with tracebacks).")
def cli(verbose: int) -> None:
    """Layer-wise probing of multilingual encoders for zero-shot cross-lingual transfer.

    \b
    probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    probe cache ls
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("probe").setLevel(max(logging.INFO - 10 * max(verbose - 1, 0), logging.DEBUG))


def extraction_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that pick a cache: model, task, languages, pooling, precision, data."""
    options = [
        click.option("--model", "-m", required=True,
                     help="Alias (mbert, xlmr, minilm, me5-small), hub id or local directory."),
        click.option("--task", "-t", required=True, type=click.Choice(_task_names())),
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
        click.option("--max-length", type=int, default=512, show_default=True,
                     help="Window length in tokens; longer sentences get overlapping windows."),
        click.option("--batch-tokens", type=int, default=None,
                     help="Padded tokens per batch (default 4096 on CPU, 32768 on CUDA)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:1, ..."),
        click.option("--max-sentences", type=int, default=None,
                     help="Use only the first N records of each split."),
        click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
                     default=None, help="Root of the task data (default: $PROBE_DATA)."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Cache root (default: $PROBE_CACHE or ./cache)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def extract_config(opts: dict[str, Any], **overrides: Any) -> Any:
    """Build the ExtractConfig every cache-reading command starts from."""
    from probe.extract import ExtractConfig
    from probe.store import default_cache_root

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
@_friendly_errors
def extract(**opts: Any) -> None:
    """Run the encoder once and cache every layer's word representations.

    \b
    Example:
      probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    writes cache/<model-key>/pos/<lang>/<split>.h5 for en, de, fr, es, tr.
    """
    from probe.extract import extract as run_extract

    config = extract_config(
        opts,
        splits=tuple(opts["splits"].split(",")) if opts["splits"] else None,
        source=opts["source"],
        overwrite=opts["overwrite"],
    )
    report = run_extract(config, progress=True)
    done, skipped = report.extracted, [s for s in report.shards if s.skipped]
    click.echo(f"cache key: {report.key}  ({report.cache_dir})")
    click.echo(f"device: {report.device}, compute: {report.compute_dtype}")
    for shard in report.shards:
        state = (
            "cached" if shard.skipped else f"{shard.rows / max(shard.seconds, 1e-9):,.0f} rows/s"
        )
        click.echo(f"  {shard.path.relative_to(report.cache_dir)}  {shard.rows:>9,} rows  {state}")
    if done:
        click.echo(
            f"extracted {report.rows:,} rows in {report.seconds:.1f} s "
            f"({report.rows / max(report.seconds, 1e-9):,.0f} rows/s, "
            f"padding waste {100 * report.padding_waste:.1f}%); reused {len(skipped)} shard(s)"
        )
    else:
        click.echo(f"nothing to do: all {len(skipped)} shard(s) cached")


@cli.command()
@extraction_options
@click.option(
    "--source", default=None, help="Source language (default: the task's, e.g. en; pcm for ner)."
)
@click.option(
    "--results-dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-control", is_flag=True, help="Skip the control task (selectivity).")
@click.option("--no-mix", is_flag=True, help="Skip the scalar mix.")
@click.option("--max-train-words", type=int, default=None, help="Cap the source training words.")
@_friendly_errors
def layers(**opts: Any) -> None:
    """Linear probe per layer on the source language, zero-shot on every other language.

    \b
    Examples:
      probe layers --task pos --model minilm --data-dir ../shared/data
      probe layers --task ner --model minilm --data-dir ../shared/data   # source pcm
    Writes results.csv/json, settings.json, summary.txt and plots under --results-dir.
    """
    from probe.experiments.layers import LayersConfig, run_layers
    from probe.train import TrainConfig

    config = LayersConfig(
        extract=extract_config(opts),
        source=opts["source"],
        results_dir=opts["results_dir"],
        train=TrainConfig(seed=opts["seed"]),
        control=not opts["no_control"],
        scalar_mix=not opts["no_mix"],
        max_train_words=opts["max_train_words"],
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
@click.option("--reduction", type=int, default=4, show_default=True, help="AIF bottleneck ratio r.")
@click.option("--workers", type=int, default=None, help="Parallel pair workers (default: cores).")
@click.option(
    "--results-dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--max-train-words", type=int, default=None, help="Cap the source training words.")
@_friendly_errors
def grid(**opts: Any) -> None:  # fmt: skip
    """Fuse the last layer with each lower layer (DLFA) and score every language zero-shot.

    \b
    Examples:
      probe grid --task pos --model minilm --data-dir ../shared/data
      probe grid --task ner --model minilm --pairs all --head concat
    Prints and saves the score per layer pair and language beside the last-layer baseline,
    the gain per language and inside/outside the source's family, and a heatmap PNG.
    """
    from probe.experiments.grid import GridConfig, run_grid
    from probe.train import TrainConfig

    config = GridConfig(
        extract=extract_config(opts),
        source=opts["source"],
        pairs=opts["pairs"],
        head=opts["head"],
        reduction=opts["reduction"],
        results_dir=opts["results_dir"],
        train=TrainConfig(seed=opts["seed"], lr=opts["lr"]),
        workers=opts["workers"],
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
    type=click.Path(path_type=Path),
    default=None,
    help="Cache root, for downloaded models (default: $PROBE_CACHE or ./cache).",
)
@click.option(
    "--results-dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True
)
@click.option(
    "--fuse-layer",
    type=int,
    default=None,
    help="DLFA head fusing the last layer with layer k (default: last layer, linear).",
)
@click.option("--epochs", type=int, default=None, help="Default: XTREME's 10 for word tasks.")
@click.option("--lr", type=float, default=2e-5, show_default=True, help="Encoder learning rate.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Sentences per step.")
@click.option(
    "--max-length",
    type=int,
    default=128,
    show_default=True,
    help="Subword tokens per sentence; words past it are not trained on.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps.")
@click.option(
    "--max-train-sentences",
    type=int,
    default=None,
    help="Use only the first N source training sentences.",
)
@_friendly_errors
def finetune(**opts: Any) -> None:  # fmt: skip
    """Fine-tune the encoder with the last-layer (or DLFA) head on the source; zero-shot eval.

    \b
    Examples:
      probe finetune --task pos --model minilm --data-dir ../shared/data --epochs 1
      probe finetune --task ner --model mbert --fuse-layer 8 --device cuda
    Prints and saves the main metric per language (results.csv/json, settings.json, summary.txt).
    """
    from probe.experiments.finetune import FinetuneConfig, run_finetune
    from probe.store import default_cache_root

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


@cli.group()
def cache() -> None:
    """Inspect, verify and remove cached shards."""


@cache.command("ls")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@_friendly_errors
def cache_ls(cache_dir: Path | None) -> None:
    """List cached shards: model, task, language, split, rows, layers, size."""
    from probe.inventory import list_shards
    from probe.store import default_cache_root

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
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_friendly_errors
def cache_info(path: Path) -> None:
    """Show one shard's attributes and datasets."""
    from probe.inventory import shard_info

    for line in shard_info(path):
        click.echo(line)


@cache.command("verify")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@_friendly_errors
def cache_verify(cache_dir: Path | None, paths: tuple[Path, ...]) -> None:
    """Recompute every layer's checksum (all shards, or the given ones)."""
    from probe.inventory import verify_shards
    from probe.store import default_cache_root

    bad = verify_shards(list(paths) or None, default_cache_root(cache_dir), echo=click.echo)
    if bad:
        raise click.ClickException(
            f"{bad} corrupt or incomplete shard(s); remove with `probe cache rm`"
        )


@cache.command("rm")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_friendly_errors
def cache_rm(paths: tuple[Path, ...]) -> None:
    """Remove shards (files) or whole model keys / task folders (directories)."""
    import shutil

    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        click.echo(f"removed {path}")


def main() -> None:
    cli(prog_name="probe")


if __name__ == "__main__":
    sys.exit(main())

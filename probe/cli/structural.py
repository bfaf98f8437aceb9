"""`probe structural`: Hewitt & Manning's distance and depth probes per layer, zero-shot."""

from __future__ import annotations

from typing import Any

import click

from probe.cli.options import (
    LibraryChoice,
    cache_fields,
    extraction_options,
    max_eval_option,
    max_train_words_option,
    pool_options,
    results_dir_option,
    seeds_option,
    source_option,
    train_split_option,
)


@click.command()
@extraction_options
@source_option()
@results_dir_option()
@seeds_option(what="probe")
@click.option(
    "--rank",
    type=click.IntRange(min=1),
    default=None,
    help="Rank of each probe's linear map (default: the hidden size, H&M's full rank).",
)
@click.option(
    "--probes",
    type=LibraryChoice("probe.heads.registry:STRUCTURAL_PROBES", extra=("both",)),
    default="both",
    show_default=True,
    help="Which probes to train: distance (uuas, dspr), depth (root_acc, nspr) or both.",
)
@max_train_words_option()
@max_eval_option()
@train_split_option()
@pool_options("probes", one_per_core=True)
def structural(**opts: Any) -> None:
    """Structural probes per layer (distance and depth) on the source's UD trees, zero-shot.

    \b
    Examples:
      probe structural --model me5-small --task pos --langs en,de,es,fr,tr --data-dir ../shared/data
      probe structural --model minilm --task pos --langs en --rank 64 --probes distance
    Prints and saves per layer and language UUAS, distance Spearman (dspr), root accuracy and
    depth Spearman (nspr), mean ± sd over --seeds, the target average (with a bootstrap
    interval for UUAS and root accuracy) and the layer where each peaks; one plot per metric.
    """
    from probe.experiments.base import RunOptions
    from probe.experiments.structural import StructuralConfig, run_structural

    kinds = ("distance", "depth") if opts["probes"] == "both" else (opts["probes"],)
    config = StructuralConfig(
        **cache_fields(opts),
        source=opts["source"],
        seeds=opts["seeds"],
        rank=opts["rank"],
        kinds=kinds,
        max_train_words=opts["max_train_words"],
        max_eval_sentences=opts["max_eval_sentences"],
        train_split=opts["train_split"],
    )
    options = RunOptions(
        opts["results_dir"], opts["workers"], opts["cluster"], allow_overlap=opts["allow_overlap"]
    )
    result = run_structural(config, options)
    click.echo(result.summary)
    click.echo(
        f"extraction {result.seconds['extract']:.1f} s (0 when cached), probing "
        f"{result.seconds['jobs']:.1f} s; results in {result.directory}"
    )

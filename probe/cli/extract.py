"""`probe extract`: run the encoder once and cache every layer (one process, or a torchrun job)."""

from __future__ import annotations

import logging
from typing import Any

import click

from probe.cli.options import (
    EXTRACT_SPEC,
    LibraryChoice,
    cache_fields,
    extraction_options,
    from_library,
    seed_option,
    source_option,
)


@click.command()
@extraction_options
@click.option(
    "--splits", default=None, help="Comma list of splits (default: what a zero-shot run needs)."
)
@source_option("Source language (also gets its train/dev splits).")
@click.option(
    "--overwrite",
    type=LibraryChoice(f"{EXTRACT_SPEC}:OVERWRITE"),
    **from_library(f"{EXTRACT_SPEC}:ExtractOptions.overwrite"),
)
@seed_option(
    f"{EXTRACT_SPEC}:ExtractRequest.seed",
    "Seed of the --max-sentences sample (recorded in the shards' source hash).",
)
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1),
    **from_library(f"{EXTRACT_SPEC}:ExtractOptions.shard_rows"),
    help="Words (or pairs) per shard file; the unit of work the ranks of a torchrun job share.",
)
def extract(**opts: Any) -> None:
    """Run the encoder once and cache every layer's word representations.

    \b
    Example:
      probe extract --model minilm --task pos --langs all --data-dir ../shared/data
    writes cache/<model-key>/pos/<lang>/<split>.h5 for every language found
    (the source, en, also gets its train and dev splits).
    \b
    On several GPUs (one process each; ranks share the shards, see docs/distributed.md):
      torchrun --nproc_per_node 8 -m probe.cli extract --model mbert --task panx \\
        --langs all --shard-rows 200000
    """
    from probe.extract import ExtractRequest, ensure_cached
    from probe.runtime.ranks import current_rank

    if not current_rank().is_main:  # one rank reports; the others only warn
        logging.getLogger("probe").setLevel(logging.WARNING)
    fields = cache_fields(opts, overwrite=opts["overwrite"], shard_rows=opts["shard_rows"])
    request = ExtractRequest(
        fields["task"],
        fields["langs"],
        splits=tuple(opts["splits"].split(",")) if opts["splits"] else None,
        source=opts["source"],
        max_sentences=fields["max_sentences"],
        seed=opts["seed"],
        treebanks=fields["treebanks"],
    )
    handle = ensure_cached(fields["spec"], request, fields["options"], fields["paths"])
    report = handle.report
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

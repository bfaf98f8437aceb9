"""`probe cache ls/info/verify/rm`: inspect, verify and safely remove cached shards."""

from __future__ import annotations

from pathlib import Path

import click

from probe.cli.options import cache_dir_option


@click.group()
def cache() -> None:
    """Inspect, verify and remove cached shards."""


@cache.command("ls")
@cache_dir_option()
def cache_ls(cache_dir: Path | None) -> None:
    """List cached shards: model, task, language, split, rows, layers, size."""
    from probe.cache import default_cache_root
    from probe.cache.inventory import list_shards

    root = default_cache_root(cache_dir)
    rows = list_shards(root)
    if not rows:
        click.echo(f"no shards under {root}")
        return
    width = max(30, *(len(r.key) for r in rows))  # a twin's key is longer: minilm+random0-...
    header = (
        f"{'model key':<{width}} {'task':<8} {'lang':<5} {'split':<8} {'rows':>9} {'layers':>6} "
        f"{'size':>9}  state"
    )
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r.key:<{width}} {r.task:<8} {r.lang:<5} {r.split:<8} {r.rows:>9,} {r.layers:>6} "
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
@cache_dir_option()
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

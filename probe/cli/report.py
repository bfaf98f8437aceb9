"""`probe report`: one HTML page per model, its layer atlas, from its results directories."""

from __future__ import annotations

from pathlib import Path

import click

# The experiments' default results directory (probe.experiments.base.RunOptions.results_dir;
# a test keeps the two equal). Not read from there: that module loads torch, and a report
# reads files only, in about a second.
RESULTS_DIR = Path("results")


@click.command("report")
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    required=True,
    help="Model alias (the --model of its runs) or cache key; twice to put a second model's "
    "atlas beside the first.",
)
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=RESULTS_DIR,
    show_default=True,
    help="Where the runs wrote their results.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The HTML file (default: <results-dir>/report-<cache key>.html).",
)
def report(models: tuple[str, ...], results_dir: Path, out: Path | None) -> None:
    """Write one self-contained HTML page: the model's layer atlas and every run's figures.

    \b
    Example:
      probe layers --task pos --model me5-small --data-dir ../shared/data
      probe map --task pos --model me5-small --data-dir ../shared/data
      probe report --model me5-small          # -> results/report-me5-small-<hash>.html
      probe report --model me5-small --model minilm --out atlas.html   # side by side

    Reads only the results directories (settings.json, results.json/csv, summary.txt, PNGs)
    of every task the model has runs of: never the encoder, never the cache. The page has a
    header (model, cache key, layers, each run's data and settings), the per-layer atlas
    (structural and cross-lingual measures as a heatmap, the most structural and most
    language-neutral layers marked, intervals where the runs have them), one section per run
    with its figures and summary, and the experiments still missing, with their commands.
    """
    from probe.results.atlas import write_report

    path, atlases = write_report(results_dir, list(models), out)
    for a in atlases:
        marks = a.atlas
        click.echo(
            f"{a.model.key}: {len(a.runs)} run(s), {len(marks.columns)} per-layer measure(s) "
            f"over {marks.n_layers} layers; most structural layer "
            f"{_layer(marks.most_structural)}, most language-neutral {_layer(marks.most_neutral)}"
            f"; {len(a.missing)} experiment(s) missing"
        )
    click.echo(f"wrote {path}")


def _layer(layer: int | None) -> str:
    return "unknown" if layer is None else str(layer)

"""`probe domain-shift` and `probe calibration`: how heads hold up off their training data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from probe.cli.options import (
    LibraryChoice,
    cache_fields,
    extraction_options,
    from_library,
    pool_options,
    probe_options,
    source_option,
)

if TYPE_CHECKING:
    from probe.experiments.base import RunOptions, RunResult
    from probe.train import TrainConfig

DOMAIN_SHIFT = "probe.experiments.domain_shift:DomainShiftConfig"
CALIBRATION = "probe.experiments.calibration:CalibrationConfig"


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


# --recipe: how every head of the run trains. One recipe per comparison unless `split`.
recipe_option = click.option(
    "--recipe",
    type=LibraryChoice("probe.train.select:RECIPES", extra=("split",)),
    default="dlfa",
    show_default=True,
    help="How every head trains: dlfa = DLFA's recipe (8 epochs, decaying rate, bf16 where "
    "native) for probes and DLFA alike; probe = the linear probe's (30 epochs, flat rate, "
    "fp32) for both; split = each its own (the summary then says which fields differ).",
)


def _recipes(opts: dict[str, Any]) -> tuple[TrainConfig, TrainConfig | None]:
    """(every head's TrainConfig, DLFA's own or None) from --recipe and --max-epochs."""
    import dataclasses

    from probe.train.select import RECIPES

    over = {} if opts["max_epochs"] is None else {"max_epochs": opts["max_epochs"]}
    if opts["recipe"] == "split":
        return (dataclasses.replace(RECIPES["probe"], **over),
                dataclasses.replace(RECIPES["dlfa"], **over))  # fmt: skip
    return dataclasses.replace(RECIPES[opts["recipe"]], **over), None


@click.command("domain-shift")
@extraction_options
@click.option(
    "--out-tasks",
    **from_library(f"{DOMAIN_SHIFT}.out_tasks"),
    help="Out-of-domain tasks (same tag set) evaluated in each language they have.",
)
@click.option("--no-genres", is_flag=True, help="Skip the per-genre scores (from sentence ids).")
@click.option(
    "--small-train-words",
    type=click.IntRange(min=1),
    **from_library(f"{DOMAIN_SHIFT}.small_train_words"),
    help="Flag languages whose training split has fewer words.",
)
@probe_options(DOMAIN_SHIFT)
@recipe_option
@pool_options("languages")
def domain_shift(**opts: Any) -> None:
    """Train on one corpus of a language, score in-domain and out-of-domain, per layer and DLFA.

    \b
    Examples:
      probe domain-shift --task pos --model minilm --data-dir ../shared/data --fuse-layer 3 \
          --train-split dev   # en EWT -> GUM, PUD; de, fr GSD -> PUD; tr IMST -> PUD
          # (the shared data's GSD treebanks have no train split: train on dev, hold out 10%)
      probe domain-shift --task pos-gsd --langs zh,ru,id --model minilm --out-tasks pos-pud
      probe domain-shift --task pos-gum --model minilm --out-tasks pos,pos-pud   # GUM -> EWT
    Every head trains with one recipe (--recipe), once per seed (--seeds). Prints and saves
    scores and drops (in minus out) per head as mean ± sd, DLFA's drop against the last
    layer's and layer k's (each with a 95% bootstrap interval), per-genre scores, and
    domain_shift.png / drop_per_layer.png.
    """
    from probe.experiments.domain_shift import DomainShiftConfig, DomainShiftExperiment

    train, dlfa_train = _recipes(opts)
    config = DomainShiftConfig(
        **cache_fields(opts), out_tasks=_comma_list(opts["out_tasks"]),
        fuse_layer=opts["fuse_layer"], reduction=opts["reduction"],
        genres=not opts["no_genres"], train=train, dlfa_train=dlfa_train, seeds=opts["seeds"],
        max_train_words=opts["max_train_words"], small_train_words=opts["small_train_words"],
        train_split=opts["train_split"],
    )  # fmt: skip
    _report(DomainShiftExperiment(config, _run_options(opts)).run())


@click.command()
@extraction_options
@source_option("The English-only regime's language (default: the task's).")
@click.option(
    "--pooled",
    **from_library(f"{CALIBRATION}.pooled"),
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
    **from_library(f"{CALIBRATION}.n_bins"),
    help="Confidence bins (ECE).",
)
@probe_options(CALIBRATION)
@recipe_option
@pool_options("heads")
def calibration(**opts: Any) -> None:
    """ECE and reliability diagrams per language and layer; temperature scaling; en vs pooled.

    \b
    Examples:
      probe calibration --task pos --model minilm --data-dir ../shared/data --fuse-layer 3 \
          --train-split dev   # heads on en vs en+de+fr (dev: GSD has no train split here)
      probe calibration --task pos --model me5-small --pooled en,de,fr,es --langs tr
    Every head trains with one recipe (--recipe), once per seed (--seeds). Temperature T is
    fitted per head on its own (source) dev data. Prints and saves ECE before/after T per
    layer and language, the two regimes on held-out languages, the differences (DLFA vs the
    last layer and layer k, pooled vs source-only) with 95% bootstrap intervals,
    reliability_<regime>.png grids, ece_per_layer.png and reliability.json.
    """
    from probe.experiments.calibration import CalibrationConfig, CalibrationExperiment

    train, dlfa_train = _recipes(opts)
    config = CalibrationConfig(
        **cache_fields(opts), source=opts["source"],
        pooled=_comma_list(opts["pooled"]),
        match_size=not opts["no_match_size"], fuse_layer=opts["fuse_layer"],
        reduction=opts["reduction"], n_bins=opts["bins"],
        train=train, dlfa_train=dlfa_train, seeds=opts["seeds"],
        max_train_words=opts["max_train_words"],
        train_split=opts["train_split"],
    )  # fmt: skip
    _report(CalibrationExperiment(config, _run_options(opts)).run())


def _run_options(opts: dict[str, Any]) -> RunOptions:
    from probe.experiments.base import RunOptions

    return RunOptions(
        opts["results_dir"], opts["workers"], opts["cluster"], allow_overlap=opts["allow_overlap"]
    )


def _report(result: RunResult) -> None:
    click.echo(result.summary)
    click.echo(
        f"heads {result.seconds['jobs']:.1f} s, extraction {result.seconds['extract']:.1f} s "
        f"(0 when cached); results in {result.directory}"
    )

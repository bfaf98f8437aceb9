"""`probe finetune` and `probe intermediate`: train the encoder, or go through other tasks first."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import click

from probe.cli.options import (
    LibraryChoice,
    LibraryOption,
    cache_dir_option,
    cache_fields,
    data_dir_option,
    extraction_options,
    from_library,
    max_train_words_option,
    model_option,
    pair_pool_option,
    pool_options,
    random_weights,
    reduction_option,
    results_dir_option,
    seeds_option,
    source_option,
    task_option,
    train_split_option,
    treebank_option,
    treebanks,
)
from probe.errors import ProbeError

FINETUNE = "probe.experiments.finetune:FinetuneConfig"
EPOCHS = "probe.experiments.finetune:DEFAULT_EPOCHS"
PAIR_EPOCHS = "probe.experiments.finetune:PAIR_EPOCHS"
INTERMEDIATE = "probe.experiments.intermediate:IntermediateConfig"
INTERMEDIATE_TRAINING = "probe.experiments.intermediate:INTERMEDIATE_TRAINING"


@click.command()
@model_option()
@task_option()
@click.option(
    "--langs",
    "-l",
    default="all",
    show_default=True,
    help="Comma list of ISO codes to evaluate, or all.",
)
@source_option()
@treebank_option()
@train_split_option()
@data_dir_option()
@cache_dir_option("Cache root, for downloaded models (default: $PROBE_CACHE or ./cache).")
@results_dir_option()
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
    cls=LibraryOption,
    help_values=(EPOCHS, PAIR_EPOCHS),
    help="Default: XTREME's {} for word tasks, {} for pair tasks (xnli, pawsx).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    **from_library(f"{FINETUNE}.lr"),
    help="Encoder learning rate.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    **from_library(f"{FINETUNE}.batch_size"),
    help="Sentences (pairs) per step.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    **from_library(f"{FINETUNE}.max_length"),
    help="Subword tokens per sentence (pair, cut longest first); words past it are not trained on.",
)
@click.option("--device", **from_library(f"{FINETUNE}.device"), help="auto, cpu, cuda, cuda:1, ...")
@seeds_option(default="0", what="fine-tuned encoder and head")
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimiser steps."
)
@click.option(
    "--max-train-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Train on a seeded random sample of N source training sentences (pairs on pair tasks; "
    "stratified by genre where ids carry it; ids in subsets.json).",
)
@click.option(
    "--max-eval-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Score a seeded random sample of N evaluation sentences (pairs) of each language.",
)
@pair_pool_option()
def finetune(**opts: Any) -> None:
    """Fine-tune the encoder with the last-layer (or DLFA) head on the source; zero-shot eval.

    \b
    Examples:
      probe finetune --task pos --model minilm --data-dir ../shared/data --epochs 1
      probe finetune --task ner --model mbert --fuse-layer 8 --device cuda --seeds 0,1,2
      probe finetune --task pawsx --model me5-small --fuse-layer 10 --max-steps 200
    Prints and saves the main metric per language, mean ± sd over seeds with its bootstrap
    interval (results.csv/json, settings.json, summary.txt). One seed by default: each seed
    fine-tunes the whole encoder again.
    """
    from probe.cache import default_cache_root
    from probe.experiments.base import RunOptions
    from probe.experiments.finetune import FinetuneConfig, FinetuneExperiment

    config = FinetuneConfig(
        model=opts["model"], task=opts["task"], langs=tuple(opts["langs"].split(",")),
        source=opts["source"], data_dir=opts["data_dir"],
        cache_root=default_cache_root(opts["cache_dir"]),
        fuse_layer=opts["fuse_layer"], epochs=opts["epochs"], lr=opts["lr"],
        batch_size=opts["batch_size"], max_length=opts["max_length"], device=opts["device"],
        seeds=opts["seeds"], max_steps=opts["max_steps"],
        max_train_sentences=opts["max_train_sentences"],
        max_eval_sentences=opts["max_eval_sentences"], pair_pool=opts["pair_pool"],
        treebanks=treebanks(opts), train_split=opts["train_split"],
        random_weights=random_weights(opts),
    )  # fmt: skip
    result = FinetuneExperiment(
        config, RunOptions(opts["results_dir"], allow_overlap=opts["allow_overlap"])
    ).run()
    click.echo(result.summary)
    seconds = result.seconds["jobs"]
    click.echo(f"fine-tuning and evaluation {seconds:.1f} s; results in {result.directory}")


def _list_suites(ctx: click.Context) -> None:
    """--list-suites: print the suites and stop (no other option is needed)."""
    from probe.experiments.intermediate_suites import suites_table

    click.echo(suites_table())
    ctx.exit()


@click.command()
@functools.partial(extraction_options, task_flags=("--target", "--task", "-t"))
@click.option(
    "--via",
    default="all",
    show_default=True,
    help="Intermediate stages, comma list: a task (its default source language), task:lang "
    "(panx:de), task:l1+l2 (one multilingual stage, same --max-train-words in total), a "
    "suite (suite3, suite9: --list-suites), mixed (suite3,morph-Case); or all (every "
    "word/pair task with data but the target).",
)
@click.option(
    "--sets",
    default=None,
    help="Sets of --via stages to train on together: sizes of growing prefixes ('3'), "
    "all, or stages joined by '+' ('pos+panx:de+fr', matched against the --via stages); "
    "comma list. Default: sizes 2..all.",
)
@click.option(
    "--list-suites",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _, on: _list_suites(ctx) if on else None,
    help="List the --via suites (domain and candidate tasks of each entry) and exit.",
)
@click.option(
    "--schedule",
    type=LibraryChoice("probe.train.schedules:SCHEDULES", extra=("both",)),
    default=None,
    help="How a set trains: one task after another, or batches interleaved. Default: both on "
    "cached features; sequential (the only one) with --finetune.",
)
@source_option("The target's source language (default: the task's).")
@click.option(
    "--body",
    type=LibraryChoice("probe.heads.registry:BODIES.names"),
    **from_library(f"{INTERMEDIATE}.body"),
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
    **from_library(f"{INTERMEDIATE}.width"),
    help="mlp/mix body width.",
)
@reduction_option(f"{INTERMEDIATE}.reduction")
@seeds_option(default="0", what="configuration")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    cls=LibraryOption,
    help_values=(f"{INTERMEDIATE_TRAINING}.lr", f"{FINETUNE}.lr"),
    help="Learning rate (default {} on cached features; the encoder's {} with --finetune).",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    **from_library(f"{INTERMEDIATE_TRAINING}.max_epochs"),
    help="Most epochs per stage on cached features (early stopping on dev loss).",
)
@max_train_words_option("Cap every task's training words (pairs for pair tasks).")
@train_split_option()
@click.option(
    "--max-via-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Extract a seeded random sample of N sentences (pairs) of each intermediate split "
    "(it replaces "
    "a full cached split of that task, as --max-sentences does).",
)
@results_dir_option()
@click.option(
    "--distance",
    is_flag=True,
    help="Also write gain_vs_distance.csv/.png: each configuration's gain per target against "
    "the URIEL distances of its intermediate language(s), with Spearman's rho per "
    "intermediate task and kind (single-stage configurations only).",
)
@click.option(
    "--eval-domains",
    is_flag=True,
    help="Also score the target head on other-domain sets with its labels (POS: the other UD "
    "treebanks of each language in the data, e.g. GUM, PUD); report each drop and its "
    "difference from none's.",
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
    cls=LibraryOption,
    help_values=(EPOCHS,),
    help="--finetune: epochs per stage (default {}).",
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
    **from_library(f"{FINETUNE}.batch_size"),
    help="--finetune: sentences per step.",
)
@click.option(
    "--max-train-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="--finetune: a seeded random sample of N training sentences of every task.",
)
@click.option(
    "--max-eval-sentences",
    type=click.IntRange(min=1),
    default=None,
    help="Score a seeded random sample of N evaluation sentences (pairs) of each language "
    "(the --eval-domains sets too); training splits keep their own caps (--max-train-words).",
)
@pool_options("seeds")
def intermediate(**opts: Any) -> None:
    """Train on intermediate tasks before the target: none, each task, growing sets.

    \b
    Examples:
      probe intermediate --target ner --via pos,udpos,panx --model minilm --data-dir ../shared/data
      probe intermediate --target pos --via all --model minilm --schedule mixed --seeds 0,1,2
      probe intermediate --target ner --via suite9 --sets 3,6,9 --model me5-small
      probe intermediate -t pawsx --via pos,pos:tr,pos:en+tr+vi --max-train-words 5000 -m me5-small
      probe intermediate --target ner --via pos,udpos --model minilm --finetune --max-steps 50
    Scores every target language zero-shot per configuration and prints the gains over 'none'
    per language, inside/outside the source's family and per family, each with its seed sd
    and paired bootstrap interval ("*": excludes 0); writes results.csv/json,
    settings.json, summary.txt and intermediate.png under --results-dir. --workers/--cluster
    train the seeds in parallel; --finetune runs its configurations in this process.
    """
    from probe.experiments.base import RunOptions
    from probe.train.schedules import SCHEDULES

    schedule = opts["schedule"] or ("sequential" if opts["finetune_mode"] else "both")
    schedules = tuple(SCHEDULES) if schedule == "both" else (schedule,)
    seeds = opts["seeds"]
    lr = {"lr": opts["lr"]} if opts["lr"] else {}  # else: the library's, per mode
    via = (opts["via"],)
    options = RunOptions(
        opts["results_dir"], opts["workers"], opts["cluster"], allow_overlap=opts["allow_overlap"]
    )
    if opts["finetune_mode"]:
        if opts["distance"]:
            raise ProbeError("--distance runs on cached features only: drop --finetune")
        if opts["eval_domains"]:
            raise ProbeError("--eval-domains scores cached-feature heads only: drop --finetune")
        from probe.cache import default_cache_root
        from probe.experiments.finetune import FinetuneConfig
        from probe.experiments.intermediate_finetune import (
            IntermediateFinetuneConfig,
            IntermediateFinetuneExperiment,
        )

        if schedules != ("sequential",):
            raise ProbeError("--finetune trains sets sequentially only: pass --schedule sequential")
        if len(seeds) != 1:
            raise ProbeError("--finetune runs one seed: pass --seeds N")
        ft = FinetuneConfig(
            model=opts["model"], task=opts["task"], langs=tuple(opts["langs"].split(",")),
            source=opts["source"], data_dir=opts["data_dir"],
            cache_root=default_cache_root(opts["cache_dir"]),
            epochs=opts["epochs"], batch_size=opts["batch_size"],
            device=opts["device"], seeds=seeds, max_steps=opts["max_steps"],
            max_train_sentences=opts["max_train_sentences"], reduction=opts["reduction"],
            treebanks=treebanks(opts), train_split=opts["train_split"],
            random_weights=random_weights(opts), **lr,
        )  # fmt: skip
        config = IntermediateFinetuneConfig(
            finetune=ft, via=via, sets=opts["sets"], body=opts["body"], layer=opts["layer"],
            width=opts["width"], max_eval_sentences=opts["max_eval_sentences"],
        )  # fmt: skip
        result = IntermediateFinetuneExperiment(config, options).run()
        before = "loading the encoder and data {:.1f} s"
    else:
        from probe.experiments.intermediate import (
            INTERMEDIATE_TRAINING,
            IntermediateConfig,
            IntermediateExperiment,
        )

        train = dataclasses.replace(INTERMEDIATE_TRAINING, max_epochs=opts["max_epochs"], **lr)
        head_config = IntermediateConfig(
            **cache_fields(opts), via=via, sets=opts["sets"], schedules=schedules,
            source=opts["source"], body=opts["body"], layer=opts["layer"], width=opts["width"],
            reduction=opts["reduction"], train=train, seeds=seeds,
            max_train_words=opts["max_train_words"], max_via_sentences=opts["max_via_sentences"],
            max_eval_sentences=opts["max_eval_sentences"],
            distance=opts["distance"], eval_domains=opts["eval_domains"],
            train_split=opts["train_split"],
        )  # fmt: skip
        result = IntermediateExperiment(head_config, options).run()
        before = "extraction {:.1f} s, 0 when cached"
    click.echo(result.summary)
    seconds = result.seconds
    click.echo(f"training and scoring {seconds['jobs']:.1f} s "
               f"({before.format(seconds['extract'])}); results in {result.directory}")  # fmt: skip

"""`probe layers`, `probe grid`, `probe map`: probes on cached features, layer by layer."""

from __future__ import annotations

from typing import Any

import click

from probe.cli.options import (
    DLFA,
    LibraryChoice,
    cache_fields,
    dlfa_training,
    extraction_options,
    from_library,
    max_eval_option,
    max_train_words_option,
    pair_pool_option,
    pool_options,
    reduction_option,
    results_dir_option,
    seeds_option,
    source_option,
    train_split_option,
)

GRID = "probe.experiments.grid:GridConfig"
PARALLEL = "probe.experiments.map_parallel:ParallelConfig"
NET = "probe.analysis.crosslingual.alignment:NetConfig"


@click.command()
@extraction_options
@source_option("Source language (default: the task's, e.g. en; pcm for ner).")
@results_dir_option()
@seeds_option(what="probe")
@click.option("--no-control", is_flag=True, help="Skip the control task (selectivity).")
@click.option(
    "--control-maps",
    type=click.IntRange(min=1),
    default=None,
    help="Control maps selectivity averages over (default: one per seed).",
)
@click.option("--no-mix", is_flag=True, help="Skip the scalar mix.")
@click.option(
    "--mdl",
    is_flag=True,
    help="Also the online code length per layer (MDL, Voita & Titov 2020) of the "
    "source training labels, and its plot.",
)
@click.option(
    "--beside-random",
    is_flag=True,
    help="Also probe the model's random-weights twin (extracted if missing) and "
    "print trained vs random per layer with the Δ's interval.",
)
@max_train_words_option()
@train_split_option()
@pool_options("probes", one_per_core=True)
def layers(**opts: Any) -> None:
    """Linear probe per layer on the source language, zero-shot on every other language.

    \b
    Examples:
      probe layers --task pos --model minilm --data-dir ../shared/data
      probe layers --task ner --model minilm --data-dir ../shared/data   # source pcm
      probe layers --task pos --model mbert --workers 8
      probe layers --task pos --model me5-small --seeds 0,1,2,3,4 --mdl --beside-random
    Writes results.csv/json, settings.json, summary.txt and plots under --results-dir.
    """
    from probe.experiments.base import RunOptions
    from probe.experiments.layers import LayersConfig, run_layers
    from probe.train import TrainConfig

    config = LayersConfig(
        **cache_fields(opts),
        source=opts["source"],
        train=TrainConfig(seed=opts["seeds"][0]),
        seeds=opts["seeds"],
        control=not opts["no_control"],
        control_maps=opts["control_maps"],
        scalar_mix=not opts["no_mix"],
        max_train_words=opts["max_train_words"],
        train_split=opts["train_split"],
        mdl=opts["mdl"],
        beside_random=0 if opts["beside_random"] else None,
    )
    options = RunOptions(
        opts["results_dir"], opts["workers"], opts["cluster"], allow_overlap=opts["allow_overlap"]
    )
    result = run_layers(config, options)
    click.echo(result.table)
    weights = " ".join(f"{w:.2f}" for w in result.mix_weights)
    if weights:
        click.echo(f"scalar-mix weights (layer 0..): {weights}")
    click.echo(
        f"extraction {result.extract_seconds:.1f} s (0 when cached), probing "
        f"{result.probe_seconds:.1f} s; results in {result.directory}"
    )


@click.command()
@extraction_options
@source_option()
@click.option(
    "--pairs",
    **from_library(f"{GRID}.pairs"),
    help="last: (k, last) for every k; all: every pair; or '4,6;5,6'.",
)
@click.option(
    "--head", type=LibraryChoice("probe.heads.registry:pair_heads"), **from_library(f"{GRID}.head")
)
@reduction_option(f"{GRID}.reduction")
@pool_options("pairs", one_per_core=True)
@results_dir_option()
@seeds_option(what="system (pair and baseline)")
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Train the matched baselines in the same run: the last layer through DLFA's gated head "
    "(equal capacity), every single layer (the best one chosen on source dev) and concat on "
    "each pair.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    **from_library(f"{DLFA}.lr"),
    help="Head learning rate.",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    **from_library(f"{DLFA}.max_epochs"),
    help="Epochs of the linearly decaying rate, with early stopping on dev loss.",
)
@max_train_words_option()
@max_eval_option()
@pair_pool_option()
@train_split_option()
def grid(**opts: Any) -> None:
    """Fuse the last layer with each lower layer (DLFA) and score every language zero-shot.

    \b
    Examples:
      probe grid --task pos --model minilm --data-dir ../shared/data
      probe grid --task ner --model minilm --pairs all --head concat
      probe grid --task panx --model mbert --pairs all --cluster tcp://scheduler:8786
      probe grid --task xnli --model me5-small --max-train 2000 --max-eval-sentences 500
    Prints and saves the score per system and language (mean ± sd over --seeds), every fused
    pair's gain over the last layer, the equal-capacity gated control, the best single layer
    chosen on source dev and concat, each with a paired bootstrap 95% interval (per
    language, inside/outside the source's family, over all targets), DLFA with k chosen on
    source dev, and a heatmap PNG.
    """
    from probe.experiments.base import RunOptions
    from probe.experiments.grid import GridConfig, GridExperiment

    config = GridConfig(
        **cache_fields(opts),
        source=opts["source"],
        pairs=opts["pairs"],
        head=opts["head"],
        reduction=opts["reduction"],
        train=dlfa_training(opts),
        max_train_words=opts["max_train_words"],
        train_split=opts["train_split"],
        seeds=opts["seeds"],
        baselines=opts["baselines"],
        pair_pool=opts["pair_pool"],
        max_eval_sentences=opts["max_eval_sentences"],
    )
    options = RunOptions(
        opts["results_dir"], opts["workers"], opts["cluster"], allow_overlap=opts["allow_overlap"]
    )
    result = GridExperiment(config, options).run()
    click.echo(result.summary)
    click.echo(
        f"grid on cached features {result.seconds['jobs']:.1f} s (extraction "
        f"{result.seconds['extract']:.1f} s, 0 when cached); results in {result.directory}"
    )


@click.command("map")
@extraction_options
@source_option()
@click.option(
    "--parallel-langs",
    default="",
    help="More Tatoeba languages for retrieval/CKA only (comma list, or all); the task's "
    "languages are always included.",
)
@click.option(
    "--fit-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    **from_library(f"{PARALLEL}.fit_fraction"),
    help="Share of each language's pairs that fits the alignment maps (the rest tests them).",
)
@click.option(
    "--ridge",
    type=click.FloatRange(min=0),
    **from_library(f"{PARALLEL}.ridge"),
    help="Least-squares ridge (default: chosen by 5-fold cross-validation on the fitting pairs; "
    "0 = plain least squares, which interpolates the fitting pairs when dimensions >= pairs).",
)
@click.option(
    "--net-steps",
    type=click.IntRange(min=1),
    **from_library(f"{NET}.steps"),
    help="Alignment net steps (at most; early stopping on held-out pairs).",
)
@click.option(
    "--net-lr",
    type=click.FloatRange(min=0, min_open=True),
    **from_library(f"{NET}.lr"),
    help="Alignment net lr.",
)
@click.option(
    "--xtreme-layer",
    type=click.IntRange(min=0),
    **from_library(f"{PARALLEL}.xtreme_layer"),
    help="Layer of XTREME's Tatoeba protocol (0 = embeddings; default: mBERT's 8 of 12 "
    "scaled to the model's depth).",
)
@click.option(
    "--typology-layer",
    type=click.IntRange(min=0),
    **from_library("probe.experiments.map:MapConfig.typology_layer"),
    help="Layer of the confirmatory typology test (transfer vs URIEL distance; 0 = "
    "embeddings; default: 8 of 12 scaled to the model's depth, fixed before any score is "
    "seen). Every other layer is reported as an exploratory sweep.",
)
@click.option(
    "--structural",
    default="",
    help="More structural curves beside the task's probe, comma list: uuas (a distance "
    "probe on the task's UD trees) and word tasks such as morph-Number or deprel; each "
    "trained on the source per layer (first seed), the summary says where each peaks.",
)
@results_dir_option()
@seeds_option(what="probe")
@max_train_words_option()
@train_split_option()
@pool_options("probes and parallel scores")
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
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig

    extra = tuple(x.strip() for x in opts["parallel_langs"].split(",") if x.strip())
    seed = opts["seeds"][0]  # data subsets and the parallel part: the first seed
    config = MapConfig(
        **cache_fields(opts),
        source=opts["source"],
        train=TrainConfig(seed=seed),
        max_train_words=opts["max_train_words"],
        train_split=opts["train_split"],
        parallel=ParallelConfig(
            fit_fraction=opts["fit_fraction"],
            ridge=opts["ridge"],
            centre_seed=seed,
            xtreme_layer=opts["xtreme_layer"],
            net=NetConfig(steps=opts["net_steps"], lr=opts["net_lr"], seed=seed),
        ),
        extra_parallel=extra,
        seeds=opts["seeds"],
        typology_layer=opts["typology_layer"],
        structural=tuple(x.strip() for x in opts["structural"].split(",") if x.strip()),
    )
    result = run_map(
        config,
        RunOptions(
            opts["results_dir"],
            opts["workers"],
            opts["cluster"],
            allow_overlap=opts["allow_overlap"],
        ),
    )
    click.echo(result.table)
    click.echo(f"results in {result.directory}")

"""`probe paper`: the seed paper's protocol (DLFA's D_k sweep on its four tasks) in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from probe.cli.options import (
    cache_dir_option,
    data_dir_option,
    max_eval_option,
    model_option,
    pair_pool_option,
    pool_options,
    random_weights,
    results_dir_option,
    seeds_option,
)


def _ks(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None or value == "all":
        return None
    try:
        return tuple(int(k) for k in value.split(",") if k.strip())
    except ValueError:
        raise click.BadParameter(f"expected 'all' or a comma list of layers, not {value!r}",
                                 param_hint="--ks") from None  # fmt: skip


@click.command()
@model_option()
@click.option("--tasks", default="xnli,pawsx,panx,udpos", show_default=True,
              help="Comma list of tasks (the paper's four by default).")  # fmt: skip
@click.option("--ks", default="all", show_default=True, callback=_ks,
              help="The k of D_k (the lower layer fused with the last): all lower layers, or "
              "a comma list such as 6,8,10.")  # fmt: skip
@click.option("--finetune", is_flag=True, default=False,
              help="Fine-tune the encoder with each system (one run per system and seed) "
              "instead of training heads on the cached features.")  # fmt: skip
@seeds_option(what="system (with --finetune: a whole fine-tuning run)")
@click.option("--max-train-words", type=click.IntRange(min=1), default=None,
              help="Word tasks: a seeded sample of at most N training words.")  # fmt: skip
@click.option("--max-train-pairs", type=click.IntRange(min=1), default=None,
              help="Pair tasks: a seeded sample of at most N training pairs.")  # fmt: skip
@click.option("--max-train-sentences", type=click.IntRange(min=1), default=None,
              help="--finetune, word tasks: a seeded sample of at most N training sentences "
              "(fine-tuning samples whole sentences).")  # fmt: skip
@max_eval_option()
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="--finetune: optimizer steps per system (a CPU budget).")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="--finetune: epochs (default XTREME's per task).")  # fmt: skip
@pair_pool_option()
@click.option("--compute", "compute_dtype", default="auto", show_default=True,
              help="Forward-pass precision of the extraction (auto: bf16 where the hardware "
              "has it).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@data_dir_option()
@cache_dir_option()
@results_dir_option()
@pool_options("systems", one_per_core=True)
def paper(**opts: Any) -> None:
    """Chen et al. 2022's table: the last-layer baseline and D_k per task, beside the paper.

    \b
    Examples:
      probe paper --model me5-small --data-dir ../shared/data \\
          --max-train-words 20000 --max-train-pairs 2000 --max-eval-sentences 500 --seeds 0
      probe paper --model mbert --finetune --ks 8,10,11        # a GPU run
    Runs `probe grid` per task (frozen, on the cache; with every matched baseline, seeds and
    intervals) or, with --finetune, one `probe finetune` per system, then writes one table
    (tasks as columns, baseline and D_k rows, the best k marked, ours beside the published
    numbers), every Δ over the baseline and over the best single layer chosen on source dev
    with its 95% interval (targets, in-family, out-of-family), CSV/JSON and gain_per_k.png.
    """
    from probe.experiments.base import RunOptions
    from probe.experiments.paper import PaperConfig, run_paper
    from probe.extract.spec import CachePaths, ExtractOptions, ExtractSpec

    config = PaperConfig(
        spec=ExtractSpec(model=opts["model"], compute_dtype=opts["compute_dtype"],
                         random_weights=random_weights(opts)),
        tasks=tuple(t for t in opts["tasks"].split(",") if t.strip()),
        ks=opts["ks"], finetune=opts["finetune"], seeds=opts["seeds"],
        max_train_words=opts["max_train_words"], max_train_pairs=opts["max_train_pairs"],
        max_train_sentences=opts["max_train_sentences"],
        max_eval_sentences=opts["max_eval_sentences"], max_steps=opts["max_steps"],
        epochs=opts["epochs"], pair_pool=opts["pair_pool"],
        options=ExtractOptions(device=opts["device"]),
        paths=CachePaths.resolve(opts["cache_dir"], opts["data_dir"]),
    )  # fmt: skip
    options = RunOptions(Path(opts["results_dir"]), opts["workers"], opts["cluster"],
                         allow_overlap=opts["allow_overlap"])  # fmt: skip
    result = run_paper(config, options)
    click.echo(result.summary)
    click.echo(f"results in {result.directory}")

"""The options several commands share, each declared once; choices and defaults the library owns.

A value the library owns (a registry's names, a constant, a config default) is named here by
its place, `module:Name.attr`, and read when a command's help is shown or the command runs,
never when the CLI is imported: most of those modules load torch, and `probe --help` or
`probe cache ls` must not pay for it (heavy imports stay inside the commands).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Where the values the options default to or choose from live.
EXTRACT_SPEC = "probe.extract.spec"
TASK_NAMES = "probe.data.tasks:task_names"  # the registry's names and pair tasks' token views
TRAIN = "probe.train:TrainConfig"
SEED = f"{TRAIN}.seed"
RESULTS_DIR = "probe.experiments.base:RunOptions.results_dir"
WORKERS = "probe.experiments.base:RunOptions.workers"
DLFA = "probe.train.select:DLFA_TRAINING"


def library(ref: str) -> Any:
    """The library's value at `ref` ('module:Name.attr'), imported now."""
    module, _, path = ref.partition(":")
    value: Any = importlib.import_module(module)
    for name in path.split("."):
        value = getattr(value, name)
    return value


class LibraryChoice(click.Choice):  # type: ignore[type-arg]
    """A click.Choice over names the library owns, read on first use (help, parsing).

    `ref` names a tuple of names, or a function or method returning them (a registry's
    `names`); `extra` are choices the command adds (intermediate's `--schedule both`).
    """

    def __init__(self, ref: str, extra: tuple[str, ...] = ()) -> None:
        # No super().__init__: click.Choice would read the names now.
        self.ref = ref
        self.extra = extra
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        """Read on every use, so a task registered after import is a valid choice."""
        names = library(self.ref)
        return (*(names() if callable(names) else names), *self.extra)


class LibraryOption(click.Option):
    """An option whose default, or the values its help quotes, the library owns.

    `library_default` names the default, read when help is shown or the command runs (a
    tuple becomes the comma list the option takes: `--pooled en,de,fr`). `help_values` name
    the values that fill the `{}` of the help when it is shown: the model aliases, or the
    default of an option left None because the library resolves None itself (its settings
    record None, so passing the number would change a results directory's hash).
    """

    def __init__(
        self,
        *args: Any,
        library_default: str | None = None,
        help_values: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        if library_default is not None:
            kwargs.update(default=None, show_default=kwargs.get("show_default", True))
        super().__init__(*args, **kwargs)
        self.library_default = library_default
        self.help_values = help_values
        self.help_template = self.help

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        value = super().get_default(ctx, call=call)
        if value is not None or self.library_default is None:
            return value  # a default map (a config file) beats the library
        value = library(self.library_default)
        return ",".join(map(str, value)) if isinstance(value, tuple) else value

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if self.help_values and self.help_template is not None:
            self.help = self.help_template.format(*map(_quoted, self.help_values))
        return super().get_help_record(ctx)


def _quoted(ref: str) -> str:
    value = library(ref)
    value = value() if callable(value) else value
    return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def from_library(ref: str) -> dict[str, Any]:
    """`click.option(..., **from_library(ref))`: the option defaults to the library's value."""
    return {"cls": LibraryOption, "library_default": ref}


def stack(*options: Decorator) -> Decorator:
    """Apply options in the order written (click lists them in --help in that order)."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


# --- extraction --------------------------------------------------------------------------------


def model_option() -> Decorator:
    """--model, and its random-weights twin (`random_weights_option`): every command that
    takes a model takes both."""
    return stack(
        click.option("--model", "-m", required=True, cls=LibraryOption,
                     help="Alias ({}), hub id or local directory.",
                     help_values=("probe.models.aliases:MODELS.names",)),
        random_weights_option(),
    )  # fmt: skip


def random_weights_option() -> Decorator:
    """--random-weights [--random-weights-seed N]: the model's architecture and tokenizer with
    every weight re-drawn from its own init (probe.models.random_init), a baseline with its
    own cache key; read by `random_weights(opts)`."""
    return stack(
        click.option("--random-weights", is_flag=True, default=False,
                     help="Use the model's random-weights twin: same config and tokenizer, "
                     "every weight re-initialised with a fixed seed (own cache key)."),
        click.option("--random-weights-seed", type=click.IntRange(min=0), default=None,
                     help="Seed of the re-initialisation (implies --random-weights; "
                     "default 0)."),
    )  # fmt: skip


def random_weights(opts: dict[str, Any]) -> int | None:
    """The twin's seed from --random-weights / --random-weights-seed; None: trained weights."""
    seed = opts.get("random_weights_seed")
    if seed is not None:
        return int(seed)
    return 0 if opts.get("random_weights") else None


def task_option(*flags: str) -> Decorator:
    """The task, one of the registry's (`task_flags` renames it: intermediate's --target)."""
    return click.option(*(flags or ("--task", "-t")), "task", required=True,
                        type=LibraryChoice(TASK_NAMES))  # fmt: skip


def data_dir_option() -> Decorator:
    return click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
                        default=None,
                        help="Root of the task data (default: $PROBE_DATA; neither: the HF "
                        "hub).")  # fmt: skip


def cache_dir_option(help: str = "Cache root (default: $PROBE_CACHE or ./cache).") -> Decorator:
    return click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
                        default=None, help=help)  # fmt: skip


def extraction_options(
    fn: Callable[..., Any], task_flags: tuple[str, ...] = ("--task", "-t")
) -> Callable[..., Any]:
    """The options that pick a cache: model, task, languages, pooling, precision, data.

    `task_flags` renames the task option where a command calls it otherwise (`--target`);
    its value is always `opts["task"]`."""
    spec, options = f"{EXTRACT_SPEC}:ExtractSpec", f"{EXTRACT_SPEC}:ExtractOptions"
    return stack(
        model_option(),
        task_option(*task_flags),
        click.option("--langs", "-l", default="all", show_default=True,
                     help="Comma list of ISO codes, or all."),
        click.option("--pool", "pooling", type=LibraryChoice(f"{EXTRACT_SPEC}:POOLINGS"),
                     **from_library(f"{spec}.pooling"),
                     help="Subword-to-word pooling (first-content: the first piece that is not "
                     "a bare SentencePiece '▁', = first for WordPiece; first: XTREME's)."),
        click.option("--dtype", type=LibraryChoice(f"{EXTRACT_SPEC}:STORAGE_DTYPES"),
                     **from_library(f"{spec}.dtype"), help="Storage dtype."),
        click.option("--compute", "compute_dtype",
                     type=LibraryChoice(f"{EXTRACT_SPEC}:COMPUTE_DTYPES"),
                     **from_library(f"{spec}.compute_dtype"),
                     help="Forward-pass precision (auto: bf16 where the hardware has it)."),
        click.option("--max-length", type=click.IntRange(min=1),
                     **from_library(f"{spec}.max_length"),
                     help="Window length in tokens; longer sentences get overlapping windows."),
        click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
                     help="Padded tokens per batch (default 4096 on CPU, 32768 on CUDA)."),
        click.option("--device", **from_library(f"{options}.device"),
                     help="auto, cpu, cuda, cuda:1, ..."),
        click.option("--max-sentences", type=click.IntRange(min=1), default=None,
                     help="Use a seeded random sample of N records of each split "
                     "(whole sentences, stratified by genre where ids carry it)."),
        treebank_option(),
        data_dir_option(),
        cache_dir_option(),
    )(fn)  # fmt: skip


def cache_fields(opts: dict[str, Any], **option_overrides: Any) -> dict[str, Any]:
    """What every cache-reading command's config starts from, built from `extraction_options`:
    `spec`, `options` and `paths` (with --cache-dir / --data-dir resolved against the
    environment once, here) and the selection `task`, `langs`, `max_sentences`."""
    from probe.extract.spec import CachePaths, ExtractOptions, ExtractSpec

    spec = ExtractSpec(
        model=opts["model"], pooling=opts["pooling"], dtype=opts["dtype"],
        compute_dtype=opts["compute_dtype"], max_length=opts["max_length"],
        random_weights=random_weights(opts),
    )  # fmt: skip
    options = ExtractOptions(device=opts["device"], batch_tokens=opts["batch_tokens"],
                             **option_overrides)  # fmt: skip
    return {
        "spec": spec, "options": options,
        "paths": CachePaths.resolve(opts["cache_dir"], opts["data_dir"]),
        "task": opts["task"], "langs": tuple(opts["langs"].split(",")),
        "max_sentences": opts["max_sentences"],
        "treebanks": treebanks(opts),
    }  # fmt: skip


def treebank_option() -> Decorator:
    return click.option(
        "--treebank", default="", metavar="TB[+TB][,TB...]",
        help="UD tasks: the treebank(s) of a language, e.g. cs_pdt, or en_ewt+en_gum "
        "(concatenated per split); ',' between languages. Default: the language's treebank "
        "with a train split (largest), else its largest (see the task's description).",
    )  # fmt: skip


def treebanks(opts: dict[str, Any]) -> tuple[str, ...]:
    """--treebank as the tuple ExtractRequest.treebanks takes."""
    return tuple(x.strip() for x in (opts.get("treebank") or "").split(",") if x.strip())


def train_split_option() -> Decorator:
    """--train-split: the split the source trains on instead of the task's (e.g. dev, the
    small-data setting; the dev set is then a seeded hold-out of it)."""
    return click.option(
        "--train-split", default=None,
        help="Train on this split of the source instead of the task's (e.g. dev: the dev set "
        "is then a seeded hold-out of it); evaluation splits are refused.",
    )  # fmt: skip


# --- runs --------------------------------------------------------------------------------------


def source_option(help: str = "Source language (default: the task's).") -> Decorator:
    return click.option("--source", default=None, help=help)


def results_dir_option() -> Decorator:
    """--results-dir, and --allow-overlap: every command that writes results runs the
    leakage guard (probe.experiments.leakage)."""
    return stack(
        click.option("--results-dir", type=click.Path(path_type=Path, file_okay=False),
                     **from_library(RESULTS_DIR)),
        allow_overlap_option(),
    )  # fmt: skip


def allow_overlap_option() -> Decorator:
    return click.option(
        "--allow-overlap", is_flag=True, default=False,
        help="Run even when training or dev sentences (or their translations) overlap the "
        "evaluation splits; the overlap counts are recorded in settings.json either way "
        "(docs/guide.md, Leakage guard).",
    )  # fmt: skip


def seed_option(ref: str = SEED, help: str | None = None) -> Decorator:
    return click.option("--seed", type=click.IntRange(min=0), **from_library(ref), help=help)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2): distinct non-negative integers, at least one."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"expected a comma list of integers, not {text!r}",
                                 param_hint="--seeds") from None  # fmt: skip
    if not seeds or min(seeds) < 0:
        raise click.BadParameter(f"expected seeds >= 0, not {text!r}", param_hint="--seeds")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r} lists a seed twice", param_hint="--seeds")
    return seeds


def seeds_option(default: str = "0,1,2", what: str = "head") -> Decorator:
    """--seeds: the training seeds of a run (each trains every head once); tables show the
    mean ± sd over them and intervals resample them (docs/guide.md, Seeds and intervals).
    Data subsets and hold-outs are drawn with the first seed, so seeds vary only training."""
    return click.option(
        "--seeds",
        default=default,
        show_default=True,
        callback=lambda ctx, param, value: parse_seeds(value),
        help=f"Comma list of training seeds: every {what} trains once per seed; tables show "
        "mean ± sd and bootstrap intervals over items and seeds. Subsets and hold-outs use the "
        "first seed.",
    )


def max_train_words_option(
    help: str = "Cap the source training words (pairs for pair tasks).",
) -> Decorator:
    """--max-train-words (or --max-train): a seeded random sample of whole sentences (pairs;
    genre-stratified), and the only part of the training split that is extracted."""
    help += " A seeded random sample of whole sentences; only it is extracted."
    return click.option("--max-train-words", "--max-train", "max_train_words",
                        type=click.IntRange(min=1), default=None, help=help)  # fmt: skip


def max_eval_option() -> Decorator:
    """--max-eval-sentences: a seeded sample of every language's evaluation split (a CPU
    budget), recorded in settings.json; XNLI's and PAWS-X's translations keep the same rows."""
    return click.option(
        "--max-eval-sentences", type=click.IntRange(min=1), default=None,
        help="Score each language on a seeded sample of at most N evaluation sentences (pairs); "
        "only it is extracted. Default: the whole split.",
    )  # fmt: skip


def pair_pool_option() -> Decorator:
    """--pair-pool: which row of a pair's fused tokens is classified."""
    return click.option(
        "--pair-pool", type=LibraryChoice("probe.heads.registry:PAIR_POOLS"), default="first",
        show_default=True,
        help="Pair tasks: classify the fused [CLS] row (first) or the mean over the pair's tokens.",
    )  # fmt: skip


def reduction_option(ref: str) -> Decorator:
    return click.option("--reduction", type=click.IntRange(min=1), **from_library(ref),
                        help="AIF bottleneck ratio r.")  # fmt: skip


def pool_options(jobs: str, *, one_per_core: bool = False) -> Decorator:
    """--workers / --cluster: where the `jobs` (probes, pairs) of a run train.

    `one_per_core`: --workers defaults to one per core (the run's config says None), else to
    the library's RunOptions.workers."""
    workers = (
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help=f"{jobs.capitalize()} trained at once in local processes "
                     "(default: one per core).")
        if one_per_core
        else click.option("--workers", type=click.IntRange(min=1), **from_library(WORKERS),
                          help=f"{jobs.capitalize()} trained at once in local processes.")
    )  # fmt: skip
    cluster = click.option(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help=f"Run the {jobs} on a Dask (tcp://host:8786, scheduler.json) or Ray "
        "(ray://host:10001) cluster; see docs/distributed.md.",
    )
    return stack(workers, cluster)


# --- heads -------------------------------------------------------------------------------------


def _fuse_layer(ctx: click.Context, param: click.Parameter, value: str) -> int | str | None:
    """--fuse-layer: a layer number k, 'best' (lowest dev loss over every k) or 'none'."""
    if value is None:
        return None
    if value in ("best", "none"):
        return None if value == "none" else value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a layer number, 'best' or 'none'; got {value!r}"
        ) from None


def dlfa_training(opts: dict[str, Any]) -> Any:
    """DLFA's training defaults (DLFA_TRAINING) with the options; its seed is the first of
    --seeds (each job then trains with its own)."""
    overrides = {"seed": opts["seeds"][0]}
    for name in ("lr", "max_epochs"):
        if opts.get(name) is not None:
            overrides[name] = opts[name]
    return dataclasses.replace(library(DLFA), **overrides)


def probe_options(config: str) -> Decorator:
    """Options domain-shift and calibration share: DLFA's k, training caps, output.

    `config` names the command's config class, whose defaults the options take."""
    return stack(
        click.option("--fuse-layer", **from_library(f"{config}.fuse_layer"),
                     callback=_fuse_layer,
                     help="DLFA (last, k): k, 'best' (lowest dev loss over every k; slow) or "
                     "'none'."),
        reduction_option(f"{config}.reduction"),
        click.option("--max-epochs", type=click.IntRange(min=1), default=None,
                     cls=LibraryOption, help_values=(f"{TRAIN}.max_epochs", f"{DLFA}.max_epochs"),
                     help="Epoch cap of every head (default: the --recipe's, {} for probe, "
                     "{} for dlfa; early stopping on dev loss)."),
        max_train_words_option("Cap each training language's words (whole sentences)."),
        train_split_option(),
        results_dir_option(),
        seeds_option(),
    )  # fmt: skip

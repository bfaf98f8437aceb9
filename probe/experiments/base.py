"""The one experiment skeleton every command runs through (after mteb's `AbsTask.evaluate`).

An experiment declares what is specific to it: its name, the task levels it accepts, what
to extract, its jobs, how one job runs, how job rows aggregate, its settings and how its
results render. `Experiment.run()` owns the rest, once for all of them: resolving the task,
the source and the languages, refusing torchrun, one `ensure_cached` call (one cache key by
construction), the leakage guard (probe.experiments.leakage), the results directory, the
job pool (`--workers` / `--cluster`) with its journal (a killed run resumes with only the
missing jobs), the results files and the summary.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from probe.data.discovery import check_language
from probe.data.tasks import (
    Task,
    base_task_name,
    default_data_dir,
    get_task,
    treebank_settings,
)
from probe.errors import ProbeError
from probe.experiments.backends import PoolConfig
from probe.experiments.dtypes import compute_dtypes
from probe.experiments.journal import Journal, fingerprint
from probe.experiments.leakage import (
    LeakageReport,
    SplitUse,
    cache_sentences,
    check_leakage,
    file_sentences,
    leakage_lines,
)
from probe.experiments.pool import run_jobs
from probe.experiments.subset_record import extracted_subsets, training_subsets, write_subsets
from probe.registry import Registry
from probe.results.items import ItemSet, JobOutput, split_output
from probe.results.report import provenance, run_directory
from probe.results.rows import Row
from probe.results.table import Table

if TYPE_CHECKING:
    from probe.extract import CacheHandle, ExtractRequest

C = TypeVar("C")
J = TypeVar("J")

# Settings that say how a run went, not what it computed: left out of the directory hash.
# `leakage` is a check of the data, recorded either way (an --allow-overlap run included).
BASE_VOLATILE = ("seconds", "provenance", "workers", "cluster", "leakage")


def _load_experiments() -> None:
    """Importing a driver module registers its experiment (Experiment.__init_subclass__)."""
    import importlib

    for module in ("layers", "grid", "map", "domain_shift", "calibration",
                   "intermediate", "intermediate_finetune", "finetune", "structural"):  # fmt: skip
        importlib.import_module(f"probe.experiments.{module}")


EXPERIMENTS: Registry[type[Experiment[Any, Any]]] = Registry("experiment", load=_load_experiments)


@dataclass(frozen=True)
class RunOptions:
    """Where results go and how fast jobs run: never part of what a run computes (not in
    the results directory's hash, nor in the journal's fingerprint)."""

    results_dir: Path = Path("results")
    workers: int | None = 1  # None: one per core; 1: in this process
    cluster: str | None = None  # a Dask or Ray address (probe.experiments.pool)
    progress: bool = True
    allow_overlap: bool = False  # run even when training data overlaps evaluation data


@dataclass(frozen=True)
class Context:
    """What `run()` resolved before the jobs: the task, its source, the languages extracted
    (source first) and the cache handle (None for experiments that read raw data); after the
    jobs, `items` holds the item statistics they returned (for bootstrap intervals)."""

    task: Task
    source: str
    langs: tuple[str, ...]
    cache: CacheHandle | None
    n_layers: int
    items: ItemSet = field(default_factory=ItemSet)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(lang for lang in self.langs if lang != self.source)

    @property
    def model_key(self) -> str:
        if self.cache is None:
            raise ProbeError("this experiment reads no cache")
        return self.cache.key


@dataclass
class RunResult:
    """What a run wrote: its rows, directory, summary text, settings and timings."""

    rows: Table
    directory: Path
    summary: str
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    cache: CacheHandle | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # The jobs' item statistics: what a protocol over several runs (`probe paper`) computes
    # paired intervals between runs from.
    items: ItemSet = field(default_factory=ItemSet)


class Experiment(ABC, Generic[C, J]):
    """Subclass, declare, and call `run()`; see the module docstring for who owns what."""

    name: ClassVar[str]  # registry key, command name, results-directory prefix
    levels: ClassVar[tuple[str, ...]] = ("word", "pair")
    needs_cache: ClassVar[bool] = True  # False: reads raw data and loads the encoder itself
    volatile: ClassVar[tuple[str, ...]] = ()  # more settings left out of the directory hash
    other_levels_hint: ClassVar[str] = ""  # where a task of another level goes instead
    # True: its jobs probe edge tasks (`deprel-arc`: pairs of word vectors, Task.edges).
    takes_edges: ClassVar[bool] = False
    # True: the jobs share live state loaded in this process (an encoder) and run here one
    # after another, so --workers N and --cluster are refused.
    in_process: ClassVar[bool] = False

    def __init__(self, config: C, options: RunOptions | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            EXPERIMENTS.register(cls.name, cls)

    # --- declared by each experiment --------------------------------------------------------

    def task_name(self) -> str:
        """The registry name of the task this run trains for (default: `config.task`)."""
        return str(getattr(self.config, "task"))  # noqa: B009 (configs are generic here)

    def source_lang(self, task: Task) -> str:
        """The source language: the config's `source`, else the task's default."""
        return getattr(self.config, "source", None) or task.default_source

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle | None:
        """Make sure the features this run reads are cached (one ensure_cached call)."""
        return None

    def zero_shot_request(self, task: Task, source: str, seed: int) -> ExtractRequest:
        """The config's languages of `task`, all splits for `source` and the eval split for
        the rest, with its caps: the training split sampled as `train_dev` will keep it."""
        from probe.extract import ExtractRequest
        from probe.train.splits import train_caps

        cfg: Any = self.config
        return ExtractRequest(task.name, cfg.langs, None, source, cfg.max_sentences,
                              train_caps(task, cfg.max_train_words), seed, cfg.treebanks,
                              getattr(cfg, "max_eval_sentences", None))  # fmt: skip

    @abstractmethod
    def jobs(self, ctx: Context) -> list[tuple[str, J]]:
        """Unique job names and picklable jobs (paths, names, frozen configs only)."""

    @staticmethod
    @abstractmethod
    def job_function() -> Callable[[J], JobOutput]:
        """The module-level function that runs one job (workers import it by name): its rows,
        and for the scores an interval is computed of, their item statistics
        (probe.results.items), which reach `aggregate` as `ctx.items`."""

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """All rows of the run from the rows of each job (default: in job order)."""
        return [row for rows in parts.values() for row in rows]

    def settings(self, ctx: Context) -> dict[str, Any]:
        """This experiment's own settings; the base adds the common ones."""
        return {}

    def job_settings(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """Settings only the finished jobs can tell (timings, convergence): written to
        settings.json, never part of the directory's hash (default: none)."""
        return {}

    def extras(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """What the run returns besides its rows and settings (`RunResult.extras`: a
        fine-tuning run's per-step losses), from the finished jobs (default: none)."""
        return {}

    def split_use(self, ctx: Context) -> SplitUse:
        """The splits this run trains or early-stops on and those it scores, for the leakage
        guard (default: the source's train and dev splits, every language's evaluation
        split; splits with hidden labels are not scored and the guard skips them)."""
        return SplitUse.zero_shot(ctx.task, (ctx.source,), ctx.langs)

    def subsets(self, ctx: Context) -> dict[str, Any]:
        """The subsets the run used, by sentence id, for subsets.json: what extraction sampled
        and the source's training subset (`max_train_words`, the dev hold-out) when the config
        has those fields; experiments that train several languages extend it."""
        if ctx.cache is None:
            return {}
        out = extracted_subsets(ctx.cache)
        fraction = getattr(self.config, "dev_fraction", None)
        if fraction is not None and ctx.task.level in ("word", "pair", "pair-tokens"):
            cap = getattr(self.config, "max_train_words", None)
            out.update(training_subsets(ctx.task, ctx.cache, [(ctx.source, cap)], fraction,
                                        _data_seed(self.config)))  # fmt: skip
        return out

    def identity(self) -> Any:
        """What the journal's fingerprint is computed from, besides the cache (default: the
        config, which holds no run-location fields)."""
        return self.config

    def directory_name(self, ctx: Context) -> str:
        return f"{self.name}-{ctx.source}"

    def results_base(self, ctx: Context) -> Path:
        """`<results>/<task>/<model key>`: a task's views (`xnli@tokens`) under the task."""
        return self.options.results_dir / base_task_name(ctx.task.name) / ctx.model_key

    @abstractmethod
    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        """Write figures and extra files; return the summary text (saved as summary.txt)."""

    # --- owned by the base ------------------------------------------------------------------

    def leakage(self, ctx: Context) -> LeakageReport:
        """The leakage guard (probe.experiments.leakage) over `split_use`: texts from the
        cache, or for a run that reads none from where each task lives (files or hub)."""
        if ctx.cache is not None:
            read = cache_sentences(ctx.cache.root, ctx.cache.key)
        else:
            read = file_sentences(self.task_data_dir(), {ctx.task.name: self.data_choice()[1]})
        return check_leakage(self.split_use(ctx), read, self.options.allow_overlap)

    def task_data_dir(self) -> Path | None:
        """Where the run reads task data (the config's paths, or its own `data_dir`)."""
        paths = getattr(self.config, "paths", None)
        if paths is not None:
            return paths.data_dir  # type: ignore[no-any-return]
        return default_data_dir(getattr(self.config, "data_dir", None))

    def data_choice(self) -> tuple[str | None, tuple[str, ...]]:
        """The run's `--train-split` and `--treebank` picks (default: the config's fields)."""
        config = self.config
        return getattr(config, "train_split", None), tuple(getattr(config, "treebanks", ()))

    def resolve(self) -> tuple[Task, str]:
        # `--train-split` (the config's `train_split`) is checked against what may train.
        train_split, treebanks = self.data_choice()
        task = get_task(self.task_name()).training_on(train_split)
        if task.level not in self.levels:
            raise ProbeError(
                f"`probe {self.name}` takes {' or '.join(self.levels)}-level tasks; "
                f"{task.name!r} is {task.level}-level{self.other_levels_hint}"
            )
        if task.edges and not self.takes_edges:
            raise ProbeError(f"`probe {self.name}` does not take edge-probing tasks "
                             f"({task.name!r} probes pairs of word vectors): use `probe layers` "
                             "or `probe map`")  # fmt: skip
        if task.level != "parallel":  # heads train on it: an evaluation-only task is refused
            task.training_split()
        source = self.source_lang(task)
        check_language(task, source, self.task_data_dir(), treebanks)
        return task, source

    def run(self) -> RunResult:
        from probe.runtime.ranks import current_rank

        if current_rank().distributed:
            instead = "" if self.in_process else f", then run `probe {self.name} --workers N`"
            raise ProbeError(
                f"`probe {self.name}` runs once, not once per rank: extract with `torchrun ... "
                f"-m probe.cli extract`{instead}"
            )
        if self.in_process and (self.options.workers != 1 or self.options.cluster is not None):
            raise ProbeError(
                f"`probe {self.name}` runs its jobs one after another in this "
                "process (they share what it loaded): drop --workers and --cluster"
            )
        started = time.perf_counter()
        task, source = self.resolve()
        cache = self.extract(task, source, self.options.progress)
        extracted = time.perf_counter()
        ctx = self.context(task, source, cache)
        jobs = self.jobs(ctx)
        leakage = self.leakage(ctx)  # before any job or file: a leaking run writes nothing
        pool = PoolConfig(self.options.workers, self.options.cluster)
        settings = {**self.base_settings(ctx), **self.settings(ctx)}
        settings["workers"] = pool.local_workers(len(jobs)) if pool.cluster is None else None
        settings["cluster"] = pool.cluster
        settings["leakage"] = leakage.settings()
        directory = run_directory(self.results_base(ctx), self.directory_name(ctx), settings,
                                  volatile=(*BASE_VOLATILE, *self.volatile))  # fmt: skip
        cache_identity = cache.identity() if cache is not None else None
        journal = Journal(directory / "jobs", fingerprint(cache_identity, self.identity()))
        desc = f"{self.name} {task.name}"
        outputs = run_jobs(self.job_function(), jobs, pool, journal,
                           progress=self.options.progress, desc=desc)  # fmt: skip
        split = [split_output(output) for output in outputs]
        parts = dict(zip([name for name, _ in jobs], [rows for rows, _ in split], strict=True))
        ctx = dataclasses.replace(ctx, items=ItemSet(i for _, items in split for i in items))
        stamp = {"task": task.name, "model": ctx.model_key if cache is not None else ""}
        rows = Table(_stamped(row, stamp) for row in self.aggregate(ctx, parts))
        settings.update(self.job_settings(ctx, parts))
        seconds = {"extract": extracted - started, "jobs": time.perf_counter() - extracted}
        settings["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        rows.write(directory, settings)
        write_subsets(directory, self.subsets(ctx), _data_seed(self.config))
        summary = training_lines(settings) + self.render(ctx, rows, directory)
        found = leakage_lines(settings["leakage"])  # only when the guard found any overlap
        summary += f"\n\n{found}" if found else ""
        (directory / "summary.txt").write_text(summary + "\n")
        journal.clear()  # every output is written: a rerun recomputes with the current code
        extras = self.extras(ctx, parts)
        return RunResult(rows, directory, summary, settings, seconds, cache, extras, ctx.items)

    def context(self, task: Task, source: str, cache: CacheHandle | None) -> Context:
        """Languages and depth from the cache: the languages with shards, source first."""
        if cache is None:
            return Context(task, source, (source,), None, 0)
        langs = cache.languages(task.name, source)
        if source not in langs:
            raise ProbeError(f"source language {source!r} is not among the extracted "
                             f"languages {list(langs)}")  # fmt: skip
        return Context(task, source, tuple(langs), cache, cache.n_layers)

    def base_settings(self, ctx: Context) -> dict[str, Any]:
        """What every run records first: command, task, languages, cache, splits, provenance."""
        settings: dict[str, Any] = {
            "command": self.name,
            "task": ctx.task.name,
            "source": ctx.source,
            "languages": list(ctx.langs),
            "train_split": ctx.task.train_split,
            "dev_split": ctx.task.dev_split,
            "eval_split": ctx.task.eval_split,
            "split_note": ctx.task.split_note or None,
            "treebanks": treebank_settings(ctx.task, self.task_data_dir(), ctx.langs,
                                           self.data_choice()[1]) or None,
            "train_size": self.training_sizes(ctx),
            "train_unit": "words" if ctx.task.level == "word" else "pairs",
            "provenance": provenance(_seed(self.config)),
        }  # fmt: skip
        if ctx.cache is not None:
            settings.update(ctx.cache.settings())
        extraction = ctx.cache.cache_spec.compute_dtype if ctx.cache is not None else None
        settings["compute_dtype"] = compute_dtypes(self.config, extraction)
        return settings

    def training_sizes(self, ctx: Context) -> dict[str, int]:
        """{"<lang> <split>": words (pairs)} the heads train on, after every cap and hold-out
        (default: each `training_languages` split as `train_dev` keeps it)."""
        from probe.train.splits import opener, train_dev

        if ctx.cache is None or ctx.task.train_split is None:
            return {}
        cfg = self.config
        open_split = opener(ctx.cache.root, ctx.cache.key, ctx.task)
        sizes = {}
        for lang in self.training_languages(ctx):
            train, dev = train_dev(ctx.task, open_split, lang,
                                   getattr(cfg, "max_train_words", None),
                                   getattr(cfg, "dev_fraction", 0.1), _seed(cfg))  # fmt: skip
            sizes[f"{lang} {ctx.task.train_split}"] = len(train.labels)
            train.reader.close()
            dev.reader.close()
        return sizes

    def training_languages(self, ctx: Context) -> tuple[str, ...]:
        """The languages whose training split trains heads (default: the source)."""
        return (ctx.source,)


def check_seeds(seeds: tuple[int, ...]) -> None:
    """A run's `--seeds`: at least one, each >= 0, none twice (every config checks with this)."""
    if not seeds:
        raise ProbeError("--seeds needs at least one seed")
    if min(seeds) < 0:
        raise ProbeError(f"--seeds must be >= 0, got {','.join(map(str, seeds))}")
    if len(set(seeds)) != len(seeds):
        raise ProbeError(f"--seeds lists a seed twice: {','.join(map(str, seeds))}")


def training_lines(settings: Mapping[str, Any]) -> str:
    """The summary's first lines: what trained, and how much ("trained on en train: 204,585
    words"), and the task's declared split choice where it has one."""
    unit = settings.get("train_unit", "words")
    sizes = settings.get("train_size") or {}
    lines = [f"trained on {where}: {n:,} {unit}" for where, n in sizes.items()]
    if settings.get("split_note"):
        lines.append(f"splits: {settings['split_note']}")
    return "".join(line + "\n" for line in lines)


def _stamped(row: Row, stamp: Mapping[str, str]) -> Row:
    """The row with the run's task and model key where the job left them empty."""
    task = row.task or stamp.get("task", "")
    model = row.model or stamp.get("model", "")
    return dataclasses.replace(row, task=task, model=model)


def _seed(config: Any) -> int:
    train = getattr(config, "train", None)
    return int(getattr(train, "seed", getattr(config, "seed", 0)))


def _data_seed(config: Any) -> int:
    """The seed subsets and hold-outs are drawn with: a multi-seed run's first seed."""
    seeds = getattr(config, "seeds", None)
    return int(seeds[0]) if seeds else _seed(config)


def run_experiment(name: str, config: Any, options: RunOptions | None = None) -> RunResult:
    """`EXPERIMENTS.get(name)(config, options).run()`: what each CLI command calls."""
    return EXPERIMENTS.get(name)(config, options).run()

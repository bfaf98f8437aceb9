"""`probe intermediate`: does training on other tasks first help zero-shot transfer of a target?

Compares, on the target task's languages, a head trained on the target alone ("none") with
the same head whose body was first trained on intermediate tasks: each one alone, and
growing sets of them, sequentially ("pos>udpos") or mixed ("pos+udpos")
(`probe.experiments.intermediate_plan`). Every head is a shared body plus one classifier per
task (`probe.heads.multitask`); only the body carries over, so intermediate tasks may be
word- or pair-level with any labels and source language. Everything trains on cached
features (fast); `--finetune` trains the encoder too (`probe.experiments.intermediate_finetune`).

One job per training seed: the configurations of a seed share their common stages (A in A
and A>B is trained once), so a seed is the unit that runs in a pool worker. Scores are
kept per seed (seed=s) and averaged over seeds (seed None, with an sd row); gains over
"none" (per language, inside/outside the source's family, per family) are seed means with
their sd and a paired bootstrap interval over the target's sentences and the seeds
(`probe.experiments.intermediate_gains`). Every configuration's target stage trains with
the recipe of "none" (one `TrainConfig`, one body architecture): the summary says so, or
which configurations differ.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from probe.analysis.bootstrap import LEVEL, N_BOOT, PairedBootstrap
from probe.data.discovery import expand_languages
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.experiments import intermediate_seed
from probe.experiments.base import Context, Experiment, check_seeds
from probe.experiments.intermediate_calibration import stage_language_rows
from probe.experiments.intermediate_distance import distance_outputs, distance_settings
from probe.experiments.intermediate_domains import (
    DomainPlan,
    domain_plan,
    domain_requests,
    domain_split_use,
    domain_summary,
    restrict,
    seen_domain_rows,
)
from probe.experiments.intermediate_gains import (
    configuration_gains,
    recipe_differences,
    recipe_note,
)
from probe.experiments.intermediate_plan import (
    Configuration,
    ResolvedVia,
    extraction_budgets,
    parse_stage,
    plan_configurations,
    require_budget,
    resolve_stages,
    set_sizes,
)
from probe.experiments.intermediate_seed import TARGET_PARAMETERS, TRAINING, SeedJob
from probe.experiments.intermediate_set_sizes import set_size_deltas
from probe.experiments.intermediate_stages import short_stages, stage_settings
from probe.experiments.leakage import SplitUse, cache_sentences, file_sentences
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.registry import BODIES
from probe.results.gains import average_seeds
from probe.results.items import JobOutput
from probe.results.render.intermediate import gain_per_set_size, render_intermediate
from probe.results.report import provenance
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig
from probe.train.schedules import SCHEDULES
from probe.train.splits import train_caps

log = logging.getLogger(__name__)

# The heads' training on cached features. lr 5e-3: the mlp body on 15-20k MiniLM words
# reaches early stopping in 10-20 epochs; at 2e-3 it was still improving at epoch 30, and an
# unconverged "none" makes any warm start look like a gain.
INTERMEDIATE_TRAINING = TrainConfig(lr=5e-3)


@dataclass(frozen=True)
class IntermediateConfig:
    """What one `probe intermediate` run on cached features computes; `spec` names the
    target's cache (the intermediate tasks' splits are extracted under the same key, in the
    same call). Where results go and how many workers run the seeds is `RunOptions`."""

    spec: ExtractSpec
    task: str  # the target
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    max_eval_sentences: int | None = None  # a seeded sample of each evaluation split
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    via: tuple[str, ...] = ("all",)
    sets: str | None = None  # None: growing prefixes of via (2, 3, ..., all)
    schedules: tuple[str, ...] = SCHEDULES
    source: str | None = None  # the target's source language (default: the task's)
    body: str = "mlp"
    layer: int | None = None  # see heads.registry.BodyKind.layers
    width: int = 256
    reduction: int = 4
    train: TrainConfig = INTERMEDIATE_TRAINING
    seeds: tuple[int, ...] = (0,)
    dev_fraction: float = 0.1
    max_train_words: int | None = None  # per task's training split (pairs for pair tasks)
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank); () = the task's default rule
    train_split: str | None = None  # --train-split; None = the task's own
    max_via_sentences: int | None = None  # extraction cap on the intermediate tasks' splits
    distance: bool = False  # --distance: gain_vs_distance.csv/.png (intermediate_distance)
    eval_domains: bool = False  # --eval-domains: other-domain sets too (intermediate_domains)


# Fields that pick the cache (recorded by the base from the cache handle), not settings.
_CACHE_FIELDS = ("spec", "options", "paths", "task", "langs", "source")


class IntermediateExperiment(Experiment[IntermediateConfig, SeedJob]):
    """Every configuration for every seed on cached features: one job per seed."""

    name = "intermediate"
    levels = ("word", "pair")
    other_levels_hint = " (it has no labels to train on): use a word or pair task"
    volatile = ("distance",)  # an analysis of the same numbers: the same results directory
    recipe_line: str  # the summary's "one recipe per comparison" line, once the jobs ran
    short_lines: str = ""  # the summary's lines on stages short of their budget (job_settings)

    @functools.cached_property
    def resolved(self) -> ResolvedVia:
        """--via's stages (and the suite entries dropped for this target)."""
        cfg = self.config
        found = resolve_stages(cfg.via, get_task(cfg.task), cfg.paths.data_dir, cfg.source)
        require_budget(found.names, cfg.max_train_words)  # matched size needs a budget
        return found

    @functools.cached_property
    def via(self) -> tuple[str, ...]:
        return self.resolved.names

    @functools.cached_property
    def domains(self) -> DomainPlan:
        """--eval-domains: each language's other-domain sets (refused when none has any)."""
        cfg = self.config
        if not cfg.eval_domains:
            return ()
        task, data_dir = get_task(cfg.task), cfg.paths.data_dir
        langs = expand_languages(task, cfg.langs, data_dir, cfg.treebanks)
        return domain_plan(task, langs, data_dir, cfg.treebanks)

    @functools.cached_property
    def plan(self) -> tuple[Configuration, ...]:
        return tuple(plan_configurations(self.via, self.config.sets, self.config.schedules,
                                         self.resolved.dropped))  # fmt: skip

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        """The target (every language) and each intermediate stage's languages' train (and
        dev) splits, in one call: one key, one encoder load; one request per task and
        language, with the largest share of --max-train-words any stage takes there
        (`extraction_budgets`). Seeds and configurations are checked first."""
        cfg = self.config
        check_seeds(cfg.seeds)
        log.info("configurations: %s", ", ".join(c.name for c in self.plan))  # checks --sets
        seed = cfg.seeds[0]  # the seed the jobs draw hold-outs and subsets with
        requests = [self.zero_shot_request(task, source, seed)]
        cap = cfg.max_via_sentences or cfg.max_sentences
        stages = [parse_stage(name) for name in self.via]
        for (name, lang), budget in extraction_budgets(stages, cfg.max_train_words).items():
            via = get_task(name)
            splits = tuple(s for s in (via.train_split, via.dev_split) if s)
            requests.append(ExtractRequest(via.name, (lang,), splits, lang, cap,
                                           train_caps(via, budget), seed))  # fmt: skip
        requests += domain_requests(self.domains, cfg.max_sentences, seed, cfg.max_eval_sentences)
        return ensure_cached(cfg.spec, requests, cfg.options, cfg.paths, progress=progress)

    def split_use(self, ctx: Context) -> SplitUse:
        """The target's source train/dev and each intermediate stage's (in each of its
        languages), against the target's evaluation splits (the leakage guard)."""
        use = super().split_use(ctx)
        for stage in map(parse_stage, self.via):
            use += SplitUse.zero_shot(get_task(stage.task), stage.langs, ())
        return use + domain_split_use(restrict(self.domains, ctx.langs))

    def context(self, task: Task, source: str, cache: CacheHandle | None) -> Context:
        """Only languages with a labelled evaluation split are scored (and recorded)."""
        ctx = super().context(task, source, cache)
        assert cache is not None
        split = task.eval_split
        scored = tuple(lang for lang in ctx.langs if cache.labelled(task.name, lang, split))
        if not scored:
            raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} "
                             "split")  # fmt: skip
        return replace(ctx, langs=scored)

    def layers(self, ctx: Context) -> tuple[int, ...]:
        return BODIES.get(self.config.body).layers(ctx.n_layers, self.config.layer)

    def jobs(self, ctx: Context) -> list[tuple[str, SeedJob]]:
        cache = ctx.cache
        assert cache is not None  # an absolute root: a job may run elsewhere (a cluster)
        job = SeedJob(ctx.task.name, cache.root.resolve(), cache.key, ctx.source, ctx.langs,
                       self.via, self.plan, self.layers(ctx), 0, self.config,
                       restrict(self.domains, ctx.langs))  # fmt: skip
        return [(f"seed-{seed}", replace(job, seed=seed)) for seed in self.config.seeds]

    @staticmethod
    def job_function() -> Callable[[SeedJob], JobOutput]:
        return intermediate_seed.run_seed  # looked up at run time (tests patch it)

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per-seed rows, their means over seeds (seed None; sd rows with several seeds),
        then every configuration's gain over "none" with its sd and interval."""
        per_seed = [[r for r in part if r.head != TRAINING] for part in parts.values()]
        kept = [r for rows in per_seed for r in rows]
        boot = PairedBootstrap()
        gains = configuration_gains(ctx.task, kept, ctx.items, ctx.source, boot)
        gains += set_size_deltas(ctx.task, kept, ctx.items, ctx.source, boot,
                                 set_sizes(self.plan, self.via))  # fmt: skip
        gains += stage_language_rows(kept, self.plan, ctx.source, self.config.seeds[0])
        gains += self.seen_domains(ctx)
        gains += domain_summary(ctx.task, kept, ctx.items, restrict(self.domains, ctx.langs),
                                self.config)  # fmt: skip
        return kept + average_seeds(per_seed) + gains

    def seen_domains(self, ctx: Context) -> list[Row]:
        """--eval-domains: which other-domain sets each configuration's training data
        holds (`seen_domain_rows`; the stages' splits from the cache, the sets' corpora
        from the data)."""
        domains = restrict(self.domains, ctx.langs)
        if not domains or ctx.cache is None:
            return []
        data_dir = self.config.paths.data_dir
        return seen_domain_rows(self.plan, domains, super().split_use(ctx).trains,
                                cache_sentences(ctx.cache.root, ctx.cache.key),
                                file_sentences(data_dir, {}), data_dir)  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        return {
            **{f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _CACHE_FIELDS},
            "mode": "head", "target": ctx.task.name, "train": asdict(cfg.train),
            "via": list(self.via),
            "via_sources": {t: "+".join(parse_stage(t).langs) for t in self.via},
            "via_dropped": list(self.resolved.dropped),
            "configurations": [c.name for c in self.plan], "layers": list(self.layers(ctx)),
            "dev_split": ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}",
            "intervals": {"method": "paired bootstrap over evaluation sentences (pairs) and "
                          "seeds", "replicates": N_BOOT, "level": LEVEL},
            "provenance": provenance(cfg.seeds[0]),
            "distances": distance_settings(self.plan, ctx.langs),
            "eval_domains_plan": {lang: list(names)
                                  for lang, names in restrict(self.domains, ctx.langs)},
        }  # fmt: skip

    def job_settings(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """Stages whose dev loss still fell at the last epoch, and training seconds per
        configuration (a stage shared through the memo counts once, where it trained)."""
        training = Table(r for part in parts.values() for r in part if r.head == TRAINING)
        stages = training.filter(metric="unconverged")
        unconverged = list(dict.fromkeys(f"{r.config} ({r.layer}, seed {r.seed})" for r in stages))
        if unconverged:
            log.warning("still improving at the last epoch (raise --max-epochs or --lr): %s",
                        "; ".join(unconverged))  # fmt: skip
        seconds: dict[str, float] = {}
        for r in training.filter(metric="seconds"):
            seconds[r.config] = seconds.get(r.config, 0.0) + r.value
        differ = recipe_differences(self.recipes(training))
        self.recipe_line = recipe_note(differ, self.recipe_text())
        via_stages = stage_settings(self.via, training, self.config.max_train_words)
        self.short_lines = "".join(f"\n{line}" for line in short_stages(via_stages))
        return {"unconverged_stages": unconverged,
                "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
                "recipe_differences": differ,
                "stages": via_stages}  # fmt: skip

    def recipes(self, training: Table) -> dict[str, dict[str, object]]:
        """Each configuration's target-stage recipe: the training settings it was given and
        the trained parameters of its target head (what the jobs measured)."""
        train = {k: v for k, v in asdict(self.config.train).items() if k != "seed"}
        out: dict[str, dict[str, object]] = {}
        for r in training.filter(metric=TARGET_PARAMETERS):
            recipe = out.setdefault(r.config, {**train, "body": self.config.body})
            recipe["parameters"] = int(r.value)
        return out

    def recipe_text(self) -> str:
        t = self.config.train
        return (f"{self.config.body} body, lr {t.lr:g} {t.schedule}, up to {t.max_epochs} "
                f"epochs, patience {t.patience}, batch {t.batch_size}, {t.precision}; only the "
                "body's starting weights differ")  # fmt: skip

    def directory_name(self, ctx: Context) -> str:
        return f"intermediate-{self.config.body}-{ctx.source}"

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        table = render_intermediate(ctx.task, rows, ctx.source, directory, ctx.model_key)
        table += gain_per_set_size(ctx.task, rows, ctx.source, set_sizes(self.plan, self.via),
                                   directory)  # fmt: skip
        distance = distance_outputs(ctx.task, rows, self.plan, ctx.langs, ctx.source, directory,
                                    ctx.model_key, self.config.distance,
                                    seed=self.config.seeds[0])  # fmt: skip
        return f"{table}\n{self.recipe_line}{self.short_lines}{distance}"

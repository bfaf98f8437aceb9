"""`probe map`: structural signal (probing) next to cross-lingual signal (alignment), per layer.

Structural: the source-language score of a linear probe per layer and its selectivity over
a control task (the jobs of `probe layers`, control on and scalar mix off). Cross-lingual:
the zero-shot transfer ratio (target score / source score at the same layer), and per
language with Tatoeba pairs one job scoring parallel-sentence retrieval (centred by a
disjoint half of the pairs, every layer; and XTREME's protocol at its one layer), linear CKA
with English, and retrieval on held-out pairs before and after a learned linear map onto
English (probe.experiments.map_parallel). Linguistic distances from URIEL are set against the
transfer scores (probe.analysis.crosslingual.typology.typology_tests): confirmatory at one
layer fixed in advance (`--typology-layer`, default two thirds up: 8 of 12), with bootstrap
intervals over languages, Holm over the distance kinds and the syntactic distance partialled
on the genetic one; the sweep over every layer is exploratory (Holm over layers x kinds).

Seeds: the probes train once per `--seeds` seed (the layers jobs); every transfer score is
the seed mean. The parallel part (centring halves, alignment split, alignment net) and every
data subset use the first seed, so seeds vary only the probes' training.

Outputs, in `results/<task>/<model-key>/map-<source>-<hash>/`: results.csv/json (every
number, long format), map.csv (one row per layer), correlation.csv, distances.csv,
summary.txt, map.png and transfer_vs_distance.png (probe.results.render.map).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.crosslingual.typology import (
    DISTANCE_KINDS,
    PARTIAL,
    TypologyTests,
    default_layer,
    language_distance,
    typology_tests,
    typology_vector,
)
from probe.data.discovery import check_language, expand_languages, languages_for
from probe.data.sources.parallel import tatoeba_code
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, RunOptions, check_seeds
from probe.experiments.layers import LayersConfig, LayersExperiment
from probe.experiments.map_parallel import (
    TATOEBA_SPLIT,
    TATOEBA_TASK,
    XTREME_TASK,
    ParallelConfig,
    ParallelJob,
    pair_count,
    parallel_job_rows,
    xtreme_layer,
)
from probe.experiments.structural import (
    UUAS_CURVE,
    CurveJob,
    check_curves,
    curve_jobs,
    run_curve_job,
)
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.results.items import JobOutput
from probe.results.render.map import CorrelationRow, MapInputs, MapView, render_map
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig

log = logging.getLogger(__name__)

ENGLISH = ("en", "eng")


@dataclass(frozen=True)
class MapConfig:
    """What one `probe map` run computes; `spec` names the probing task's cache (Tatoeba's
    pairs are extracted under the same key, in the same call)."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # default: the task's default source language
    train: TrainConfig = field(default_factory=TrainConfig)
    max_train_words: int | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank); () = the task's default rule
    train_split: str | None = None  # --train-split; None = the task's own
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    extra_parallel: tuple[str, ...] = ()  # more Tatoeba languages (retrieval/CKA only), or all
    distance_kinds: tuple[str, ...] = DISTANCE_KINDS
    seeds: tuple[int, ...] = (0, 1, 2)  # the probes' training seeds; subsets use the first
    typology_layer: int | None = None  # None: typology.default_layer(depth), 8 of 12
    n_boot: int = 1000  # bootstrap replicates of the intervals over languages
    # More structural curves beside the task's probe (`--structural`): "uuas" (a distance
    # probe on the task's UD trees) and word tasks such as morph-Number, each trained on the
    # source per layer (first seed); the summary says where each peaks.
    structural: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_seeds(self.seeds)
        check_curves(self.structural)
        if self.n_boot < 1:
            raise ProbeError(f"n_boot must be at least 1, not {self.n_boot}")


@dataclass
class MapResult:
    """What `run_map` computed and where it wrote it; layers are 0 (embeddings) .. last."""

    rows: Table
    correlations: list[CorrelationRow]
    typology: TypologyTests | None
    directory: Path
    table: str
    most_neutral_layer: int | None
    most_structural_layer: int
    settings: dict[str, Any]


class MapExperiment(Experiment[MapConfig, Any]):
    """The layers jobs (`linear-<i>`, `control-<i>`) and one `parallel-<lang>` job per
    language with Tatoeba pairs; the rows add transfer ratios and URIEL distances."""

    name = "map"
    levels = ("word", "pair")
    takes_edges = True
    other_levels_hint = (": `probe map` needs a task with labels to probe (e.g. pos); the "
                         "Tatoeba pairs are read for every language of that task")  # fmt: skip

    def __init__(self, config: MapConfig, options: RunOptions | None = None) -> None:
        super().__init__(config, options)
        self.layers = LayersExperiment(LayersConfig(
            spec=config.spec, task=config.task, langs=config.langs,
            max_sentences=config.max_sentences, options=config.options, paths=config.paths,
            source=config.source, train=config.train, control=True, scalar_mix=False,
            max_train_words=config.max_train_words, treebanks=config.treebanks,
            train_split=config.train_split, seeds=config.seeds), self.options)  # fmt: skip
        self.codes: dict[str, str] = {}  # result label -> Tatoeba code, e.g. de -> deu
        self.no_parallel: list[str] = []
        self.pairs: dict[str, int] = {}
        self.distances: dict[tuple[str, str], float] = {}
        self.no_uriel: list[str] = []
        self.view: MapView | None = None
        self.xtreme_layer: int | None = None  # resolved in jobs(), from the model's depth
        self.typology_layer: int | None = None  # likewise
        self.typology: TypologyTests | None = None  # computed in aggregate()

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        """The task's languages and their Tatoeba pairs (pooled both ways) in one call: one
        cache key."""
        cfg = self.config
        expected = sorted(expand_languages(task, cfg.langs, cfg.paths.data_dir, cfg.treebanks),
                          key=lambda x: (x != source, x))  # fmt: skip
        self.codes, self.no_parallel = _parallel_codes(expected, cfg)
        requests = [self.zero_shot_request(task, source, cfg.seeds[0])]
        if UUAS_CURVE in cfg.structural and task.treebanks is None:
            raise ProbeError(f"--structural uuas reads UD trees; task {task.name!r} has none")
        requests += [replace(requests[0], task=curve) for curve in cfg.structural
                     if curve != UUAS_CURVE]  # fmt: skip
        if self.codes:
            codes = tuple(dict.fromkeys(self.codes.values()))
            requests += [ExtractRequest(name, codes, (TATOEBA_SPLIT,),
                                        max_sentences=cfg.max_sentences)
                         for name in (TATOEBA_TASK, XTREME_TASK)]  # fmt: skip
        return ensure_cached(cfg.spec, requests, cfg.options, cfg.paths, progress=progress)

    def jobs(self, ctx: Context) -> list[tuple[str, Any]]:
        cache = ctx.cache
        assert cache is not None
        root = cache.root.resolve()  # a job may run in another working directory (a cluster)
        self.pairs = {label: pair_count(root, cache.key, label, code, self.config.parallel)
                      for label, code in self.codes.items()}  # fmt: skip
        self.distances, self.no_uriel = _distances(ctx.source, ctx.targets,
                                                   self.config.distance_kinds)  # fmt: skip
        chosen = self.config.parallel.xtreme_layer
        self.xtreme_layer = xtreme_layer(ctx.n_layers - 1) if chosen is None else chosen
        if not 0 <= self.xtreme_layer < ctx.n_layers:
            raise ProbeError(f"--xtreme-layer {chosen} is not a layer of this model (0.."
                             f"{ctx.n_layers - 1}, 0 = embeddings)")  # fmt: skip
        chosen = self.config.typology_layer
        self.typology_layer = default_layer(ctx.n_layers - 1) if chosen is None else chosen
        if not 0 <= self.typology_layer < ctx.n_layers:
            raise ProbeError(f"--typology-layer {chosen} is not a layer of this model (0.."
                             f"{ctx.n_layers - 1}, 0 = embeddings)")  # fmt: skip
        parallel = [(f"parallel-{label}", ParallelJob(root, cache.key, label, code,
                                                      self.config.parallel, self.xtreme_layer))
                    for label, code in self.codes.items()]  # fmt: skip
        curves = curve_jobs(self.config.structural, ctx, self.layers.config, self.config.seeds[0])
        return [*self.layers.jobs(ctx), *parallel, *curves]

    @staticmethod
    def job_function() -> Callable[[Any], JobOutput]:
        return run_map_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Structural rows (per seed, and their means) and transfer ratios of the seed-mean
        scores, the parallel rows, the distances, then the typology tests."""
        probed = Table(self.layers.aggregate(ctx, parts))
        metric = ctx.task.metric
        wanted = (metric, "selectivity", f"{metric}_sd", "selectivity_sd")
        structural = probed.filter(head="linear", metric=lambda m: m in wanted)
        means = seed_means(list(structural))
        score = {(r.layers, r.lang): r.value for r in means
                 if r.metric == metric and not (r.group or r.subset or r.eval_task)}  # fmt: skip
        ratios = []
        for layers in Table(means).values("layers"):
            src = score.get((layers, ctx.source), math.nan)
            for lang in ctx.targets:
                tgt = score.get((layers, lang), math.nan)
                ratios.append(Row("transfer", str(layers[0]), lang, "ratio",
                                  tgt / src if src > 0 else math.nan, layers=layers))  # fmt: skip
        parallel = [r for label in self.codes for r in parts[f"parallel-{label}"]]
        distances = [Row("distance", "-", t, kind, d) for (t, kind), d in self.distances.items()]
        per_layer: dict[int, dict[str, float]] = {}
        for (layers, lang), value in score.items():
            if lang in ctx.targets:
                per_layer.setdefault(layers[0], {})[lang] = value
        self.typology = None
        if self.distances and self.typology_layer in per_layer:
            assert self.typology_layer is not None
            self.typology = typology_tests(per_layer, self.distances, self.config.distance_kinds,
                                           self.typology_layer, n_boot=self.config.n_boot,
                                           seed=self.config.seeds[0])  # fmt: skip
        kept = [r for r in structural if r.seed is not None or r.stat]  # per-seed rows, sds
        curves = [r for name in parts if name.startswith("curve-") for r in parts[name]]
        return [*kept, *means, *ratios, *parallel, *distances, *typology_rows(self.typology),
                *curves]  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        return {
            **self.layers.settings(ctx),
            "parallel": asdict(cfg.parallel),
            "tatoeba_codes": self.codes,
            "tatoeba_pairs": self.pairs,
            "no_parallel_data": self.no_parallel,
            "no_uriel_vector": self.no_uriel,
            "distance_kinds": list(cfg.distance_kinds),
            "distance_definition": "cosine distance of lang2vec URIEL vectors (see typology.py)",
            "seeds": list(cfg.seeds),
            "data_seed": cfg.seeds[0],
            "structural_curves": list(cfg.structural),
            "typology_layer": self.typology_layer,
            "typology": {
                "layer_rule": "given by --typology-layer, else 8 of 12 scaled to the depth "
                "(fixed in advance, never chosen by the scores)",
                "test": "Spearman rho of target score vs distance over the targets with every "
                "distance; p exact for n <= 8, else t approximation",
                "interval": f"percentile bootstrap over languages, {cfg.n_boot} replicates, 95%",
                "correction": "Holm over the distance kinds at the typology layer "
                "(confirmatory); Holm over layers x kinds for the sweep (exploratory)",
                "partial": f"{PARTIAL[0]} | {PARTIAL[1]}: Pearson of ranks residualised on "
                "the control's ranks, t test with n - 3 df",
                "scores": "seed means of the probes' target scores",
            },
            "xtreme_layer": self.xtreme_layer,
            "retrieval": {
                "retrieval-centred": "every layer; sentence = mean of its subwords (special "
                "tokens excluded); pairs split into two seeded halves (centre_seed), each half "
                "centred per language by the other half's means, cosine NN within the half; "
                "xx2en, en2xx and their mean over all pairs",
                "retrieval-xtreme": "XTREME's protocol at xtreme_layer: sentence = mean of "
                "every token incl. [CLS]/[SEP], no centring, unit vectors, English queries "
                "search the other language's sentences (en2xx), all pairs",
            },
        }

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        inputs = MapInputs(ctx.task.name, ctx.task.metric, ctx.model_key, ctx.source,
                           ctx.targets, tuple(self.codes), self.distances,
                           self.config.distance_kinds, tuple(self.no_parallel),
                           tuple(self.no_uriel), ctx.n_layers, self.xtreme_layer,
                           self.typology, len(self.config.seeds))  # fmt: skip
        summary, self.view = render_map(rows, inputs, directory)
        return summary


def seed_means(rows: Sequence[Row]) -> list[Row]:
    """The seed-mean rows (seed None, stat "") of score rows: kept where the probes already
    wrote them, else averaged here over the per-seed rows of the same coordinates (a run
    without seeds has only seed-None rows, which are their own means)."""
    groups: dict[Row, list[Row]] = {}
    for r in rows:
        if not r.stat:
            groups.setdefault(replace(r, value=0.0, seed=None), []).append(r)
    out = []
    for key, members in groups.items():
        own = [r for r in members if r.seed is None]
        values = [r.value for r in own] if own else [r.value for r in members]
        out.append(own[0] if len(own) == 1 else replace(key, value=float(np.mean(values))))
    return out


def typology_rows(tests: TypologyTests | None) -> list[Row]:
    """The typology analysis as result rows (head "typology", lang "targets", config the
    distance kind, subset "fixed" at the typology layer, "sweep" elsewhere): every layer's
    Spearman rho, raw p, Pearson r, sweep-Holm p and n; at the fixed layer also the interval
    (ci_low/ci_high on the rho row) and the Holm p over kinds; and the partial correlation
    (config "syntactic|genetic", metrics partial_spearman_rho and partial_p)."""
    if tests is None:
        return []

    def row(layer: int, config: str, metric: str, value: float, subset: str,
            ci: tuple[float, float] | None = None) -> Row:  # fmt: skip
        low, high = ci if ci is not None else (None, None)
        return Row("typology", str(layer), "targets", metric, value, layers=(layer,),
                   config=config, subset=subset, group="targets", ci_low=low,
                   ci_high=high)  # fmt: skip

    out = []
    for t in tests.tests:
        c, fixed = t.correlation, t.layer == tests.layer
        subset = "fixed" if fixed else "sweep"
        out += [row(t.layer, t.distance, "spearman_rho", c.spearman_rho, subset,
                    (t.ci_low, t.ci_high) if fixed else None),
                row(t.layer, t.distance, "spearman_p", c.spearman_p, subset),
                row(t.layer, t.distance, "pearson_r", c.pearson_r, subset),
                row(t.layer, t.distance, "p_holm_sweep", t.p_holm_sweep, subset),
                row(t.layer, t.distance, "n", float(c.n), subset)]  # fmt: skip
        if fixed:
            out.append(row(t.layer, t.distance, "p_holm", t.p_holm, subset))
    if tests.partial is not None:
        p = tests.partial
        name = f"{p.distance}|{p.control}"
        out += [row(p.layer, name, "partial_spearman_rho", p.correlation.rho, "fixed",
                    (p.ci_low, p.ci_high)),
                row(p.layer, name, "partial_p", p.correlation.p, "fixed"),
                row(p.layer, name, "n", float(p.correlation.n), "fixed")]  # fmt: skip
    return out


def run_map_job(job: Any) -> JobOutput:
    """One job of a map run: a language's parallel signal, or one of the layers probes (its
    rows and item statistics)."""
    if isinstance(job, ParallelJob):
        return parallel_job_rows(job)
    if isinstance(job, CurveJob):
        return run_curve_job(job)
    return LayersExperiment.job_function()(job)


def run_map(config: MapConfig, options: RunOptions | None = None) -> MapResult:
    """Probe every layer, score the parallel data, relate both to distance; write it all."""
    experiment = MapExperiment(config, options)
    result = experiment.run()
    view = experiment.view
    assert view is not None
    return MapResult(result.rows, view.correlations, experiment.typology, result.directory,
                     result.summary,
                     view.most_neutral_layer, view.most_structural_layer,
                     result.settings)  # fmt: skip


# --- languages with parallel data and with URIEL vectors -------------------------------------


def _parallel_codes(langs: list[str], config: MapConfig) -> tuple[dict[str, str], list[str]]:
    """{result label: Tatoeba code} for every non-English language that has a Tatoeba set
    under the data directory, and the languages that have none (reported, not hidden)."""
    tatoeba = get_task("tatoeba")
    data_dir = config.paths.data_dir
    wanted = [lang for lang in langs if lang not in ENGLISH]
    extra = list(config.extra_parallel)
    if extra == ["all"]:  # the local Tatoeba sets, or with no data directory the hub's
        extra = list(languages_for(tatoeba, data_dir))
    codes: dict[str, str] = {}
    missing: list[str] = []
    for lang in [*wanted, *extra]:
        try:
            code = tatoeba_code(lang)
            check_language(tatoeba, code, data_dir)  # its test files, or the hub's list
        except ProbeError as err:
            if lang in extra:
                raise
            log.warning("no Tatoeba pairs for %s: no retrieval or CKA for it (%s)", lang, err)
            missing.append(lang)
            continue
        if code not in codes.values():
            codes[lang] = code
    return codes, missing


def _distances(
    source: str, targets: tuple[str, ...], kinds: tuple[str, ...]
) -> tuple[dict[tuple[str, str], float], list[str]]:
    """{(target, kind): URIEL distance from the source}, and the languages URIEL lacks."""
    try:
        for kind in kinds:
            typology_vector(source, kind)
    except ProbeError as err:
        log.warning("no URIEL vector for the source %s: no distances or correlations (%s)",
                    source, err)  # fmt: skip
        return {}, [source]
    distances: dict[tuple[str, str], float] = {}
    missing: list[str] = []
    for lang in targets:
        try:
            row = {(lang, kind): language_distance(source, lang, kind) for kind in kinds}
        except ProbeError as err:
            log.warning("no URIEL distance for %s: left out of the correlations (%s)", lang, err)
            missing.append(lang)
            continue
        distances.update(row)
    return distances, missing

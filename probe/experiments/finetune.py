"""`probe finetune`: train the encoder and a head end to end on the source, zero-shot everywhere.

Where `probe grid` trains a head on frozen, cached features, this fine-tunes the whole
encoder (XTREME's setting) with the same heads on top: a linear classifier on the last
layer (`fuse_layer=None`) or the DLFA head fusing the last layer with layer k, per word on
word tasks, on the pair's fused [CLS] row on pair tasks (XNLI, PAWS-X: the job lives in
`probe.experiments.finetune_pairs`). It reads the raw data (no cache) and trains through
`probe.train.finetune`: the epoch with the best source-dev score is kept and every
language's evaluation split is scored with
`probe.analysis.metrics.score`. One job per training seed (`seeds`, default one: each seed
fine-tunes the whole encoder again), in this process (it loads the encoder); the seeds vary
the head's initialisation, the batch order and dropout, while the training subset, the dev
hold-out and evaluation samples are drawn with the first seed. Scores are kept per seed and
averaged over seeds (with their sd), each with a bootstrap interval over the evaluation
sentences and the seeds (`probe.analysis.bootstrap`). docs/finetune.md has the defaults
and why.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe._version import __version__
from probe.analysis.bootstrap import LEVEL, N_BOOT, PairedBootstrap
from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.cache import default_cache_root
from probe.data.discovery import expand_languages
from probe.data.reading import read_task_split
from probe.data.subsets import sample_sentences
from probe.data.tasks import Task, default_data_dir, get_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, check_seeds
from probe.experiments.finetune_pairs import PAIR_FACTS, pair_system, run_pair_job
from probe.heads.registry import HEADS
from probe.models import ModelRef, load_encoder, resolve_model
from probe.results.gains import average_seeds
from probe.results.items import ItemScores, ItemSet, JobOutput, scored_items
from probe.results.render.finetune import budget_line, finetune_table, layers_name
from probe.results.render.grid import pair_name
from probe.results.rows import Row
from probe.results.table import Table
from probe.runtime.device import resolve_device
from probe.train.finetune import (
    FinetuneModel,
    WordTokenizer,
    source_sentences,
    train_model,
    word_probabilities,
    word_records,
)
from probe.train.finetune_pairs import labelled_pairs

log = logging.getLogger(__name__)

HEAD = "finetune"
# XTREME's fine-tuning epochs: 10 for the word tasks (POS, NER), 5 for the pair tasks
# (XNLI, PAWS-X).
DEFAULT_EPOCHS = 10
PAIR_EPOCHS = 5

# What the job reports besides its results, as rows that `aggregate` leaves out of
# results.csv: facts of the run (settings.json) and the loss of every step (RunResult.extras).
_FACTS = ("train_sentences", "train_words", "dev_sentences", "steps", "truncated_train_words",
          "train_seconds", "eval_seconds", *PAIR_FACTS)  # fmt: skip
_STEP_LOSS = "step_loss"
# FinetuneConfig fields that are not settings of their own (the base records the task, the
# languages, the source and the treebanks read; the directories change no number).
_NOT_SETTINGS = ("task", "langs", "source", "data_dir", "cache_root", "treebanks")


@dataclass(frozen=True)
class FinetuneConfig:
    """One `probe finetune` run: one system (the baseline, or DLFA with one k). Defaults
    follow XTREME (lr 2e-5, max length 128, 10 epochs for word tasks and 5 for pair tasks).

    `head_lr` is the head's own learning rate: the head (classifier, and DLFA's gate) starts
    from random weights, and at the encoder's 2e-5 it would still be close to its random
    start after a short run, so the encoder would be trained against a near-random head.
    1e-3 lets it catch up within the first epoch while the pretrained encoder moves slowly.
    """

    model: str
    task: str
    langs: tuple[str, ...] = ("all",)
    source: str | None = None
    data_dir: Path | None = None
    cache_root: Path | None = None
    fuse_layer: int | None = None  # None: last layer + linear; k: DLFA on (last, k)
    epochs: int | None = None  # None: XTREME's default (10 for word tasks, 5 for pair tasks)
    lr: float = 2e-5
    head_lr: float = 1e-3
    batch_size: int = 32  # sentences
    max_length: int = 128  # subword tokens, special tokens included
    warmup: float = 0.1  # share of the steps spent warming up linearly
    weight_decay: float = 0.01
    # Training seeds: one fine-tuning run (job) per seed. One by default: every seed trains
    # the whole encoder again (minutes to hours), so more are asked for (--seeds 0,1,2).
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    dev_fraction: float = 0.1  # held out of train when the task has no dev split
    reduction: int = 4  # DLFA bottleneck ratio
    max_steps: int | None = None
    max_train_sentences: int | None = None  # pairs on pair tasks
    # A seeded sample of N evaluation sentences (pairs) per language; None scores them all.
    max_eval_sentences: int | None = None
    # Pair tasks: the fused sequence's row the classifier reads (`probe.heads.registry.
    # PAIR_POOLS`, as grid's --pair-pool): "first" ([CLS], XTREME's) or "mean" (the masked
    # mean over the pair's tokens); word tasks classify every word.
    pair_pool: str = "first"
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank); () = the task's default rule
    train_split: str | None = None  # --train-split; None = the task's own
    # Seed of the encoder's random-weights twin (--random-weights: same config and tokenizer,
    # every weight re-drawn, probe.models.random_init); None fine-tunes the trained weights.
    random_weights: int | None = None

    @property
    def seed(self) -> int:
        """The seed the training subset, the dev hold-out and evaluation samples are drawn
        with: the first training seed, so that the seeds vary only training."""
        return self.seeds[0]


@dataclass(frozen=True)
class _FinetuneJob:
    """One training seed of the run: what to fine-tune, on which data, where to score it."""

    config: FinetuneConfig
    task: str
    source: str
    langs: tuple[str, ...]
    data_dir: Path | None  # None: the hub (probe.data.reading)
    model: ModelRef
    max_length: int  # the config's, capped at the model's position embeddings
    epochs: int
    progress: bool
    seed: int = 0  # the training seed: head initialisation, batch order, dropout


class FinetuneExperiment(Experiment[FinetuneConfig, _FinetuneJob]):
    """Encoder + head trained on the source and scored everywhere: one job per seed, in this
    process."""

    name = "finetune"
    levels = ("word", "pair")
    other_levels_hint = " (parallel data has no labels to fine-tune on)"
    needs_cache = False
    in_process = True  # the job loads the encoder
    volatile = ("device",)
    facts: dict[str, Any]  # the job's _FACTS, once it has run
    unscored: tuple[str, ...] = ()  # pair tasks: languages whose evaluation labels are hidden

    @functools.cached_property
    def model(self) -> ModelRef:
        cfg = self.config
        return resolve_model(cfg.model, default_cache_root(cfg.cache_root), cfg.random_weights)

    @functools.cached_property
    def data_dir(self) -> Path | None:
        """The run's data directory; None reads the hub (a task file's own root wins)."""
        return default_data_dir(self.config.data_dir)

    @functools.cached_property
    def _encoder_config(self) -> Any:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.model.path)

    def epochs(self, task: Task) -> int:
        """The config's epochs, or XTREME's for the task's level."""
        if self.config.epochs is not None:
            return self.config.epochs
        return PAIR_EPOCHS if task.level == "pair" else DEFAULT_EPOCHS

    @property
    def max_length(self) -> int:
        limit = getattr(self._encoder_config, "max_position_embeddings", None)
        return min(self.config.max_length, limit) if limit else self.config.max_length

    def context(self, task: Task, source: str, cache: Any) -> Context:
        """The languages with data (source first) and the encoder's depth (from its config)."""
        cfg = self.config
        langs = expand_languages(task, cfg.langs, self.data_dir, cfg.treebanks)
        if self.epochs(task) < 1 or cfg.batch_size < 1:
            raise ProbeError("epochs and batch_size must be >= 1")
        for name in ("max_steps", "max_train_sentences", "max_eval_sentences"):
            if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
                raise ProbeError(f"{name} must be >= 1 (or None for no cap)")
        self.unscored = self._unlabelled(task, langs) if task.level == "pair" else ()
        if self.unscored and set(self.unscored) == set(langs):
            raise ProbeError(f"no language of {task.name!r} among {', '.join(langs)} has a "
                             f"labelled {task.eval_split} split to score")  # fmt: skip
        check_seeds(cfg.seeds)
        n_layers = int(self._encoder_config.num_hidden_layers) + 1
        k = cfg.fuse_layer
        if k is not None and not 0 <= k <= n_layers - 1:
            raise ProbeError(f"--fuse-layer {k} is outside 0..{n_layers - 1} (0 = embeddings)")
        others = tuple(lang for lang in langs if lang != source)
        return Context(task, source, (source, *others), None, n_layers)

    def _unlabelled(self, task: Task, langs: Sequence[str]) -> tuple[str, ...]:
        """The languages whose evaluation pairs lack labels (XTREME's PAWS-X test files;
        only de and zh have labelled dumps): the job skips them, known before any training."""

        def hidden(lang: str) -> bool:
            records = read_task_split(task, self.data_dir, lang, task.eval_split).records
            return len(labelled_pairs(records)) < len(records)

        return tuple(lang for lang in langs if hidden(lang))

    def jobs(self, ctx: Context) -> list[tuple[str, _FinetuneJob]]:
        cfg, progress = self.config, self.options.progress
        job = _FinetuneJob(cfg, ctx.task.name, ctx.source, ctx.langs, self.data_dir, self.model,
                           self.max_length, self.epochs(ctx.task), progress)  # fmt: skip
        return [(f"finetune-seed-{s}", replace(job, seed=s)) for s in cfg.seeds]

    @staticmethod
    def job_function() -> Callable[[_FinetuneJob], JobOutput]:
        return run_finetune_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per seed: the scores and their mean over targets; then the means over seeds (seed
        None, sd rows with several seeds), each score with its interval over the evaluation
        sentences and the seeds."""
        per_seed = []
        for part in parts.values():
            rows = [r for r in part if r.metric not in (_STEP_LOSS, *_FACTS)]
            rows += target_means(ctx.task, rows, ctx.source)
            per_seed.append(rows)
        kept = [r for rows in per_seed for r in rows]
        means = score_intervals(average_seeds(per_seed), kept, ctx.items, ctx.source)
        return [replace(r, model=self.model.slug) for r in kept + means]

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg, task = self.config, ctx.task
        own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _NOT_SETTINGS}
        # Recorded for a twin only, so a trained run's settings (and directory) are unchanged.
        seed = own.pop("random_weights")
        if seed is not None:
            own["random_weights"] = {"seed": seed}
        last = ctx.n_layers - 1
        own.update(
            model_identity=self.model.identity, epochs=self.epochs(task),
            max_length=self.max_length,
            layer=layers_name((last,) if cfg.fuse_layer is None else (cfg.fuse_layer, last)),
            dev_split=task.dev_split or f"{cfg.dev_fraction:.0%} of {task.train_split}",
            selection=f"best source-dev {task.metric} per epoch",
            device=str(resolve_device(cfg.device)),
        )  # fmt: skip
        if task.level != "pair":
            own.pop("pair_pool")  # words are classified one by one
            return own
        head, layers = pair_system(cfg.fuse_layer, last)
        own.update(
            head=head, layers=list(layers), layer=pair_name(layers),
            dev_split=task.dev_split
            or f"{cfg.dev_fraction:.0%} of {task.train_split}, by premise group",
            pair_input="the tokenizer's pair template, tokenizer(a, b, truncation=True, "
            "max_length=max_length)",
            not_scored={lang: f"{task.eval_split} labels hidden" for lang in self.unscored},
        )  # fmt: skip
        return own

    def job_settings(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """The first seed's facts (every seed trains on the same data, so counts agree), with
        the seconds summed over seeds; steps per seed when they differ."""
        first, *_ = parts.values()
        reported = {r.metric: r.value for r in first if r.metric in _FACTS}
        for part in list(parts.values())[1:]:
            for r in part:
                if r.metric.endswith("seconds"):
                    reported[r.metric] += r.value
        self.facts = {k: round(v, 3) if k.endswith("seconds") else int(v)
                      for k, v in reported.items()}  # fmt: skip
        where = f"{ctx.source} {ctx.task.train_split}"
        size = self.facts["train_pairs" if ctx.task.level == "pair" else "train_words"]
        out = {**self.facts, "train_size": {where: size},
               "intervals": {"method": "bootstrap over evaluation sentences and seeds",
                             "replicates": N_BOOT, "level": LEVEL}}  # fmt: skip
        steps = {int(r.seed or 0): int(r.value) for part in parts.values() for r in part
                 if r.metric == "steps"}  # fmt: skip
        if len(set(steps.values())) > 1:
            out["steps_per_seed"] = steps
        return out

    def extras(self, ctx: Context, parts: Mapping[str, list[Row]]) -> dict[str, Any]:
        """ "losses": every step's loss of the first seed; "seed_losses": of each seed."""
        losses = {name: [r.value for r in part if r.metric == _STEP_LOSS]
                  for name, part in parts.items()}  # fmt: skip
        by_seed = {seed: losses[f"finetune-seed-{seed}"] for seed in self.config.seeds}
        return {"losses": by_seed[self.config.seeds[0]], "seed_losses": by_seed}

    def identity(self) -> Any:
        return {"config": self.config, "model": self.model.identity, "version": __version__}

    def results_base(self, ctx: Context) -> Path:
        return self.options.results_dir / ctx.task.name / self.model.slug

    def directory_name(self, ctx: Context) -> str:
        k = self.config.fuse_layer
        return f"finetune-{'last' if k is None else k}-{ctx.source}"

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        cfg, task = self.config, ctx.task
        budget = budget_line(cfg.max_steps, cfg.max_train_sentences, cfg.max_eval_sentences,
                             "pairs" if task.level == "pair" else "sentences")  # fmt: skip
        if task.level != "pair":
            return finetune_table(task, rows, ctx.source, ctx.langs, self.facts["steps"],
                                  budget=budget)  # fmt: skip
        head, layers = pair_system(cfg.fuse_layer, ctx.n_layers - 1)
        pooled = "[CLS] row" if cfg.pair_pool == "first" else "mean over the pair"
        hidden = ", ".join(self.unscored)
        notes = [f"{hidden}: {task.eval_split} labels hidden, not scored"] if hidden else []
        scored = [lang for lang in ctx.langs if lang not in self.unscored]
        return finetune_table(task, rows, ctx.source, scored, self.facts["steps"],
                              system=f"{head} {pair_name(layers)}, {pooled}", budget=budget,
                              notes_given=notes, dev=True)  # fmt: skip


def run_finetune_job(job: _FinetuneJob) -> JobOutput:
    """Fine-tune encoder + head on the source with the job's seed, select on source dev,
    score every language (rows with seed=job.seed, and the scores' item statistics)."""
    cfg, source = job.config, job.source
    task = get_task(job.task).training_on(cfg.train_split)
    if task.level == "pair":
        return run_pair_job(job, _STEP_LOSS)
    device = resolve_device(cfg.device)
    encoder, tokenizer = load_encoder(job.model, str(device))
    last, k = int(encoder.config.num_hidden_layers), cfg.fuse_layer
    layers = (last,) if k is None else (k, last)
    layer = layers_name(layers)
    torch.manual_seed(job.seed)  # the head's initialisation and dropout
    n_classes = len(task.labels)
    head = HEADS.get("linear" if k is None else "dlfa").build(
        "word", int(encoder.config.hidden_size), n_classes, reduction=cfg.reduction
    )
    model = FinetuneModel(encoder, head.to(device), k)
    tok = WordTokenizer(tokenizer, job.max_length, task.labels)
    train_sents, dev_sents = source_sentences(task, job.data_dir, source, cfg)
    train, dev = tok.encode(train_sents), tok.encode(dev_sents)
    cut = sum(e.truncated for e in train)
    if cut:
        log.info("%d of %d training words lie past max_length %d; they are not trained on",
                 cut, sum(len(e.gold) for e in train), job.max_length)  # fmt: skip
    counts = np.bincount(np.concatenate([e.gold for e in train]), minlength=n_classes)
    prior = counts / counts.sum()  # the prediction for evaluation words past max_length

    trained = train_model(model, tok, train, dev, task, cfg, device, job.epochs, job.progress,
                          f"finetune {task.name} {layer} seed {job.seed}",
                          seed=job.seed)  # fmt: skip
    row = functools.partial(Row, HEAD, layer, source, layers=layers, seed=job.seed)
    rows: list[Row | ItemScores] = [row("train_loss", trained.epoch_loss),
                                    row("best_epoch", float(trained.best_epoch))]  # fmt: skip
    if trained.best is not None:
        rows += [row(f"dev_{task.metric}", trained.best[0], subset="dev"),
                 row("dev_loss", -trained.best[1], subset="dev")]  # fmt: skip
    t_eval = time.perf_counter()
    scored = score_languages(model, tok, task, job.data_dir, job.langs, prior, cfg, device, HEAD,
                             layer, cfg.max_eval_sentences)  # fmt: skip
    rows += restamp(scored, layers=layers, seed=job.seed)
    facts = {"train_sentences": len(train), "dev_sentences": len(dev), "steps": trained.steps,
             "train_words": sum(len(e.gold) for e in train),
             "truncated_train_words": cut, "train_seconds": trained.seconds,
             "eval_seconds": time.perf_counter() - t_eval}  # fmt: skip
    rows += [row(name, float(value)) for name, value in facts.items()]
    return rows + [row(_STEP_LOSS, loss) for loss in trained.losses]


def score_languages(
    model: FinetuneModel, tok: WordTokenizer, task: Task, data_dir: Path | None,
    langs: Sequence[str], prior: np.ndarray, config: FinetuneConfig, device: torch.device,
    head: str, layer: str, max_sentences: int | None = None,
) -> list[Row | ItemScores]:  # fmt: skip
    """The task's metrics on every language's evaluation split (a seeded, genre-stratified
    sample of `max_sentences` sentences when given, `probe.data.subsets`), plus how many words
    lay past max_length (predicted as `prior`); beside each score a bootstrap can resample,
    its per-sentence statistics (`probe.results.items`)."""
    rows: list[Row | ItemScores] = []
    for lang in langs:
        split = read_task_split(task, data_dir, lang, task.eval_split, config.treebanks)
        sents = word_records(split.records)
        if max_sentences:
            keep = sample_sentences([s.sent_id for s in sents], max_sentences, config.seed)
            sents = [sents[i] for i in keep]
        encoded = tok.encode(sents)
        probs = word_probabilities(model, encoded, prior, tok.pad_id, device, config)
        gold = np.concatenate([e.gold for e in encoded])
        offsets = np.concatenate([[0], np.cumsum([len(e.gold) for e in encoded])])
        scores = score(task.metric, probs, gold, offsets=offsets, label_names=task.labels,
                       extra=task.extra_metrics)  # fmt: skip
        pred = probs.argmax(axis=1)
        for m, v in scores.items():
            scored = Row(head, layer, lang, m, v)
            rows.append(scored)
            if m in ITEM_COLUMNS:
                rows.append(scored_items(scored, pred, gold, offsets=offsets,
                                         label_names=task.labels))  # fmt: skip
        n_cut = sum(e.truncated for e in encoded)
        rows.append(Row(head, layer, lang, "truncated_words", float(n_cut)))
        if n_cut:
            log.info("%s %s: %d of %d words past max_length %d, predicted as the most "
                     "frequent training label", lang, task.eval_split, n_cut, len(gold),
                     tok.max_length)  # fmt: skip
    return rows


def restamp(output: Sequence[Row | ItemScores], **changes: Any) -> list[Row | ItemScores]:
    """Rows and item statistics with the same fields changed (`dataclasses.replace`), so that
    each `ItemScores` keeps naming its score row."""
    return [ItemScores(replace(x.row, **changes), x.stats) if isinstance(x, ItemScores)
            else replace(x, **changes) for x in output]  # fmt: skip


def target_means(task: Task, rows: Sequence[Row], source: str) -> list[Row]:
    """Per metric, the mean score over the target languages (lang and group "targets")."""
    out = []
    for metric in (task.metric, *task.extra_metrics):
        found = Table(rows).filter(metric=metric, subset="", group="",
                                   lang=lambda x: x != source)  # fmt: skip
        if found:
            mean = float(np.mean([r.value for r in found]))
            out.append(replace(found[0], lang="targets", value=mean, group="targets"))
    return out


def score_intervals(
    means: Sequence[Row], per_seed: Sequence[Row], items: ItemSet, source: str,
    boot: PairedBootstrap | None = None,
) -> list[Row]:  # fmt: skip
    """The seed-mean rows with `ci_low`/`ci_high` set where the per-seed score rows have
    item statistics: a language's score, and the target mean ("targets") over the target
    languages; other rows unchanged."""
    boot = boot or PairedBootstrap()
    table = Table(per_seed)
    out = []
    for row in means:
        if row.metric not in ITEM_COLUMNS or row.stat or row.subset or row.eval_task:
            out.append(row)
            continue
        if row.group == "targets":
            langs = [lang for lang in table.values("lang", metric=row.metric, group="")
                     if lang != source]  # fmt: skip
        elif not row.group:
            langs = [row.lang]
        else:
            out.append(row)
            continue
        system = [r for r in table.filter(metric=row.metric, group="", subset="", stat="",
                                          eval_task="", config=row.config, layer=row.layer)
                  if r.lang in langs]  # fmt: skip
        if not langs or not items.covers(system):
            out.append(row)
            continue
        interval = boot.score(items.systems(system), row.metric, langs)
        out.append(replace(row, ci_low=interval.low, ci_high=interval.high))
    return out

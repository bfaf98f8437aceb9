"""One `probe finetune` job on a sentence-pair task (XNLI, PAWS-X): train, select, score.

The word job's counterpart (`probe.experiments.finetune.run_finetune_job` hands pair tasks
here): the pair encoded with the tokenizer's pair template, the baseline (the last layer's
[CLS] row, linear) or DLFA on (last, k) at sentence level trained end to end
(`probe.train.finetune_pairs`), the epoch with the best source-dev accuracy kept, and every
language's labelled evaluation split scored. The rows are named as `probe grid` names its
systems, so `probe paper` can set a fine-tuned run beside a frozen one: head "linear" with
layers (L, L) for the baseline, head "dlfa" with (k, L) for D_k, `layer` "k,L".
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.data.reading import read_task_split
from probe.data.subsets import sample_sentences
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.models import load_encoder
from probe.results.items import ItemScores, JobOutput, scored_items
from probe.results.render.grid import pair_name
from probe.results.rows import Row
from probe.runtime.device import resolve_device
from probe.train.finetune import FinetuneModel, FineTuning, train_model
from probe.train.finetune_pairs import (
    PairModel,
    PairTokenizer,
    labelled_pairs,
    pair_head,
    pair_probabilities,
    source_pairs,
)

if TYPE_CHECKING:
    from probe.experiments.finetune import _FinetuneJob

log = logging.getLogger(__name__)

# The facts a pair job reports beside its results (settings.json), as the word job's.
PAIR_FACTS = ("train_pairs", "dev_pairs", "steps", "truncated_train_pairs", "train_seconds",
              "eval_seconds")  # fmt: skip


def pair_system(fuse_layer: int | None, last: int) -> tuple[str, tuple[int, int]]:
    """(head, layers) of a run, as grid names them: ("linear", (L, L)) or ("dlfa", (k, L))."""
    return ("linear", (last, last)) if fuse_layer is None else ("dlfa", (fuse_layer, last))


def run_pair_job(job: _FinetuneJob, step_loss: str) -> JobOutput:
    """Fine-tune encoder + pair head on the source with the job's seed, keep the best
    source-dev epoch, score every language with a labelled evaluation split (rows with
    seed=job.seed, and their item statistics); `step_loss` names the per-step loss rows."""
    cfg, source = job.config, job.source
    task = get_task(job.task).training_on(cfg.train_split)
    device = resolve_device(cfg.device)
    encoder, tokenizer = load_encoder(job.model, str(device))
    last = int(encoder.config.num_hidden_layers)
    head_name, layers = pair_system(cfg.fuse_layer, last)
    layer = pair_name(layers)
    torch.manual_seed(job.seed)  # the head's initialisation and dropout
    head = pair_head(int(encoder.config.hidden_size), len(task.labels), cfg.fuse_layer,
                     cfg.pair_pool, cfg.reduction)  # fmt: skip
    model = PairModel(encoder, head.to(device), cfg.fuse_layer, cfg.pair_pool)
    tok = PairTokenizer(tokenizer, job.max_length, task.labels)
    train_pairs, dev_pairs = source_pairs(task, job.data_dir, source, cfg)
    train, dev = tok.encode(train_pairs), tok.encode(dev_pairs)
    cut = sum(e.truncated for e in train)
    if cut:
        log.info("%d of %d training pairs were cut to max_length %d", cut, len(train),
                 job.max_length)  # fmt: skip

    trained = train_model(model, tok, train, dev, task, cfg, device, job.epochs, job.progress,
                          f"finetune {task.name} {head_name} {layer} seed {job.seed}",
                          seed=job.seed)  # fmt: skip
    system = functools.partial(Row, head_name, layer, layers=layers, seed=job.seed)
    row = functools.partial(system, source)
    rows: list[Row | ItemScores] = [row("train_loss", trained.epoch_loss),
                                    row("best_epoch", float(trained.best_epoch))]  # fmt: skip
    if trained.best is not None:
        rows += [row(f"dev_{task.metric}", trained.best[0], subset="dev"),
                 row("dev_loss", -trained.best[1], subset="dev")]  # fmt: skip
    t_eval = time.perf_counter()
    rows += score_pair_languages(model, tok, task, job.data_dir, job.langs, cfg, device,
                                 system, cfg.max_eval_sentences)  # fmt: skip
    facts = {"train_pairs": len(train), "dev_pairs": len(dev), "steps": trained.steps,
             "truncated_train_pairs": cut, "train_seconds": trained.seconds,
             "eval_seconds": time.perf_counter() - t_eval}  # fmt: skip
    rows += [row(name, float(value)) for name, value in facts.items()]
    return rows + [row(step_loss, loss) for loss in trained.losses]


def score_pair_languages(
    model: FinetuneModel, tok: PairTokenizer, task: Task, data_dir: Path | None,
    langs: Sequence[str], config: FineTuning, device: torch.device,
    system: Callable[..., Row], max_pairs: int | None = None,
) -> list[Row | ItemScores]:  # fmt: skip
    """Accuracy on every language's evaluation split (a seeded, genre-stratified sample of
    `max_pairs` pairs when given), with its per-pair statistics for the bootstrap, and how
    many pairs were scored and were cut to max_length; `system(lang, metric, value)` makes a
    row named as the run's system. A split whose labels are hidden (XTREME's PAWS-X
    test files but de and zh) is skipped and logged; none labelled is refused."""
    rows: list[Row | ItemScores] = []
    for lang in langs:
        records = read_task_split(task, data_dir, lang, task.eval_split).records
        pairs = labelled_pairs(records)
        if len(pairs) < len(records):
            log.info("%s %s %s: %d of %d pairs have no label; not scored", task.name, lang,
                     task.eval_split, len(records) - len(pairs), len(records))  # fmt: skip
            continue
        if max_pairs:
            keep = sample_sentences([p.pair_id for p in pairs], max_pairs, config.seed)
            pairs = [pairs[i] for i in keep]
        encoded = tok.encode(pairs)
        probs = pair_probabilities(model, tok, encoded, device, config)
        gold = np.asarray([e.label for e in encoded], dtype=np.int64)
        pred = probs.argmax(axis=1)
        for metric, value in score(task.metric, probs, gold, label_names=task.labels).items():
            scored = system(lang, metric, value)
            rows.append(scored)
            if metric in ITEM_COLUMNS:
                rows.append(scored_items(scored, pred, gold, label_names=task.labels))
        rows.append(system(lang, "truncated_pairs", float(sum(e.truncated for e in encoded))))
        rows.append(system(lang, "eval_pairs", float(len(encoded))))
    if not any(isinstance(r, Row) and r.metric == task.metric for r in rows):
        raise ProbeError(f"no language of {task.name!r} among {', '.join(langs)} has a "
                         f"labelled {task.eval_split} split to score")  # fmt: skip
    return rows

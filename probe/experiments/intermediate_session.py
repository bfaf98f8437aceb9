"""The fine-tuning state every configuration of `probe intermediate --finetune` shares.

Loaded once in the run's process: the encoder with its pretrained weights (restored before
each configuration), every task's tokenised source data, and the stages trained so far, so
a prefix of stages shared by several configurations (A in A and A>B) is trained once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from probe.cache import default_cache_root
from probe.data.discovery import expand_languages
from probe.data.tasks import Task, default_data_dir, get_task
from probe.experiments.finetune import DEFAULT_EPOCHS, FinetuneConfig, restamp, score_languages
from probe.experiments.intermediate_plan import (
    Configuration,
    plan_configurations,
    resolve_via,
    word_tasks,
)
from probe.experiments.intermediate_seed import TARGET_PARAMETERS, TRAINING
from probe.heads.multitask import TaskHead
from probe.heads.registry import BODIES
from probe.models import load_encoder, resolve_model
from probe.results.items import ItemScores
from probe.results.rows import Row
from probe.runtime.device import resolve_device
from probe.train.finetune import (
    Encoded,
    FinetuneModel,
    WordTokenizer,
    source_sentences,
    train_model,
)
from probe.train.schedules import BodyState, body_state

if TYPE_CHECKING:
    from probe.experiments.intermediate_finetune import IntermediateFinetuneConfig


@dataclass(eq=False)
class TaskData:
    """One task's tokenizer and encoded source sentences (train, dev)."""

    task: Task
    source: str
    tok: WordTokenizer
    train: list[Encoded]
    dev: list[Encoded]


class FinetuneSession:
    """What every configuration of a run shares, loaded once in this process: the encoder
    and its pretrained weights (restored per configuration), every task's encoded data,
    and the stages trained so far (a prefix shared by configurations trains once)."""

    def __init__(self, config: IntermediateFinetuneConfig, target: Task, source: str,
                 progress: bool) -> None:  # fmt: skip
        ft = self.ft = config.finetune
        self.config, self.target, self.source, self.progress = config, target, source, progress
        # None reads the hub; a task file's own root wins (probe.data.reading).
        self.data_dir = data_dir = default_data_dir(ft.data_dir)
        langs = expand_languages(target, ft.langs, data_dir, ft.treebanks)
        self.langs = (source, *(lang for lang in langs if lang != source))
        self.via = word_tasks(resolve_via(config.via, target, data_dir, source), config.via)
        self.plan = plan_configurations(self.via, config.sets, ("sequential",))
        self.epochs = ft.epochs if ft.epochs is not None else DEFAULT_EPOCHS
        self.device = resolve_device(ft.device)
        self.ref = resolve_model(ft.model, default_cache_root(ft.cache_root), ft.random_weights)
        self.encoder, tokenizer = load_encoder(self.ref, str(self.device))
        self.pristine = body_state(self.encoder)
        enc = self.encoder.config
        self.n_layers, self.hidden = int(enc.num_hidden_layers) + 1, int(enc.hidden_size)
        self.layers = BODIES.get(config.body).layers(self.n_layers, config.layer)
        limit = getattr(enc, "max_position_embeddings", None)
        self.max_length = min(ft.max_length, limit) if limit else ft.max_length
        sources = {**{name: get_task(name).default_source for name in self.via},
                   target.name: source}  # fmt: skip
        # --treebank and --train-split are the target's; intermediate tasks use their own.
        via_ft = dataclasses.replace(ft, treebanks=(), train_split=None)
        self.tasks = {
            name: _task_data(target if name == target.name else get_task(name), src, tokenizer,
                             self.max_length, data_dir, ft if name == target.name else via_ft)
            for name, src in sources.items()
        }  # fmt: skip
        counts = np.bincount(np.concatenate([e.gold for e in self.tasks[target.name].train]),
                             minlength=len(target.labels))  # fmt: skip
        self.prior = counts / counts.sum()
        self.memo: dict[tuple[str, ...], tuple[BodyState, BodyState, list[Row]]] = {}

    def stage(
        self, name: str, warm: BodyState | None, desc: str
    ) -> tuple[FinetuneModel, list[Row]]:
        """Train one stage in place on the encoder; rows: the stage's source-dev numbers."""
        data, ft, body_name = self.tasks[name], self.ft, self.config.body
        torch.manual_seed(ft.seed)  # same body draw and classifier init in every configuration
        body = BODIES.get(body_name).build(self.hidden, self.layers, self.config.width,
                                           ft.reduction)  # fmt: skip
        if warm is not None:
            body.load_state_dict(warm)
        head = TaskHead(body, len(data.task.labels), "word").to(self.device)
        model = FinetuneModel(self.encoder, head, None, self.layers)
        done = train_model(model, data.tok, data.train, data.dev, data.task, ft, self.device,
                           self.epochs, self.progress, desc)  # fmt: skip
        # eval_task: the stage's task where it is not the target
        row = functools.partial(Row, body_name, "", data.source,
                                eval_task="" if name == self.target.name else name)  # fmt: skip
        rows = [row(f"{name}_best_epoch", float(done.best_epoch)),
                row(f"{name}_steps", float(done.steps))]  # fmt: skip
        if done.best is not None:
            rows.append(row(f"{name}_dev_{data.task.metric}", done.best[0], subset="dev"))
        return model, rows

    def run(self, conf: Configuration) -> list[Row | ItemScores]:
        """Fine-tune one configuration's stages (from the memo where it can) and score it:
        rows (seed: the run's one seed), the scores' item statistics, and a TRAINING row with
        the target head's trained parameters (the one-recipe check)."""
        done_k = max((k for k in range(len(conf.via) + 1) if conf.via[:k] in self.memo),
                     default=0)  # fmt: skip
        if done_k:
            enc_state, warm, stage_rows = self.memo[conf.via[:done_k]]
            self.encoder.load_state_dict(enc_state)
            stage_rows = list(stage_rows)
        else:
            self.encoder.load_state_dict(self.pristine)
            warm, stage_rows = None, []
        for k in range(done_k, len(conf.via)):
            model, more = self.stage(conf.via[k], warm, f"{conf.name}: {conf.via[k]}")
            warm, stage_rows = body_state(head_body(model)), stage_rows + more
            self.memo[conf.via[: k + 1]] = (body_state(self.encoder), warm, stage_rows)
        model, more = self.stage(self.target.name, warm, f"{conf.name}: {self.target.name}")
        cfg, tok = self.config, self.tasks[self.target.name].tok
        scored = score_languages(model, tok, self.target, self.data_dir, self.langs, self.prior,
                                 self.ft, self.device, cfg.body, conf.name,
                                 cfg.max_eval_sentences)  # fmt: skip
        size = sum(p.numel() for p in model.head.parameters() if p.requires_grad)
        note = Row(TRAINING, "", "", TARGET_PARAMETERS, float(size))
        return restamp([*stage_rows, *more, *scored, note], layer=conf.name, config=conf.name,
                       layers=self.layers, seed=self.ft.seed)  # fmt: skip


def data_digest(data: TaskData) -> str:
    """sha256 of a task's encoded training and dev sentences: saved configurations are
    reused only for the same data."""
    digest = hashlib.sha256()
    for part in (data.train, data.dev):
        for e in part:
            digest.update(e.ids.tobytes())
            digest.update(e.gold.tobytes())
    return digest.hexdigest()


def head_body(model: FinetuneModel) -> nn.Module:
    """The shared body inside a stage's model (its head is a `TaskHead`)."""
    head = model.head
    assert isinstance(head, TaskHead)
    return head.body


def _task_data(
    task: Task, source: str, tokenizer: Any, max_length: int, data_dir: Any, ft: FinetuneConfig
) -> TaskData:
    """One task's source train/dev sentences, tokenised once for every configuration."""
    tok = WordTokenizer(tokenizer, max_length, task.labels)
    train, dev = source_sentences(task, data_dir, source, ft)
    return TaskData(task, source, tok, tok.encode(train), tok.encode(dev))

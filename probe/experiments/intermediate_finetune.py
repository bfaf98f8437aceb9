"""`probe intermediate --finetune`: intermediate tasks with the encoder trained end to end.

The same comparison as `probe.experiments.intermediate` ("none", each task, growing sets),
but every stage fine-tunes the encoder together with the shared head body and that task's
classifier, reusing `probe.experiments.finetune` (tokenisation, training loop with
best-epoch selection on source dev, scoring). The encoder and the body carry over from
stage to stage; classifiers do not. Each configuration starts again from the pretrained
encoder; stages shared by several configurations (A in A and A>B) are trained once and
their encoder/body weights reused, which changes no number (a stage depends only on what
came before it and the seed).

Limits: word-level tasks only (fine-tuning on sentence pairs is not implemented in
`probe finetune` either), and the sequential schedule only (mixed batches would need a
multi-task fine-tuning loop).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from probe._version import __version__
from probe.cache import default_cache_root
from probe.data.tasks import Task, default_data_dir, expand_languages, get_task
from probe.errors import ProbeError
from probe.experiments.finetune import (
    DEFAULT_EPOCHS,
    FinetuneConfig,
    FinetuneModel,
    _Encoded,
    _source_data,
    _Tokenizer,
    score_languages,
    train_model,
)
from probe.experiments.grid import family_gains
from probe.experiments.intermediate import (
    BASELINE,
    IntermediateResult,
    per_family_gains,
    plan_configurations,
    resolve_via,
    write_outputs,
)
from probe.experiments.pool import Journal, fingerprint
from probe.heads.multitask import TaskHead
from probe.heads.registry import BODIES
from probe.models import load_encoder, resolve_model
from probe.results.report import Row, provenance, run_directory
from probe.runtime.device import resolve_device
from probe.train.schedules import BodyState, body_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntermediateFinetuneConfig:
    """One `probe intermediate --finetune` run. `finetune` holds the target (its `task`), the
    model, data and every fine-tuning setting; `max_steps` and `max_train_sentences` apply to
    each stage and each task."""

    finetune: FinetuneConfig
    via: tuple[str, ...] = ("all",)
    sets: str | None = None
    body: str = "mlp"
    layer: int | None = None
    width: int = 256
    max_eval_sentences: int | None = None  # per target language


@dataclass(eq=False)
class _TaskData:
    task: Task
    source: str
    tok: _Tokenizer
    train: list[_Encoded]
    dev: list[_Encoded]


def run_intermediate_finetune(
    config: IntermediateFinetuneConfig, progress: bool = True
) -> IntermediateResult:
    """Fine-tune every configuration's stages, score the target on every language, write."""
    ft = config.finetune
    target = get_task(ft.task)
    if target.level != "word":
        raise ProbeError(f"--finetune supports word-level targets only; {target.name!r} is not")
    data_dir = default_data_dir(ft.data_dir)
    if data_dir is None:
        raise ProbeError("--finetune reads local data: pass --data-dir or set PROBE_DATA")
    source = ft.source or target.default_source
    target.check_language(source)
    langs = expand_languages(target, ft.langs, data_dir)
    langs = (source, *(lang for lang in langs if lang != source))
    via = _word_tasks(resolve_via(config.via, target, data_dir), config.via)
    plan = plan_configurations(via, config.sets, ("sequential",))
    epochs = ft.epochs if ft.epochs is not None else DEFAULT_EPOCHS
    t0 = time.perf_counter()

    device = resolve_device(ft.device)
    ref = resolve_model(ft.model, default_cache_root(ft.cache_root))
    encoder, tokenizer = load_encoder(ref, str(device))
    pristine = body_state(encoder)
    n_layers, hidden = int(encoder.config.num_hidden_layers) + 1, int(encoder.config.hidden_size)
    layers = BODIES.get(config.body).layers(n_layers, config.layer)
    limit = getattr(encoder.config, "max_position_embeddings", None)
    max_length = min(ft.max_length, limit) if limit else ft.max_length
    tasks = {name: _task_data(get_task(name), get_task(name).default_source, tokenizer,
                              max_length, data_dir, ft) for name in via}  # fmt: skip
    tasks[target.name] = _task_data(target, source, tokenizer, max_length, data_dir, ft)
    counts = np.bincount(np.concatenate([e.gold for e in tasks[target.name].train]),
                         minlength=len(target.labels))  # fmt: skip
    prior = counts / counts.sum()

    def stage(name: str, warm: BodyState | None, desc: str) -> tuple[FinetuneModel, list[Row]]:
        """Train one stage in place on `encoder`; rows: the stage's source-dev numbers."""
        data = tasks[name]
        torch.manual_seed(ft.seed)  # same body draw and classifier init in every configuration
        body = BODIES.get(config.body).build(hidden, layers, config.width, ft.reduction)
        if warm is not None:
            body.load_state_dict(warm)
        head = TaskHead(body, len(data.task.labels), "word").to(device)
        model = FinetuneModel(encoder, head, None, layers)
        done = train_model(model, data.tok, data.train, data.dev, data.task, ft, device, epochs,
                           progress, desc)  # fmt: skip
        metric = data.task.metric
        rows = [Row(config.body, "", data.source, f"{name}_best_epoch", float(done.best_epoch)),
                Row(config.body, "", data.source, f"{name}_steps", float(done.steps))]  # fmt: skip
        if done.best is not None:
            rows.append(Row(config.body, "", data.source, f"{name}_dev_{metric}", done.best[0]))
        return model, rows

    settings = {
        "command": "intermediate", "mode": "finetune", "target": target.name,
        "model": ft.model, "model_identity": ref.identity, "source": source,
        "languages": list(langs), "via": list(via),
        "via_sources": {t: get_task(t).default_source for t in via},
        "configurations": [c.name for c in plan], "schedules": ["sequential"],
        "body": config.body, "layers": list(layers), "width": config.width,
        "finetune": {k: v for k, v in asdict(ft).items()
                     if k not in ("model", "task", "langs", "source", "data_dir", "cache_root",
                                  "results_dir")},
        "epochs": epochs, "max_length": max_length,
        "max_eval_sentences": config.max_eval_sentences,
        "train_sentences": {n: len(d.train) for n, d in tasks.items()},
        "dev_sentences": {n: len(d.dev) for n, d in tasks.items()},
        "train_split": target.train_split, "eval_split": target.eval_split,
        "device": str(device), "provenance": provenance(ft.seed),
    }  # fmt: skip
    volatile = ("device", "seconds", "provenance")
    directory = run_directory(
        ft.results_dir / target.name / ref.slug, f"intermediate-ft-{config.body}-{source}",
        settings, volatile,
    )  # fmt: skip
    # Each configuration takes minutes: a finished one is saved at once and a rerun after a
    # crash or a time limit loads it instead of training it again.
    journal = Journal(directory / "jobs", fingerprint(
        {k: v for k, v in settings.items() if k not in volatile}, __version__,
        {n: _data_digest(d) for n, d in sorted(tasks.items())},
    ))  # fmt: skip
    memo: dict[tuple[str, ...], tuple[BodyState, BodyState, list[Row]]] = {}
    rows: list[Row] = []
    from tqdm.auto import tqdm

    for conf in tqdm(plan, desc=f"intermediate --finetune {target.name}", unit="config",
                     disable=not progress):  # fmt: skip
        saved = journal.load(_job_name(conf.name))
        if saved is not None:
            rows += saved
            continue
        done_k = max((k for k in range(len(conf.via) + 1) if conf.via[:k] in memo), default=0)
        if done_k:
            enc_state, warm, stage_rows = memo[conf.via[:done_k]]
            encoder.load_state_dict(enc_state)
            stage_rows = list(stage_rows)
        else:
            encoder.load_state_dict(pristine)
            warm, stage_rows = None, []
        for k in range(done_k, len(conf.via)):
            model, more = stage(conf.via[k], warm, f"{conf.name}: {conf.via[k]}")
            warm, stage_rows = body_state(head_body(model)), stage_rows + more
            memo[conf.via[: k + 1]] = (body_state(encoder), warm, stage_rows)
        model, more = stage(target.name, warm, f"{conf.name}: {target.name}")
        conf_rows = [Row(r.head, conf.name, r.lang, r.metric, r.value)
                     for r in stage_rows + more]  # fmt: skip
        tok = tasks[target.name].tok
        conf_rows += score_languages(model, tok, target, data_dir, langs, prior, ft, device,
                                     config.body, conf.name, config.max_eval_sentences)  # fmt: skip
        journal.save(_job_name(conf.name), conf_rows)
        rows += conf_rows
    rows += family_gains(target, rows, source, BASELINE)
    rows += per_family_gains(target, rows, source)
    seconds = time.perf_counter() - t0
    settings["seconds"] = round(seconds, 3)
    table = write_outputs(rows, directory, settings, target, source, list(langs), ref.slug)
    journal.clear()  # results are written; a rerun recomputes with the current code
    return IntermediateResult(rows, directory, table, seconds, 0.0, [c.name for c in plan])


def _job_name(configuration: str) -> str:
    """A configuration's journal file name (`pos>panx` -> `pos-then-panx`)."""
    return configuration.replace(">", "-then-").replace("+", "-and-")


def _data_digest(data: _TaskData) -> str:
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


def _word_tasks(via: tuple[str, ...], spec: tuple[str, ...]) -> tuple[str, ...]:
    """Fine-tuning runs on word tasks only: `all` drops pair tasks (logged), a named one fails."""
    pairs = [name for name in via if get_task(name).level != "word"]
    if pairs and [x.strip() for s in spec for x in s.split(",")] != ["all"]:
        raise ProbeError(
            f"--finetune trains on word-level tasks only; {', '.join(pairs)} "
            f"{'is a pair task' if len(pairs) == 1 else 'are pair tasks'} (drop --finetune to "
            "use pair tasks as intermediate tasks on cached features)"
        )
    if pairs:
        log.warning("--finetune: leaving out the pair tasks %s", ", ".join(pairs))
    kept = tuple(name for name in via if name not in pairs)
    if not kept:
        raise ProbeError("--finetune: no word-level intermediate task left in --via")
    return kept


def _task_data(
    task: Task, source: str, tokenizer: Any, max_length: int, data_dir: Any, ft: FinetuneConfig
) -> _TaskData:
    """One task's source train/dev sentences, tokenised once for every configuration."""
    tok = _Tokenizer(tokenizer, max_length, task.labels)
    train, dev = _source_data(task, data_dir, source, ft)
    return _TaskData(task, source, tok, tok.encode(train), tok.encode(dev))

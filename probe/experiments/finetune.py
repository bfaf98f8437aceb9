"""`probe finetune`: train the encoder and a head end to end on the source, zero-shot everywhere.

Where `probe grid` trains a head on frozen, cached features, this fine-tunes the whole
encoder (XTREME's setting) with the same heads on top: a linear classifier on the last
layer (`fuse_layer=None`) or the DLFA head fusing the last layer with layer k. It reads
the raw source-language data (no cache), puts each word's label on its FIRST subword
(XTREME convention; other subwords and special tokens get -100), trains with AdamW and a
linear warmup/decay schedule, keeps the epoch with the best source-dev score, and scores
every language's evaluation split with `probe.analysis.metrics.score`. Rows, results.csv/json,
settings.json and summary.txt are laid out as in `probe grid`; docs/finetune.md has the
defaults and why.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from probe.analysis.metrics import IGNORE_INDEX, score
from probe.cache import default_cache_root
from probe.data.alignment import align_words, first_subword, pad_id, special_token_layout
from probe.data.holdout import holdout
from probe.data.sources.records import TaggedSentence
from probe.data.tasks import Task, default_data_dir, expand_languages, get_task, read_split
from probe.errors import ProbeError
from probe.heads.registry import HEADS
from probe.models import load_encoder, resolve_model
from probe.results.report import Row, provenance, run_directory, write_table
from probe.runtime.device import resolve_device
from probe.runtime.precision import autocast, pick_compute_dtype

log = logging.getLogger(__name__)

HEAD = "finetune"
# XTREME's fine-tuning epochs: 10 for the word tasks (POS, NER); 5 for XNLI/PAWS-X, which
# are not supported here.
DEFAULT_EPOCHS = 10


@dataclass(frozen=True)
class FinetuneConfig:
    """One `probe finetune` run. Defaults follow XTREME (lr 2e-5, max length 128, 10 epochs).

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
    results_dir: Path = Path("results")
    fuse_layer: int | None = None  # None: last layer + linear; k: DLFA on (last, k)
    epochs: int | None = None  # None: XTREME's default (10 for word tasks)
    lr: float = 2e-5
    head_lr: float = 1e-3
    batch_size: int = 32  # sentences
    max_length: int = 128  # subword tokens, special tokens included
    warmup: float = 0.1  # share of the steps spent warming up linearly
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    dev_fraction: float = 0.1  # held out of train when the task has no dev split
    reduction: int = 4  # DLFA bottleneck ratio
    max_steps: int | None = None
    max_train_sentences: int | None = None


@dataclass
class FinetuneResult:
    rows: list[Row]
    directory: Path
    table: str
    seconds: float
    losses: list[float]


@dataclass
class _Encoded:
    """One sentence as model input: ids (with special tokens), first-subword position per word
    (-1 where the word fell past max_length), and the gold label id per word."""

    ids: np.ndarray
    first: np.ndarray
    gold: np.ndarray

    @property
    def truncated(self) -> int:
        return int((self.first < 0).sum())


class FinetuneModel(nn.Module):
    """The encoder and one head: per-token logits (B, T, C).

    The head reads the last layer, `head(h_last)` (fuse_layer None); the last layer and
    layer k, `head(h_last, h_k, mask)` (fuse_layer k); or, given `layers`, those hidden
    states in that order, `head(h_i, ..., mask)` (0 = embeddings), as multi-task heads do.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        fuse_layer: int | None,
        layers: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.fuse_layer = fuse_layer
        self.layers = layers

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states_needed = self.fuse_layer is not None or self.layers is not None
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=states_needed
        )
        if not states_needed:
            return self.head(out.last_hidden_state)
        states = out.hidden_states
        if self.layers is not None:
            return self.head(*(states[i] for i in self.layers), attention_mask.bool())
        return self.head(states[-1], states[self.fuse_layer], attention_mask.bool())


class _Tokenizer:
    """Words -> subword ids with the model's special tokens, truncated to max_length."""

    def __init__(self, tokenizer: Any, max_length: int, labels: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.prefix, self.suffix = special_token_layout(tokenizer)
        self.max_length = max_length
        self.room = max_length - len(self.prefix) - len(self.suffix)
        if self.room < 1:
            raise ProbeError(f"max_length {max_length} leaves no room between special tokens")
        self.pad_id = pad_id(tokenizer)
        self.label_id = {name: i for i, name in enumerate(labels)}

    def encode(self, sentences: list[TaggedSentence]) -> list[_Encoded]:
        """Subwords as extraction aligns them (probe.data.alignment: a word the tokenizer
        drops is one UNK); each word's label goes on its first subword."""
        out = []
        aligned = align_words(self.tokenizer, [s.words for s in sentences])
        for sent, pieces in zip(sentences, aligned, strict=True):
            kept, first = first_subword(pieces, self.room, len(self.prefix))
            ids = np.concatenate([self.prefix, kept, self.suffix])
            gold = np.asarray([self.label_id[t] for t in sent.tags], dtype=np.int64)
            out.append(_Encoded(ids.astype(np.int64), first, gold))
        return out


def _collate(items: list[_Encoded], pad_id: int, device: torch.device) -> tuple[Tensor, ...]:
    width = max(len(e.ids) for e in items)
    ids = np.full((len(items), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(items), width), dtype=np.int64)
    labels = np.full((len(items), width), IGNORE_INDEX, dtype=np.int64)
    for row, e in enumerate(items):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = 1
        kept = e.first >= 0
        labels[row, e.first[kept]] = e.gold[kept]
    return tuple(torch.from_numpy(a).to(device) for a in (ids, mask, labels))


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """Fine-tuning's autocast: bf16 when asked, or "auto" on CUDA; fp32 on CPU (unchanged)."""
    return autocast(device, pick_compute_dtype(precision, device, finetune=True))


def run_finetune(config: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Fine-tune encoder + head on the source, select on source dev, score every language."""
    task = get_task(config.task)
    if task.level != "word":
        raise ProbeError(
            f"finetune supports word-level tasks only (pos, udpos, ner, panx); {task.name!r} is "
            f"a {task.level} task (sentence-pair / parallel fine-tuning is not implemented)."
        )
    data_dir = default_data_dir(config.data_dir)
    if data_dir is None:
        raise ProbeError("finetune reads local data: pass --data-dir or set PROBE_DATA")
    source = config.source or task.default_source
    task.check_language(source)
    langs = expand_languages(task, config.langs, data_dir)
    langs = (source, *(lang for lang in langs if lang != source))
    epochs = config.epochs if config.epochs is not None else DEFAULT_EPOCHS
    if epochs < 1 or config.batch_size < 1:
        raise ProbeError("epochs and batch_size must be >= 1")
    t0 = time.perf_counter()

    device = resolve_device(config.device)
    ref = resolve_model(config.model, default_cache_root(config.cache_root))
    encoder, tokenizer = load_encoder(ref, str(device))
    n_layers = int(encoder.config.num_hidden_layers) + 1
    last = n_layers - 1
    k = config.fuse_layer
    if k is not None and not 0 <= k <= last:
        raise ProbeError(f"--fuse-layer {k} is outside 0..{last} (0 = embeddings)")
    layer = "last" if k is None else f"{k},{last}"
    limit = getattr(encoder.config, "max_position_embeddings", None)
    max_length = min(config.max_length, limit) if limit else config.max_length

    torch.manual_seed(config.seed)
    n_classes = len(task.labels)
    hidden = int(encoder.config.hidden_size)
    head = HEADS.get("linear" if k is None else "dlfa").build(
        "word", hidden, n_classes, reduction=config.reduction
    )
    model = FinetuneModel(encoder, head.to(device), k)
    tok = _Tokenizer(tokenizer, max_length, task.labels)

    train_sents, dev_sents = _source_data(task, data_dir, source, config)
    train, dev = tok.encode(train_sents), tok.encode(dev_sents)
    cut = sum(e.truncated for e in train)
    if cut:
        log.info("%d of %d training words lie past max_length %d; they are not trained on",
                 cut, sum(len(e.gold) for e in train), max_length)  # fmt: skip
    counts = np.bincount(np.concatenate([e.gold for e in train]), minlength=n_classes)
    prior = counts / counts.sum()  # the prediction for evaluation words past max_length

    trained = train_model(model, tok, train, dev, task, config, device, epochs, progress,
                          f"finetune {task.name} {layer}")  # fmt: skip
    losses, best, best_epoch, step = trained.losses, trained.best, trained.best_epoch, trained.steps
    epoch_loss, train_seconds, metric = trained.epoch_loss, trained.seconds, task.metric

    rows = [
        Row(HEAD, layer, source, "train_loss", epoch_loss),
        Row(HEAD, layer, source, "best_epoch", float(best_epoch)),
    ]
    if best is not None:
        rows += [Row(HEAD, layer, source, f"dev_{metric}", best[0]),
                 Row(HEAD, layer, source, "dev_loss", -best[1])]  # fmt: skip
    t_eval = time.perf_counter()
    rows += score_languages(model, tok, task, data_dir, langs, prior, config, device, HEAD, layer)
    targets = [r.value for r in rows if r.metric == metric and r.lang not in (source, "targets")]
    if targets:
        rows.append(Row(HEAD, layer, "targets", metric, float(np.mean(targets))))
    eval_seconds = time.perf_counter() - t_eval
    seconds = time.perf_counter() - t0

    settings = {
        "command": "finetune", "task": task.name, "model": config.model,
        "model_identity": ref.identity, "source": source, "languages": list(langs),
        "fuse_layer": k, "layer": layer, "epochs": epochs, "lr": config.lr,
        "head_lr": config.head_lr, "batch_size": config.batch_size, "max_length": max_length,
        "warmup": config.warmup, "weight_decay": config.weight_decay, "seed": config.seed,
        "precision": config.precision, "reduction": config.reduction,
        "max_steps": config.max_steps, "max_train_sentences": config.max_train_sentences,
        "train_split": task.train_split, "eval_split": task.eval_split,
        "dev_split": task.dev_split or f"{config.dev_fraction:.0%} of {task.train_split}",
        "train_sentences": len(train), "dev_sentences": len(dev), "steps": step,
        "truncated_train_words": cut, "selection": f"best source-dev {metric} per epoch",
        "device": str(device), "seconds": round(seconds, 3),
        "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "provenance": provenance(config.seed),
    }  # fmt: skip
    tag = "last" if k is None else str(k)
    directory = run_directory(
        config.results_dir / task.name / ref.slug, f"finetune-{tag}-{source}", settings,
        volatile=("device", "seconds", "train_seconds", "eval_seconds", "provenance"),
    )  # fmt: skip
    write_table(rows, directory, settings)
    table = finetune_table(task, rows, source, list(langs), layer, best_epoch, step)
    (directory / "summary.txt").write_text(table + "\n")
    return FinetuneResult(rows, directory, table, seconds, losses)


@dataclass
class Trained:
    """What `train_model` did: per-step losses, the kept epoch and its source-dev numbers."""

    losses: list[float]
    best_epoch: int
    best: tuple[float, float] | None  # (dev score, -dev loss) of the kept epoch
    steps: int
    epoch_loss: float  # mean train loss of the last epoch run
    seconds: float


def train_model(
    model: FinetuneModel, tok: _Tokenizer, train: list[_Encoded], dev: list[_Encoded], task: Task,
    config: FinetuneConfig, device: torch.device, epochs: int, progress: bool = True,
    desc: str = "finetune",
) -> Trained:  # fmt: skip
    """Train `model` (`.encoder` + `.head`, logits per token) on one task's encoded sentences:
    AdamW with linear warmup/decay, at most `config.max_steps` steps; the epoch with the best
    source-dev score is loaded back into `model`. `probe intermediate --finetune` calls this
    once per stage on a model whose encoder and head body were trained by earlier stages."""
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr)
    from transformers import get_linear_schedule_with_warmup

    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total), total)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    rng = np.random.default_rng(config.seed)
    metric = task.metric
    losses: list[float] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, Tensor] = {}
    best_epoch = 0
    epoch_loss = float("nan")
    from tqdm.auto import tqdm

    t_train = time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
    step = 0
    for epoch in range(1, epochs + 1):
        if step >= total:
            break
        model.train()
        order = rng.permutation(len(train))
        first_step = len(losses)
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            chosen = [train[i] for i in order[start : start + config.batch_size]]
            ids, mask, labels = _collate(chosen, tok.pad_id, device)
            with _autocast(device, config.precision):
                logits = model(ids, mask)
            loss = loss_fn(logits.float().flatten(0, 1), labels.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", epoch=epoch)
        epoch_loss = float(np.mean(losses[first_step:]))
        dev_loss, dev_score = _dev_scores(model, dev, task, tok.pad_id, device, config, loss_fn)
        log.info("epoch %d: train loss %.4f, dev loss %.4f, dev %s %.4f",
                 epoch, epoch_loss, dev_loss, metric, dev_score)  # fmt: skip
        key = (dev_score, -dev_loss)
        if best is None or key > best:
            best, best_epoch = key, epoch
            best_state = {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()}
    bar.close()
    train_seconds = time.perf_counter() - t_train
    if best_state:
        model.load_state_dict(best_state)
    del best_state
    return Trained(losses, best_epoch, best, step, epoch_loss, train_seconds)


def score_languages(
    model: FinetuneModel, tok: _Tokenizer, task: Task, data_dir: Path, langs: Sequence[str],
    prior: np.ndarray, config: FinetuneConfig, device: torch.device, head: str, layer: str,
    max_sentences: int | None = None,
) -> list[Row]:  # fmt: skip
    """The task's metrics on every language's evaluation split (its first `max_sentences`
    sentences when given), plus how many words lay past max_length (predicted as `prior`)."""
    rows: list[Row] = []
    for lang in langs:
        sents = _word_records(read_split(task, data_dir, lang, task.eval_split))
        if max_sentences:
            sents = sents[:max_sentences]
        encoded = tok.encode(sents)
        probs = _word_probs(model, encoded, prior, tok.pad_id, device, config)
        gold = np.concatenate([e.gold for e in encoded])
        offsets = np.concatenate([[0], np.cumsum([len(e.gold) for e in encoded])])
        scores = score(task.metric, probs, gold, offsets=offsets, label_names=task.labels)
        rows += [Row(head, layer, lang, m, v) for m, v in scores.items()]
        n_cut = sum(e.truncated for e in encoded)
        rows.append(Row(head, layer, lang, "truncated_words", float(n_cut)))
        if n_cut:
            log.info("%s %s: %d of %d words past max_length %d, predicted as the most "
                     "frequent training label", lang, task.eval_split, n_cut, len(gold),
                     tok.max_length)  # fmt: skip
    return rows


def _word_records(records: Any) -> list[TaggedSentence]:
    return [s for s in records if isinstance(s, TaggedSentence) and len(s.words) > 0]


def _source_data(
    task: Task, data_dir: Path, source: str, config: FinetuneConfig
) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """Source train (first max_train_sentences) and dev (the dev split, or a seeded hold-out)."""
    train = _word_records(read_split(task, data_dir, source, task.train_split))
    if config.max_train_sentences:
        train = train[: config.max_train_sentences]
    if task.dev_split:
        return train, _word_records(read_split(task, data_dir, source, task.dev_split))
    train_idx, dev_idx = holdout(len(train), config.dev_fraction, config.seed, "source sentences")
    return [train[i] for i in train_idx], [train[i] for i in dev_idx]


def _param_groups(model: FinetuneModel, config: FinetuneConfig) -> list[dict[str, Any]]:
    """Encoder at lr, head at head_lr; no weight decay on biases and norm weights (1-d)."""
    groups = []
    for part, lr in ((model.encoder, config.lr), (model.head, config.head_lr)):
        params = [p for p in part.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        plain = [p for p in params if p.dim() < 2]
        groups += [{"params": decay, "lr": lr, "weight_decay": config.weight_decay},
                   {"params": plain, "lr": lr, "weight_decay": 0.0}]  # fmt: skip
    return [g for g in groups if g["params"]]


def _batches(items: list[_Encoded], size: int) -> list[list[int]]:
    """Indices in length order (less padding), cut into batches."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def _dev_scores(
    model: FinetuneModel, dev: list[_Encoded], task: Task, pad_id: int, device: torch.device,
    config: FinetuneConfig, loss_fn: nn.Module,
) -> tuple[float, float]:  # fmt: skip
    """Mean token loss and the main metric on source dev (words past max_length are skipped)."""
    model.eval()
    total_loss, n_tokens = 0.0, 0
    for batch in _batches(dev, config.batch_size * 2):
        ids, mask, labels = _collate([dev[i] for i in batch], pad_id, device)
        with _autocast(device, config.precision):
            logits = model(ids, mask)
        n = int((labels != IGNORE_INDEX).sum())
        total_loss += float(loss_fn(logits.float().flatten(0, 1), labels.flatten())) * n
        n_tokens += n
    uniform = np.full(len(task.labels), 1.0 / len(task.labels))
    probs = _word_probs(model, dev, uniform, pad_id, device, config)
    gold = np.concatenate([e.gold for e in dev])
    kept = np.concatenate([e.first >= 0 for e in dev])
    model.train()
    if not kept.any():
        return total_loss / max(n_tokens, 1), 0.0
    # Words past max_length: left out of dev accuracy; entity F1 needs whole sentences, so
    # there they stay in and are predicted as label 0 ("O", the uniform prior's argmax).
    if task.metric == "accuracy":
        dev_score = float(np.mean(probs[kept].argmax(1) == gold[kept]))
    else:
        offsets = np.concatenate([[0], np.cumsum([len(e.gold) for e in dev])])
        dev_score = score(task.metric, probs, gold, offsets=offsets,
                          label_names=task.labels)[task.metric]  # fmt: skip
    return total_loss / max(n_tokens, 1), dev_score


@torch.inference_mode()
def _word_probs(
    model: FinetuneModel, items: list[_Encoded], prior: np.ndarray, pad_id: int,
    device: torch.device, config: FinetuneConfig,
) -> np.ndarray:  # fmt: skip
    """Class probabilities per word (words, classes), read at each word's first subword.

    Words past max_length get `prior` (the training label distribution in evaluation, so the
    prediction is the most frequent training label and counts as wrong unless it matches).
    """
    was_training = model.training
    model.eval()
    per_sentence: list[np.ndarray] = [np.empty(0)] * len(items)
    for batch in _batches(items, config.batch_size * 2):
        ids, mask, _ = _collate([items[i] for i in batch], pad_id, device)
        with _autocast(device, config.precision):
            logits = model(ids, mask)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        for row, i in enumerate(batch):
            e = items[i]
            out = np.tile(prior, (len(e.first), 1))
            kept = e.first >= 0
            out[kept] = probs[row, e.first[kept]]
            per_sentence[i] = out
    model.train(was_training)
    return np.concatenate(per_sentence).astype(np.float64)


def finetune_table(
    task: Task, rows: list[Row], source: str, langs: list[str], layer: str, best_epoch: int,
    steps: int,
) -> str:  # fmt: skip
    """One line: the main metric x100 per language (and the mean over target languages)."""
    metric = task.metric
    cols = [*langs, "targets"]
    width = max(7, *(len(c) + 1 for c in cols))
    values = {r.lang: r.value for r in rows if r.metric == metric}
    title = (f"{task.name}: {metric} x100, encoder fine-tuned end to end ({layer}); source "
             f"{source}; best epoch {best_epoch}, {steps} steps")  # fmt: skip
    head = f"{'layer':<8}" + "".join(f"{c:>{width}}" for c in cols)
    line = f"{layer:<8}" + "".join(
        f"{100 * values[c]:>{width}.1f}" if c in values else f"{'-':>{width}}" for c in cols
    )
    return "\n".join([title, head, line])

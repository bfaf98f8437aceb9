"""Fine-tuning an encoder and a head end to end on word-labelled sentences.

Words become subword ids with each word's label on its FIRST subword (XTREME convention;
other subwords and special tokens get -100); the model is the encoder with a head on its
hidden states; training is AdamW with a linear warmup/decay schedule that keeps the epoch
with the best source-dev score; `word_probabilities` reads each word's class probabilities.
`probe finetune` and `probe intermediate --finetune` train through here. The loop reads its
batches and its dev score through a `Batching` (here `WordTokenizer`; sentence pairs:
`probe.train.finetune_pairs.PairTokenizer`), so word and pair tasks share one loop. The
encoder comes loaded from the caller (this package never loads one).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from probe.analysis.metrics import IGNORE_INDEX, score
from probe.data.alignment import align_words, first_subword, pad_id, special_token_layout
from probe.data.holdout import holdout
from probe.data.reading import read_task_split
from probe.data.sources.records import TaggedSentence
from probe.data.subsets import sample_sentences
from probe.data.tasks import Task
from probe.errors import ProbeError
from probe.runtime.precision import autocast, pick_compute_dtype

log = logging.getLogger(__name__)


class FineTuning(Protocol):
    """The settings training reads (`probe.experiments.finetune.FinetuneConfig` has them)."""

    @property
    def lr(self) -> float: ...  # the encoder's
    @property
    def head_lr(self) -> float: ...
    @property
    def batch_size(self) -> int: ...  # sentences per step
    @property
    def warmup(self) -> float: ...  # share of the steps
    @property
    def weight_decay(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def precision(self) -> str: ...
    @property
    def max_steps(self) -> int | None: ...
    @property
    def max_train_sentences(self) -> int | None: ...
    @property
    def dev_fraction(self) -> float: ...
    @property
    def treebanks(self) -> tuple[str, ...]: ...  # UD picks (--treebank)


class Batching(Protocol):
    """What `train_model` needs from a task's encoded items: model inputs and labels for a
    batch, and the (dev loss, dev score) that picks the kept epoch."""

    def collate(self, items: list[Any], device: torch.device) -> tuple[Tensor, ...]:
        """(model inputs..., labels): `model(*inputs)` gives the logits the labels score."""
        ...

    def dev_scores(
        self, model: FinetuneModel, dev: list[Any], task: Task, device: torch.device,
        config: FineTuning, loss_fn: nn.Module,
    ) -> tuple[float, float]:  # fmt: skip
        """Mean loss and the task's main metric on source dev."""
        ...


@dataclass
class Encoded:
    """One sentence as model input: ids (with special tokens), first-subword position per word
    (-1 where the word fell past max_length), and the gold label id per word."""

    ids: np.ndarray
    first: np.ndarray
    gold: np.ndarray

    @property
    def truncated(self) -> int:
        return int((self.first < 0).sum())


class WordTokenizer:
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

    def encode(self, sentences: list[TaggedSentence]) -> list[Encoded]:
        """Subwords as extraction aligns them (probe.data.alignment: a word the tokenizer
        drops is one UNK); each word's label goes on its first subword."""
        out = []
        aligned = align_words(self.tokenizer, [s.words for s in sentences])
        for sent, pieces in zip(sentences, aligned, strict=True):
            kept, first = first_subword(pieces, self.room, len(self.prefix))
            ids = np.concatenate([self.prefix, kept, self.suffix])
            gold = np.asarray([self.label_id[t] for t in sent.tags], dtype=np.int64)
            out.append(Encoded(ids.astype(np.int64), first, gold))
        return out

    def collate(self, items: list[Encoded], device: torch.device) -> tuple[Tensor, ...]:
        """(ids, mask, labels): labels on each kept word's first subword, -100 elsewhere."""
        return _collate(items, self.pad_id, device)

    def dev_scores(
        self, model: FinetuneModel, dev: list[Encoded], task: Task, device: torch.device,
        config: FineTuning, loss_fn: nn.Module,
    ) -> tuple[float, float]:  # fmt: skip
        return _dev_scores(model, dev, task, self.pad_id, device, config, loss_fn)


def word_records(records: Any) -> list[TaggedSentence]:
    """The tagged sentences of a split that have words."""
    return [s for s in records if isinstance(s, TaggedSentence) and len(s.words) > 0]


def source_sentences(
    task: Task, data_dir: Path | None, source: str, config: FineTuning
) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """Source train (a seeded, genre-stratified sample of `max_train_sentences` whole
    sentences, `probe.data.subsets`) and dev (the dev split, or a seeded hold-out), read
    from where the task lives (`probe.data.reading`: its root, data_dir, or the hub)."""
    picks = config.treebanks

    def read(split: str) -> list[TaggedSentence]:
        return word_records(read_task_split(task, data_dir, source, split, picks).records)

    train = read(task.training_split())
    return sample_and_hold_out(train, [s.sent_id for s in train], task, read, config,
                               "source sentences")  # fmt: skip


def sample_and_hold_out(
    train: list[Any], ids: Sequence[str], task: Task, read: Callable[[str], list[Any]],
    config: FineTuning, what: str, groups: Callable[[list[Any]], Any] | None = None,
) -> tuple[list[Any], list[Any]]:  # fmt: skip
    """Fine-tuning's source split: a seeded, genre-stratified sample of
    `max_train_sentences` records (by `ids`), then the task's dev split (`read(split)`) or a
    seeded hold-out of the sample (`probe.data.holdout`; `groups(sample)` numbers records
    that must stay on one side, e.g. pairs of one premise)."""
    if config.max_train_sentences:
        keep = sample_sentences(ids, config.max_train_sentences, config.seed)
        train = [train[i] for i in keep]
    if task.dev_split:
        return train, read(task.dev_split)
    train_idx, dev_idx = holdout(len(train), config.dev_fraction, config.seed, what,
                                 None if groups is None else groups(train))  # fmt: skip
    return [train[i] for i in train_idx], [train[i] for i in dev_idx]


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


def _collate(items: list[Encoded], pad: int, device: torch.device) -> tuple[Tensor, ...]:
    width = max(len(e.ids) for e in items)
    ids = np.full((len(items), width), pad, dtype=np.int64)
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


def _linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """The rate's factor at `step`: 0 -> 1 over the warmup steps, then 1 -> 0 at `total`
    (the schedule of transformers' get_linear_schedule_with_warmup, number for number)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


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
    model: FinetuneModel, tok: Batching, train: list[Any], dev: list[Any],
    task: Task, config: FineTuning, device: torch.device, epochs: int, progress: bool = True,
    desc: str = "finetune", seed: int | None = None,
) -> Trained:  # fmt: skip
    """Train `model` (`.encoder` + `.head`: logits per token, or per pair) on one task's
    encoded items (`tok` batches them and scores dev):
    AdamW with linear warmup/decay, at most `config.max_steps` steps; the epoch with the best
    source-dev score is loaded back into `model`. `probe intermediate --finetune` calls this
    once per stage on a model whose encoder and head body were trained by earlier stages.
    `seed` orders the batches (default `config.seed`, the seed data subsets are drawn with):
    a run over several training seeds passes each one here."""
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr)
    warmup = int(config.warmup * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _linear_warmup_decay(step, warmup, total)
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    rng = np.random.default_rng(config.seed if seed is None else seed)
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
            *inputs, labels = tok.collate(chosen, device)
            with _autocast(device, config.precision):
                logits = model(*inputs)
            # (B, T, C) per token or (B, C) per pair: one row per label either way.
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
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
        dev_loss, dev_score = tok.dev_scores(model, dev, task, device, config, loss_fn)
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


def _param_groups(model: FinetuneModel, config: FineTuning) -> list[dict[str, Any]]:
    """Encoder at lr, head at head_lr; no weight decay on biases and norm weights (1-d)."""
    groups = []
    for part, lr in ((model.encoder, config.lr), (model.head, config.head_lr)):
        params = [p for p in part.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        plain = [p for p in params if p.dim() < 2]
        groups += [{"params": decay, "lr": lr, "weight_decay": config.weight_decay},
                   {"params": plain, "lr": lr, "weight_decay": 0.0}]  # fmt: skip
    return [g for g in groups if g["params"]]


def length_batches(items: Sequence[Encoded | Any], size: int) -> list[list[int]]:
    """Indices in length order (less padding), cut into batches (items with `.ids`)."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def _dev_scores(
    model: FinetuneModel, dev: list[Encoded], task: Task, pad: int, device: torch.device,
    config: FineTuning, loss_fn: nn.Module,
) -> tuple[float, float]:  # fmt: skip
    """Mean token loss and the main metric on source dev (words past max_length are skipped)."""
    model.eval()
    total_loss, n_tokens = 0.0, 0
    for batch in length_batches(dev, config.batch_size * 2):
        ids, mask, labels = _collate([dev[i] for i in batch], pad, device)
        logits = model(ids, mask)  # evaluation runs in float32, whatever trained
        n = int((labels != IGNORE_INDEX).sum())
        total_loss += float(loss_fn(logits.float().flatten(0, 1), labels.flatten())) * n
        n_tokens += n
    uniform = np.full(len(task.labels), 1.0 / len(task.labels))
    probs = word_probabilities(model, dev, uniform, pad, device, config)
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
def word_probabilities(
    model: FinetuneModel, items: list[Encoded], prior: np.ndarray, pad: int,
    device: torch.device, config: FineTuning,
) -> np.ndarray:  # fmt: skip
    """Class probabilities per word (words, classes), read at each word's first subword.

    Words past max_length get `prior` (the training label distribution in evaluation, so the
    prediction is the most frequent training label and counts as wrong unless it matches).
    """
    was_training = model.training
    model.eval()
    per_sentence: list[np.ndarray] = [np.empty(0)] * len(items)
    for batch in length_batches(items, config.batch_size * 2):
        ids, mask, _ = _collate([items[i] for i in batch], pad, device)
        logits = model(ids, mask)  # float32: every number reported is an fp32 evaluation
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        for row, i in enumerate(batch):
            e = items[i]
            out = np.tile(prior, (len(e.first), 1))
            kept = e.first >= 0
            out[kept] = probs[row, e.first[kept]]
            per_sentence[i] = out
    model.train(was_training)
    return np.concatenate(per_sentence).astype(np.float64)

"""Fine-tuning an encoder and a head end to end on sentence pairs (XNLI, PAWS-X).

A pair is encoded with the tokenizer's own pair template (`tokenizer(a, b, truncation=True,
max_length=...)`: `[CLS] a [SEP] b [SEP]` for BERT, `<s> a </s></s> b </s>` for XLM-R
vocabularies), with token type ids where the tokenizer makes them, so the encoder sees a pair
exactly as XTREME's sequence classification feeds it. The model is the encoder and a head
on the fused sequence: XTREME's baseline (the last layer's first row, `[CLS]`, through dropout
and a linear classifier) or the DLFA head at sentence level (the AIF gate per token, its
global branch pooled over the whole pair, the classifier on the fused first row). Training
is `probe.train.finetune.train_model`, the loop word tasks use; this module supplies the
batches and the dev score (`PairTokenizer`, a `Batching`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from probe.data.alignment import pad_id
from probe.data.holdout import premise_groups
from probe.data.reading import read_task_split
from probe.data.sources.records import TextPair
from probe.data.tasks import Task
from probe.errors import ProbeError
from probe.heads.dlfa import DLFAHead, pool
from probe.heads.linear import LinearProbe
from probe.heads.registry import PAIR_POOLS
from probe.train.finetune import FinetuneModel, FineTuning, length_batches, sample_and_hold_out

# XTREME's classifier dropout (BERT's hidden_dropout_prob), as in DLFAHead.
DROPOUT = 0.1


@dataclass
class EncodedPair:
    """One pair as model input: ids in the tokenizer's pair template, token type ids (None
    where the tokenizer makes none), the gold label id, and whether it was cut to fit."""

    ids: np.ndarray
    types: np.ndarray | None
    label: int
    truncated: bool


class PairTokenizer:
    """Pairs -> ids with the tokenizer's own pair template, truncated to max_length; the
    `Batching` that `train_model` reads pairs through."""

    def __init__(self, tokenizer: Any, max_length: int, labels: tuple[str, ...]) -> None:
        specials = int(tokenizer.num_special_tokens_to_add(pair=True))
        if max_length <= specials + 1:
            raise ProbeError(f"max_length {max_length} leaves no room for a pair between "
                             f"{specials} special tokens")  # fmt: skip
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.specials = specials
        self.pad_id = pad_id(tokenizer)
        self.with_types = "token_type_ids" in tokenizer.model_input_names
        self.label_id = {name: i for i, name in enumerate(labels)}

    def encode(self, pairs: Sequence[TextPair]) -> list[EncodedPair]:
        """Every pair through `tokenizer(a, b, truncation=True, max_length=...)` (the
        tokenizer's longest-first truncation); a pair whose full length (both texts' subwords
        and the template's special tokens) exceeds max_length is marked truncated."""
        if not pairs:
            return []
        a, b = [p.text_a for p in pairs], [p.text_b for p in pairs]
        enc = self.tokenizer(a, b, truncation=True, max_length=self.max_length)
        types = enc.get("token_type_ids") if self.with_types else None
        plain = self.tokenizer(a + b, add_special_tokens=False)["input_ids"]
        out = []
        for i, pair in enumerate(pairs):
            if pair.label is None:
                raise ProbeError(f"pair {pair.pair_id} has no label: it can neither train nor "
                                 "be scored")  # fmt: skip
            full = len(plain[i]) + len(plain[len(pairs) + i]) + self.specials
            ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
            kinds = None if types is None else np.asarray(types[i], dtype=np.int64)
            out.append(EncodedPair(ids, kinds, self.label_id[pair.label], full > self.max_length))
        return out

    def collate(self, items: list[EncodedPair], device: torch.device) -> tuple[Tensor, ...]:
        """(ids, mask[, token types], labels), right-padded to the batch's longest pair."""
        width = max(len(e.ids) for e in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        types = np.zeros((len(items), width), dtype=np.int64)
        for row, e in enumerate(items):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
            if e.types is not None:
                types[row, : len(e.types)] = e.types
        labels = np.asarray([e.label for e in items], dtype=np.int64)
        arrays = (ids, mask, types, labels) if self.with_types else (ids, mask, labels)
        return tuple(torch.from_numpy(x).to(device) for x in arrays)

    def dev_scores(
        self, model: FinetuneModel, dev: list[EncodedPair], task: Task, device: torch.device,
        config: FineTuning, loss_fn: nn.Module,
    ) -> tuple[float, float]:  # fmt: skip
        """Mean loss per pair and accuracy on source dev (a pair task's metric)."""
        probs = pair_probabilities(model, self, dev, device, config)
        gold = np.asarray([e.label for e in dev], dtype=np.int64)
        picked = np.clip(probs[np.arange(len(gold)), gold], 1e-12, None)
        return float(-np.log(picked).mean()), float(np.mean(probs.argmax(axis=1) == gold))


class PairModel(FinetuneModel):
    """The encoder and a pair head: logits (B, C) per pair.

    fuse_layer None: the last layer pooled (`sentence_pool`: "first" is the [CLS] row,
    XTREME's; "mean" the masked mean over the pair's tokens) through dropout and a linear
    classifier. fuse_layer k: the DLFA head at sentence level on (last layer, layer k), the
    same pooling after the fusion, so `--fuse-layer <last>` is the baseline's function.
    """

    def __init__(
        self, encoder: nn.Module, head: nn.Module, fuse_layer: int | None, sentence_pool: str
    ) -> None:
        super().__init__(encoder, head, fuse_layer)
        if sentence_pool not in PAIR_POOLS:
            raise ProbeError(f"sentence pooling {sentence_pool!r} is not one of "
                             f"{', '.join(PAIR_POOLS)}")  # fmt: skip
        self.sentence_pool = sentence_pool

    def forward(  # type: ignore[override]
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        fused = self.fuse_layer is not None
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_hidden_states=fused, **extra)  # fmt: skip
        mask = attention_mask.bool()
        if not fused:
            return self.head(pool(out.last_hidden_state, mask, self.sentence_pool))
        states = out.hidden_states
        return self.head(states[-1], states[self.fuse_layer], mask)


def pair_head(
    hidden: int, n_classes: int, fuse_layer: int | None, sentence_pool: str, reduction: int
) -> nn.Module:
    """The baseline's dropout + linear classifier, or the sentence-level DLFA head."""
    if fuse_layer is None:
        return nn.Sequential(nn.Dropout(DROPOUT), LinearProbe(hidden, n_classes))
    return DLFAHead(hidden, n_classes, reduction=reduction, dropout=DROPOUT, level="sentence",
                    sentence_pool=sentence_pool)  # fmt: skip


def labelled_pairs(records: Any) -> list[TextPair]:
    """The pairs of a split that carry a label (XTREME hides some test labels)."""
    return [p for p in records if isinstance(p, TextPair) and p.label is not None]


def source_pairs(
    task: Task, data_dir: Path | None, source: str, config: FineTuning
) -> tuple[list[TextPair], list[TextPair]]:
    """Source train (a seeded, genre-stratified sample of `max_train_sentences` pairs,
    `probe.data.subsets`) and dev: the task's dev split, or a seeded hold-out of whole
    premise groups (`probe.data.holdout`, as `probe.train.splits.train_dev` holds out cached
    pairs), so no premise is on both sides of early stopping."""

    def read(split: str) -> list[TextPair]:
        return labelled_pairs(read_task_split(task, data_dir, source, split).records)

    train = read(task.training_split())

    def premises(kept: list[TextPair]) -> np.ndarray:
        return premise_groups([p.text_a for p in kept])

    return sample_and_hold_out(train, [p.pair_id for p in train], task, read, config,
                               "source pairs", premises)  # fmt: skip


@torch.inference_mode()
def pair_probabilities(
    model: FinetuneModel, tok: PairTokenizer, items: list[EncodedPair], device: torch.device,
    config: FineTuning,
) -> np.ndarray:  # fmt: skip
    """Class probabilities per pair (pairs, classes), in float32 whatever trained."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(items), 0))
    for batch in length_batches(items, config.batch_size * 2):
        *inputs, _ = tok.collate([items[i] for i in batch], device)
        probs = torch.softmax(model(*inputs).float(), dim=-1).cpu().numpy()
        if out.shape[1] == 0:
            out = np.zeros((len(items), probs.shape[1]))
        out[batch] = probs
    model.train(was_training)
    return out.astype(np.float64)

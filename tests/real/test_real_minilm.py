"""The real pretrained MiniLM on a sample of the real UD data: extract, then `layers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from probe.cache import SplitReader
from probe.data.tasks import get_task, read_split
from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.models import minilm_dir
from probe.train import TrainConfig
from tests.helpers import cache_fields, config, extract

pytestmark = pytest.mark.real
N = 150  # sentences per split


def test_minilm_extract_and_layers_on_ud_sample(tmp_path: Path, shared_data: Path) -> None:
    kw = {"data_dir": shared_data, "cache_root": tmp_path / "cache", "max_sentences": N}
    report = extract(config(tmp_path, "minilm", compute_dtype="auto", dtype="float16", **kw))
    task = get_task("pos")
    for lang, split in (("en", "train"), ("en", "dev"), ("en", "test"), ("de", "test")):
        by_id = {s.sent_id: s for s in read_split(task, shared_data, lang, split)}
        with SplitReader.open(tmp_path / "cache", report.key, "pos", lang, split) as reader:
            # --max-sentences is a seeded random sample of whole sentences, not a prefix
            ids = reader.strings("sentence_ids")
            assert len(ids) == N and len(set(ids)) == N
            sentences = [by_id[i] for i in ids]
            assert reader.strings("words") == [w for s in sentences for w in s.words]
            assert reader.n_layers == 7
            layer = reader.layer(6)
            assert layer.shape == (sum(len(s.words) for s in sentences), 384)
            assert layer.dtype == np.float16
            if (lang, split) == ("en", "dev"):
                cached, offsets, first_sentence = layer, reader.offsets, sentences[0]
    # The cache equals a direct forward pass of its first sentence (bf16 compute -> cosine).
    words = list(first_sentence.words)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    enc = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        last = model(**enc).last_hidden_state[0].numpy()
    first = [enc.word_ids(0).index(i) for i in range(len(words))]
    direct = last[first]
    got = cached[offsets[0] : offsets[1]].astype(np.float32)
    cos = (direct * got).sum(1) / np.linalg.norm(direct, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99

    result = run_layers(
        LayersConfig(
            **cache_fields(tmp_path, "minilm", **kw),
            train=TrainConfig(max_epochs=10),
        ),  # fmt: skip
        RunOptions(tmp_path / "res", progress=False),
    )
    acc = {(r.layer, r.lang): r.value for r in result.rows
           if r.head == "linear" and r.metric == "accuracy"}  # fmt: skip
    best_en = max(v for (layer, lang), v in acc.items() if lang == "en")
    assert best_en > 0.75  # a real English encoder: POS is linearly decodable
    assert result.extract_seconds < 30  # cached: no second extraction

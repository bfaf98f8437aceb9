"""Poolings on the tiny random BERT against a direct forward pass: XTREME's sentence pooling
(special tokens included) for `tatoeba-xtreme`, and `first-content`, which must equal `first`
byte for byte on a WordPiece tokenizer (no word-boundary marker)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from probe.cache import SplitReader
from probe.errors import CacheError
from tests.helpers import SENTENCES, TATOEBA, config, extract, make_tatoeba, make_ud

EN_DEV = {"langs": ("en",), "splits": ("dev",)}


def test_tatoeba_xtreme_means_every_attended_token_specials_included(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """XTREME's evaluate_retrieval.py (pool_mask = attention_mask unless
    --pool_skip_special_token, which scripts/run_tatoeba.sh does not pass): each sentence
    alone, every layer averaged over [CLS], its pieces and [SEP]."""
    make_tatoeba(tmp_path / "data")
    report = extract(
        config(tmp_path, tiny_bert, task="tatoeba-xtreme", langs=("deu",)), progress=False
    )
    plain = extract(config(tmp_path, tiny_bert, task="tatoeba", langs=("deu",)), progress=False)
    assert plain.key == report.key  # one cache key; the task's directory tells them apart
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    root = tmp_path / "cache"
    with (
        SplitReader.open(root, report.key, "tatoeba-xtreme", "deu", "test") as reader,
        SplitReader.open(root, plain.key, "tatoeba", "deu", "test") as without,
    ):
        assert reader.attrs["pooling"] == "mean-with-specials"
        assert without.attrs["pooling"] == "mean"
        for name, texts in (("sentence_features", TATOEBA["deu"][0]),
                            ("sentence_features_b", TATOEBA["deu"][1])):  # fmt: skip
            for i in range(len(texts)):
                enc = tok(texts[i], return_tensors="pt")
                with torch.no_grad():
                    states = model(**enc, output_hidden_states=True).hidden_states
                mask = enc["attention_mask"][0].float()[:, None]
                for layer in range(3):
                    direct = (states[layer][0] * mask).sum(0) / mask.sum()
                    np.testing.assert_allclose(
                        reader.layer(layer, name)[i], direct.numpy(), atol=1e-5
                    )
                    # the subword-only mean is a different vector
                    assert not np.allclose(without.layer(layer, name)[i], direct.numpy())


def test_first_content_equals_first_on_wordpiece(tmp_path: Path, tiny_bert: Path) -> None:
    """WordPiece has no bare boundary marker: `first-content` is `first`, bit for bit, and no
    word's first piece is counted as a marker."""
    make_ud(tmp_path / "data", SENTENCES)
    first = extract(config(tmp_path, tiny_bert, pooling="first", **EN_DEV), progress=False)
    content = extract(config(tmp_path, tiny_bert, pooling="first-content", **EN_DEV),
                      progress=False)  # fmt: skip
    assert first.key != content.key  # the pooling is in the key
    root = tmp_path / "cache"
    with (
        SplitReader.open(root, first.key, "pos", "en", "dev") as a,
        SplitReader.open(root, content.key, "pos", "en", "dev") as b,
    ):
        assert b.attrs["pooling"] == "first-content"
        assert a.attrs["bare_marker_share"] == b.attrs["bare_marker_share"] == 0.0
        for layer in range(a.n_layers):
            assert a.layer(layer).tobytes() == b.layer(layer).tobytes()


def test_word_types_follow_the_tiny_berts_lowercasing(tmp_path: Path, tiny_bert: Path) -> None:
    """The tiny BERT is uncased: "The", "THE" and "the" are one stored type, its own control
    label; different words are different types. The keys are checked by `verify`."""
    from probe.analysis.control import control_labels
    from probe.cache import open_shard

    sentences = [["The", "dog", "ran"], ["THE", "house", "."], ["the", "dog", "Dog", "dogs"]]
    make_ud(tmp_path / "data", sentences)
    report = extract(config(tmp_path, tiny_bert, **EN_DEV), progress=False)
    with SplitReader.open(tmp_path / "cache", report.key, "pos", "en", "dev") as split:
        words = split.strings("words")
        types = split.word_types
    assert len(types) == len(words) == 10
    by_word = {w: int(t) for w, t in zip(words, types, strict=True)}
    assert by_word["The"] == by_word["THE"] == by_word["the"]
    assert by_word["dog"] == by_word["Dog"]
    assert len({by_word[w] for w in ("the", "dog", "ran", "house", ".", "dogs")}) == 6
    labels = control_labels(types, np.ones(17), seed=0)
    assert labels[0] == labels[3] == labels[6] and labels[1] == labels[7] == labels[8]
    (shard,) = report.shards
    with open_shard(shard.path, verify=True) as opened:
        assert opened.word_types.tolist() == types.tolist()
    with h5py.File(shard.path, "r+") as f:  # one flipped key is found, never returned
        f["word_types"][0] = types[0] + 1
    with open_shard(shard.path) as opened, pytest.raises(CacheError, match="word_types"):
        opened.word_types  # noqa: B018

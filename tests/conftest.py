"""Shared fixtures: the real data directory and a tiny random BERT built in the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PROBE_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own default cache root and file-hash memo under its tmp dir, and
    no data directory from the environment: nothing a test writes or reads by default can
    leak into another test, the developer's ./cache or ~/.cache."""
    monkeypatch.setenv("PROBE_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("PROBE_HASH_MEMO", str(tmp_path / "hash-memo.json"))
    monkeypatch.delenv("PROBE_DATA", raising=False)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny matrices run on one torch thread: on a shared busy CPU intra-op threads made
    toy training 25-30x slower, not faster. Opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    from probe.runtime.threads import limit_threads

    with limit_threads(1):
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data in ../shared/data; tests that need it skip loudly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set PROBE_TEST_DATA)")
    return SHARED_DATA


TINY_WORDS = (
    "the a an of to in and is was it he she they we you i this that on for with as at by from "
    "dog cat house tree car run ran walk walked see saw big small red green old new good bad "
    "der die das und ist ein eine haus katze hund le la les et est un une maison chat chien "
    "el los las es una casa gato perro bu bir ve ev kedi köpek . , ! ?"
).split()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 random BERT with a small WordPiece vocabulary, saved to disk.

    Words outside the vocabulary split into single-character pieces, so multi-subword words
    (and the pooling over them) are exercised on ordinary test sentences.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    chars = sorted({c for w in TINY_WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, *chars]
    vocab += [f"##{c}" for c in chars]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.tokenize("the zebra") == ["the", "z", "##e", "##b", "##r", "##a"]
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory

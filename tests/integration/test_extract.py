"""Extraction on a tiny random BERT: shapes, pooling against a direct forward pass, windows,
resume after a crash, and cache invalidation when the source changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from probe import cache as store
from probe.cache import SplitReader, open_shard
from probe.errors import DataError, ProbeError
from probe.extract import (
    Encoder,
)
from probe.extract.batching import split
from probe.extract.blocks import FIRST_BLOCK_SHARE, block_ranges
from probe.extract.plan import shard_ranges
from probe.extract.windows import window_owners
from tests.helpers import SENTENCES, TAGS, config, conllu_text, extract, make_ud


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_ud(tmp_path / "data")


def direct_word_features(model_dir: Path, words: list[str], pooling: str) -> np.ndarray:
    """What the cache must hold: every hidden state, pooled over each word's subwords."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        states = torch.stack(model(**enc, output_hidden_states=True).hidden_states)[:, 0]
    word_ids = enc.word_ids(0)
    out = []
    for w in range(len(words)):
        pos = [i for i, x in enumerate(word_ids) if x == w]
        vecs = states[:, pos]
        pooled = {"first": vecs[:, 0], "last": vecs[:, -1], "mean": vecs.mean(1)}[pooling]
        out.append(pooled.numpy())
    return np.stack(out, axis=1)


def test_shapes_offsets_labels(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    report = extract(config(tmp_path, tiny_bert), progress=False)
    paths = sorted(s.path.relative_to(report.cache_dir).as_posix() for s in report.shards)
    assert paths == ["pos/de/test.h5", "pos/en/dev.h5", "pos/en/test.h5", "pos/en/train.h5"]
    with SplitReader.open(tmp_path / "cache", report.key, "pos", "en", "dev") as split:
        n_words = sum(len(s) for s in SENTENCES)
        assert split.n_layers == 3  # embeddings + 2 layers
        layer = split.layer(2)
        assert layer.shape == (n_words, 64) and layer.dtype == np.float32
        assert np.all(np.abs(layer).sum(axis=1) > 0)  # no silent zero rows
        assert split.offsets.tolist() == np.cumsum([0] + [len(s) for s in SENTENCES]).tolist()
        names = split.label_names
        assert [names[i] for i in split.labels[:7]] == TAGS
        assert split.strings("words")[:3] == ["the", "dog", "ran"]
        assert split.strings("sentence_ids")[0] == "s0"


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_pooling_matches_direct_forward(
    tmp_path: Path, tiny_bert: Path, data: Path, pooling: str
) -> None:
    report = extract(config(tmp_path, tiny_bert, pooling=pooling, langs=("en",)), progress=False)
    with SplitReader.open(tmp_path / "cache", report.key, "pos", "en", "dev") as split:
        cached = np.stack([split.layer(i) for i in range(split.n_layers)])
        offsets = split.offsets
    for n, words in enumerate(SENTENCES):
        expected = direct_word_features(tiny_bert, words, pooling)
        got = cached[:, offsets[n] : offsets[n + 1]]
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
    if pooling != "first":  # multi-subword words make the poolings differ
        first = extract(config(tmp_path, tiny_bert, pooling="first", langs=("en",)), progress=False)
        with SplitReader.open(tmp_path / "cache", first.key, "pos", "en", "dev") as split:
            assert not np.allclose(split.layer(2), cached[2])


def test_float16_storage_and_bf16_compute(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    exact = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    half = extract(
        config(tmp_path, tiny_bert, langs=("en",), dtype="float16", compute_dtype="bfloat16"),
        progress=False,
    )
    assert half.key != exact.key
    with SplitReader.open(tmp_path / "cache", exact.key, "pos", "en", "dev") as a:
        ref = a.layer(2)
    with SplitReader.open(tmp_path / "cache", half.key, "pos", "en", "dev") as b:
        got = b.layer(2)
        assert got.dtype == np.float16
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99


def test_long_sentence_uses_overlapping_windows(tmp_path: Path, tiny_bert: Path) -> None:
    long = ["the", "dog", "saw", "a", "cat", "in", "the", "big", "house"] * 8  # 72 words
    make_ud(tmp_path / "data", [long, SENTENCES[0]])
    report = extract(config(tmp_path, tiny_bert, langs=("en",), max_length=24), progress=False)
    with SplitReader.open(tmp_path / "cache", report.key, "pos", "en", "dev") as split:
        feats = split.layer(2)
        assert feats.shape[0] == len(long) + len(SENTENCES[0])  # nothing truncated
        assert np.all(np.abs(feats).sum(axis=1) > 0)
        # The first word is owned by the first window: equal to a forward pass over it.
        tok = AutoTokenizer.from_pretrained(tiny_bert)
        first_window = tok.convert_tokens_to_ids(tok.tokenize(" ".join(long)))[:22]
        ids = torch.tensor([[tok.cls_token_id, *first_window, tok.sep_token_id]])
        model = AutoModel.from_pretrained(tiny_bert).eval()
        with torch.no_grad():
            direct = model(ids, output_hidden_states=True).hidden_states[2][0, 1].numpy()
        np.testing.assert_allclose(feats[0], direct, atol=2e-5)


def test_window_ownership_covers_every_subword_once(tiny_bert: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    enc = Encoder(model, tok, torch.device("cpu"), torch.float32, 16, None)
    ids = np.arange(100, 137)
    unit = enc.units.windowed(ids, np.arange(37), 37)
    assert len(unit.windows) > 2 and all(len(w) <= 16 for w in unit.windows)
    owned = np.concatenate([t[t >= 0] for t in unit.targets])
    assert sorted(owned.tolist()) == list(range(37))


def _owners_by_scoring_every_window(starts: list[int], window: int, n: int) -> np.ndarray:
    """The reference ownership: every window scored for every position (windows x n)."""
    pos = np.arange(n)[None, :]
    begin = np.asarray(starts)[:, None]
    inside = (pos >= begin) & (pos < begin + window)
    context = np.minimum(pos - begin, begin + window - 1 - pos)
    return np.where(inside, context, -1).argmax(axis=0)


@pytest.mark.parametrize("window, stride", [(16, 8), (16, 1), (16, 5), (17, 16), (510, 255)])
def test_window_owners_equal_scoring_every_window(window: int, stride: int) -> None:
    """Ownership looks only at the windows covering each position; it must pick the window
    (ties included) that scoring every window picked, or features would move."""
    for n in (window + 1, window + stride, 3 * window + 7, 2000):
        starts = [0]
        while starts[-1] + window < n:
            starts.append(min(starts[-1] + stride, n - window))
        got = window_owners(np.asarray(starts), window, n)
        np.testing.assert_array_equal(got, _owners_by_scoring_every_window(starts, window, n))


def test_split_keeps_every_word_in_one_piece(tiny_bert: Path) -> None:
    """A piece ends only where no word has subwords owned on both sides of the cut."""
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    enc = Encoder(model, tok, torch.device("cpu"), torch.float32, 16, None)
    # words of 1 to 4 subwords, so some straddle the boundary between two windows' rows
    sizes = np.resize([1, 3, 2, 4, 1, 1], 150)
    word_ids = np.repeat(np.arange(len(sizes)), sizes)
    unit = enc.units.windowed(np.arange(len(word_ids)) + 100, word_ids, len(sizes))
    budget = 3 * unit.width
    pieces = split(unit, budget)
    assert len(pieces) > 3
    windows = [w for p in pieces for w in p.windows]
    assert all(a is b for a, b in zip(windows, unit.windows, strict=True))  # in order, all
    rows = [set(np.concatenate(p.targets).tolist()) - {-1} for p in pieces]
    assert set().union(*rows) == set(range(len(sizes)))
    assert sum(len(r) for r in rows) == len(sizes)  # no word in two pieces
    assert sum(p.progress for p in pieces) == unit.progress
    sizes_seen = {len(p.windows) for p in pieces[:-1]}
    assert 3 in sizes_seen and sizes_seen - {3}  # some cuts moved off a straddling word
    assert split(unit, len(unit.windows) * unit.width) == [unit]


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_long_sentence_in_pieces_equals_one_batch(
    tmp_path: Path, tiny_bert: Path, pooling: str
) -> None:
    """A sentence of many windows runs as several batches; its features must be those of
    one batch of all its windows, bit for bit (words straddle window boundaries here)."""
    words = ["the", "zebra", "saw", "xylophonically", "a", "quixotic", "cat", "!"] * 40
    make_ud(tmp_path / "data", [words, words[5:200]])
    layers = []
    for budget in (1 << 20, 100, 24):  # one batch; pieces of 4 windows; one window each
        report = extract(
            config(tmp_path, tiny_bert, langs=("en",), splits=("dev",), max_length=24,
                   pooling=pooling, batch_tokens=budget, cache_root=tmp_path / f"c{budget}"),
            progress=False,
        )  # fmt: skip
        with SplitReader.open(tmp_path / f"c{budget}", report.key, "pos", "en", "dev") as split:
            layers.append(np.stack([split.layer(i) for i in range(split.n_layers)]))
        if budget == 1 << 20:
            assert len(report.extracted) == 1
    assert layers[0].shape[1] == len(words) + 195
    for other in layers[1:]:
        np.testing.assert_array_equal(other, layers[0])


def test_words_without_subwords_become_unk(tmp_path: Path, tiny_bert: Path) -> None:
    make_ud(tmp_path / "data", [["the", "\u200b", "dog"], SENTENCES[0]])
    report = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    with SplitReader.open(tmp_path / "cache", report.key, "pos", "en", "dev") as split:
        assert split.layer(2).shape[0] == 3 + len(SENTENCES[0])
        assert np.abs(split.layer(2)[1]).sum() > 0
        assert split.shards[0].attrs["empty_words"] == 1


def test_rerun_makes_no_encoder_call(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = extract(config(tmp_path, tiny_bert), progress=False)
    assert len(first.extracted) == 4  # en train, dev, test; de test

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the encoder must not be loaded for a cached run")

    monkeypatch.setattr("probe.extract.run.load_encoder", boom)
    second = extract(config(tmp_path, tiny_bert), progress=False)
    assert second.key == first.key and not second.extracted and len(second.shards) == 4


def test_resume_after_crash_equals_clean_run(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = extract(config(tmp_path, tiny_bert, cache_root=tmp_path / "clean"), progress=False)
    calls = {"n": 0}
    real_write = store.ShardWriter.write_rows

    def crash_on_second_shard(self: store.ShardWriter, *a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill during a shard write")
        real_write(self, *a, **k)

    monkeypatch.setattr(store.ShardWriter, "write_rows", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        extract(config(tmp_path, tiny_bert), progress=False)
    monkeypatch.setattr(store.ShardWriter, "write_rows", real_write)
    leftovers = list((tmp_path / "cache").rglob("*.tmp-*"))
    assert leftovers == []  # the aborted shard left no file behind

    resumed = extract(config(tmp_path, tiny_bert), progress=False)
    assert len([s for s in resumed.shards if s.skipped]) == 1
    assert len(resumed.extracted) == 3
    for rel in ("pos/de/test.h5", "pos/en/train.h5", "pos/en/dev.h5", "pos/en/test.h5"):
        with open_shard(clean.cache_dir / rel) as a, open_shard(resumed.cache_dir / rel) as b:
            np.testing.assert_array_equal(a.layer(1), b.layer(1))


def test_changed_source_is_re_extracted(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    first = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    dev = data / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu"
    dev.write_text(conllu_text([*SENTENCES, ["one", "more"]]), encoding="utf-8")
    second = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    redone = [s.path.name for s in second.extracted]
    assert redone == ["dev.h5"]
    with open_shard(second.cache_dir / "pos/en/dev.h5") as shard:
        assert shard.n_rows == sum(len(s) for s in SENTENCES) + 2
    assert first.key == second.key


@pytest.mark.parametrize(
    "field, value",
    [("pooling", "mean"), ("max_length", 64), ("dtype", "float32"), ("compute_dtype", "bfloat16"),
     ("window_stride", 7), ("format_version", 99), ("model_identity", "other")],
)  # fmt: skip
def test_cache_key_changes_with_every_field(field: str, value: object) -> None:
    base = store.CacheSpec("abc", "first", 512, 0, "float16", "float32", slug="m")
    changed = store.CacheSpec(**{**base.__dict__, field: value})
    assert changed.key() != base.key()
    assert store.CacheSpec(**base.__dict__).key() == base.key()


def test_changed_model_weights_change_the_key(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-model"
    shutil.copytree(tiny_bert, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    a = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    b = extract(config(tmp_path, other, langs=("en",)), progress=False)
    assert a.key.split("-")[-1] != b.key.split("-")[-1]


def test_bad_input_errors(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    with pytest.raises(ProbeError, match="no files for language 'xx'.*found: de, en"):
        extract(config(tmp_path, tiny_bert, langs=("xx",)), progress=False)
    with pytest.raises(DataError, match="missing split 'train'"):
        extract(config(tmp_path, tiny_bert, langs=("de",), splits=("train",)), progress=False)
    with pytest.raises(ProbeError, match="does not exist"):
        extract(config(tmp_path, tiny_bert, model=str(tmp_path / "nope")), progress=False)
    with pytest.raises(ProbeError, match="pooling must be one of"):
        config(tmp_path, tiny_bert, pooling="max")


def test_shard_ranges() -> None:
    assert shard_ranges([3, 3, 3], 6) == [(0, 2), (2, 3)]
    assert shard_ranges([10], 4) == [(0, 1)]  # one record never splits


def test_block_ranges_start_a_shard_with_a_short_block() -> None:
    rows = [2] * 100  # 200 rows in blocks of 80; the first holds 80 * FIRST_BLOCK_SHARE rows
    short = int(80 * FIRST_BLOCK_SHARE) // 2
    assert 0 < short < 40
    blocks = block_ranges(rows, 80)
    assert blocks[0] == (0, short)
    assert blocks[1:] == [(lo + short, hi + short) for lo, hi in shard_ranges(rows[short:], 80)]
    assert block_ranges(rows[:4], 80) == [(0, 4)]  # all of it fits the short one
    assert block_ranges([50, 1], 80) == [(0, 1), (1, 2)]  # a record never splits


def test_multiple_shards_read_as_one(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    one = extract(config(tmp_path, tiny_bert, langs=("en",), cache_root=tmp_path / "a"), False)
    many = extract(
        config(tmp_path, tiny_bert, langs=("en",), cache_root=tmp_path / "b", shard_rows=10), False
    )
    assert len(many.shards) > len(one.shards)
    with (
        SplitReader.open(tmp_path / "a", one.key, "pos", "en", "dev") as a,
        SplitReader.open(tmp_path / "b", many.key, "pos", "en", "dev") as b,
    ):
        # Batches differ in padding width across shard layouts: equal up to float rounding.
        np.testing.assert_allclose(a.layer(2), b.layer(2), atol=1e-5)
        # each shard read straight into its rows: the same bits as joining the shards' layers
        np.testing.assert_array_equal(b.layer(2), np.concatenate([s.layer(2) for s in b.shards]))
        first = b.shards[0]
        with pytest.raises(ValueError, match="not into"):
            first.layer(2, out=np.empty((first.n_rows + 1, first.hidden), first.layer(2).dtype))
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_corrupt_shard_is_detected(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    from probe.errors import CacheError

    report = extract(config(tmp_path, tiny_bert, langs=("en",)), progress=False)
    path = report.cache_dir / "pos/en/dev.h5"
    with open_shard(path) as shard:
        offset = shard.dataset("features").id.get_offset()
    raw = bytearray(path.read_bytes())
    raw[offset + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="corrupt.*probe cache rm"):
        open_shard(path, verify=True)


def test_small_kernel_caches_sets_then_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from probe.runtime.precision import KERNEL_CACHE_VARIABLES, small_kernel_caches

    monkeypatch.delenv(KERNEL_CACHE_VARIABLES[0], raising=False)
    monkeypatch.setenv(KERNEL_CACHE_VARIABLES[1], "7")  # a user's own choice is kept
    with small_kernel_caches(1):
        assert os.environ[KERNEL_CACHE_VARIABLES[0]] == "1"
        assert os.environ[KERNEL_CACHE_VARIABLES[1]] == "7"
    assert KERNEL_CACHE_VARIABLES[0] not in os.environ  # grid workers get the defaults
    assert os.environ[KERNEL_CACHE_VARIABLES[1]] == "7"

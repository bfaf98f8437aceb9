"""A pair task's token view (`<task>@tokens`): every token of the joint encoding cached per
layer with its segment, equal to a direct forward of the pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from probe.cache import SplitReader
from probe.data.tasks import get_task, token_view
from probe.errors import ProbeError
from probe.extract import ensure_cached
from tests.helpers import config, make_pawsx


def _setup(tmp_path: Path, tiny_bert: Path, **kw: object):  # type: ignore[no-untyped-def]
    make_pawsx(tmp_path / "data")
    return config(tmp_path, tiny_bert, task="pawsx@tokens", langs=("en", "de"), **kw)


def test_token_view_is_a_pair_task_seen_as_tokens() -> None:
    view = get_task("pawsx@tokens")
    base = get_task("pawsx")
    assert view.level == "pair-tokens" and view.token_length == 128
    assert (view.labels, view.train_split, view.eval_split) == (
        base.labels, base.train_split, base.eval_split)  # fmt: skip
    assert token_view(view) is view
    with pytest.raises(ProbeError, match="only pair tasks have a token view"):
        token_view(get_task("pos"))


def test_pair_token_features_equal_a_direct_forward(tmp_path: Path, tiny_bert: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    setup = _setup(tmp_path, tiny_bert)
    handle = ensure_cached(setup.spec, setup.request, setup.options, setup.paths, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with SplitReader.open(handle.root, handle.key, "pawsx@tokens", "de", "test") as reader:
        offsets, labels, segments = reader.offsets, reader.labels, reader.segments
        a, b = reader.strings("text_a"), reader.strings("text_b")
        layers = [reader.layer(i) for i in range(reader.n_layers)]
        assert reader.attrs["level"] == "pair-tokens" and reader.attrs["token_length"] == 128
    assert len(labels) == len(offsets) - 1 == 12
    assert sorted(set(labels.tolist())) == [0, 1]
    for i in (0, 5, 11):
        enc = tokenizer(a[i], b[i], return_tensors="pt")
        with torch.no_grad():
            states = model(**enc, output_hidden_states=True).hidden_states
        lo, hi = offsets[i], offsets[i + 1]
        assert hi - lo == enc["input_ids"].shape[1]
        for layer, state in enumerate(states):
            np.testing.assert_allclose(layers[layer][lo:hi], state[0].numpy(), atol=1e-5)
        # segments: the tokenizer's own sequence ids, -1 on [CLS]/[SEP]
        want = [-1 if s is None else s for s in enc.sequence_ids(0)]
        assert segments[lo:hi].tolist() == want
        assert want[0] == -1 and 0 in want and 1 in want


def test_token_type_ids_reach_the_encoder(tmp_path: Path, tiny_bert: Path) -> None:
    """Side b's tokens are encoded with token type 1 (BERT's segment embedding): swapping
    the sides changes every token's vector, not only their order."""
    setup = _setup(tmp_path, tiny_bert)
    handle = ensure_cached(setup.spec, setup.request, setup.options, setup.paths, progress=False)
    with SplitReader.open(handle.root, handle.key, "pawsx@tokens", "en", "dev") as reader:
        emb, seg, offsets = reader.layer(0), reader.segments, reader.offsets
    # Layer 0 is embeddings: equal words in the two segments differ by the type embedding.
    lo, hi = offsets[0], offsets[1]
    row_a = np.flatnonzero(seg[lo:hi] == 0)[0] + lo
    row_b = np.flatnonzero(seg[lo:hi] == 1)[0] + lo
    assert not np.allclose(emb[row_a], emb[row_b])


def test_long_pairs_are_cut_to_the_token_length(tmp_path: Path, tiny_bert: Path) -> None:
    data = make_pawsx(tmp_path / "data")
    en = data / "xtreme" / "pawsx" / "en" / "dev-en.tsv"
    long = " ".join(["the dog ran"] * 40)
    en.write_text(en.read_text() + f"{long}\t{long}\t1\n")
    setup = config(tmp_path, tiny_bert, task="pawsx@tokens", langs=("en",))
    handle = ensure_cached(setup.spec, setup.request, setup.options, setup.paths, progress=False)
    with SplitReader.open(handle.root, handle.key, "pawsx@tokens", "en", "dev") as reader:
        lengths = np.diff(reader.offsets)
        assert int(lengths[-1]) == 128 and lengths[:-1].max() < 128
        assert reader.attrs["truncated"] == 1


def test_extract_command_takes_a_token_view(tmp_path: Path, tiny_bert: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    make_pawsx(tmp_path / "data")
    out = CliRunner().invoke(cli, [
        "extract", "--model", str(tiny_bert), "--task", "pawsx@tokens", "--langs", "en,de",
        "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert list((tmp_path / "cache").glob("*/pawsx@tokens/de/test.h5"))


def test_a_token_view_in_several_shards_counts_rows_and_cuts_once(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """shard_rows counts tokens for a view (token_length a pair): 5 pairs a shard here; the
    split reads back as one, and a cut pair is counted once whichever shard holds it."""
    data = make_pawsx(tmp_path / "data")
    en = data / "xtreme" / "pawsx" / "en" / "dev-en.tsv"
    long = " ".join(["the dog ran"] * 40)
    en.write_text(en.read_text() + f"{long}\t{long}\t1\n")
    setup = config(tmp_path, tiny_bert, task="pawsx@tokens", langs=("en",), shard_rows=5 * 128)
    handle = ensure_cached(setup.spec, setup.request, setup.options, setup.paths, progress=False)
    shards = sorted(handle.directory.glob("pawsx@tokens/en/dev-*.h5"))
    assert len(shards) == 5  # 25 pairs, 5 a shard
    with SplitReader.open(handle.root, handle.key, "pawsx@tokens", "en", "dev") as reader:
        offsets, labels, segments = reader.offsets, reader.labels, reader.segments
        assert len(labels) == 25 and offsets[-1] == len(segments) == reader.layer(1).shape[0]
        assert (segments[offsets[:-1]] == -1).all()  # every pair starts at its [CLS]
        assert sum(s.attrs["truncated"] for s in reader.shards) == 1
    single = config(tmp_path / "one", tiny_bert, task="pawsx@tokens", langs=("en",),
                    data_dir=data)  # fmt: skip
    one = ensure_cached(single.spec, single.request, single.options, single.paths, progress=False)
    with SplitReader.open(one.root, one.key, "pawsx@tokens", "en", "dev") as reader:
        np.testing.assert_array_equal(reader.offsets, offsets)
        np.testing.assert_array_equal(reader.labels, labels)


def test_token_view_subsets_keep_one_label_per_pair(tmp_path: Path, tiny_bert: Path) -> None:
    """The training cap and the dev hold-out of a token view take whole pairs: rows, offsets
    and labels of the subset are those of the pairs it keeps (by premise group)."""
    from probe.train.splits import as_data, opener, train_dev

    setup = _setup(tmp_path, tiny_bert)
    handle = ensure_cached(setup.spec, setup.request, setup.options, setup.paths, progress=False)
    task = get_task("pawsx@tokens")
    open_split = opener(handle.root, handle.key, task)
    full = open_split("en", "dev")
    train, dev = train_dev(task, open_split, "en", 16, 0.25, seed=0)
    assert train.item_labels and train.pairs
    texts = full.reader.strings("text_a")
    for part in (train, dev):
        assert part.items is not None
        np.testing.assert_array_equal(part.labels, full.labels[part.items])
        assert len(part.offsets) - 1 == len(part.items)
        rows = np.concatenate([np.arange(full.offsets[i], full.offsets[i + 1])
                               for i in part.items])  # fmt: skip
        np.testing.assert_array_equal(part.rows, rows)
        data = as_data(task, part, [1])
        np.testing.assert_array_equal(data.labels, part.labels)
    assert len(train.items) + len(dev.items) <= 16
    # premise groups never straddle the hold-out
    assert not {texts[i] for i in train.items} & {texts[i] for i in dev.items}

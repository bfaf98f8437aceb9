"""MDL probing: block boundaries, code lengths, and the online code of planted features."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.mdl import (
    VOITA_FRACTIONS,
    OnlineCode,
    block_ends,
    codelength,
    sentence_block_ends,
    uniform_codelength,
)
from probe.errors import ProbeError
from probe.heads.linear import LinearProbe
from probe.heads.registry import HEADS
from probe.results.render.mdl import mdl_rows, mdl_table, plot_mdl
from probe.results.table import Table
from probe.train import PairData, TrainConfig, WordData
from probe.train.mdl import online_code

pytestmark = pytest.mark.usefixtures("one_thread")

K = 4
HIDDEN = 16


def test_block_ends_follow_voita_timesteps_on_a_hand_case() -> None:
    assert block_ends(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    # 100 examples: 0.1-1.6 % all floor to 0 and become one first block of 1 example.
    assert block_ends(100) == [1, 3, 6, 12, 25, 50, 100]
    assert block_ends(1) == [1]
    assert block_ends(10, (0.5, 1.0)) == [5, 10]


@pytest.mark.parametrize("fractions", [(), (0.5, 0.4, 1.0), (0.1, 0.5), (0.0, 1.0)])
def test_block_ends_refuse_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ProbeError):
        block_ends(100, fractions)


def test_block_ends_refuse_no_examples() -> None:
    with pytest.raises(ProbeError, match="at least one"):
        block_ends(0)


def test_sentence_block_ends_move_word_timesteps_to_the_nearest_sentence_boundary() -> None:
    # 10 sentences of 10 words: word timesteps 50 and 100 are boundaries; 25 -> 20 or 30
    # (a tie goes to the shorter prefix); the tiny ones all become the first sentence.
    sizes = [10] * 10
    assert sentence_block_ends(sizes, (0.01, 0.25, 0.5, 1.0)) == [1, 2, 5, 10]
    # A leading unlabelled sentence cannot be a block on its own.
    assert sentence_block_ends([0, 3, 3], (0.1, 1.0)) == [2, 3]
    words = np.cumsum([7, 3, 12, 1, 9, 30, 2, 8])
    ends = sentence_block_ends(np.diff(np.concatenate([[0], words])))
    assert ends[-1] == 8 and all(b > a for a, b in pairwise(ends))
    assert all(words[e - 1] >= 1 for e in ends)


def test_uniform_codelength_is_n_log2_k() -> None:
    assert uniform_codelength(1000, 17) == pytest.approx(1000 * math.log2(17))
    assert uniform_codelength(5, 2) == 5.0
    assert uniform_codelength(7, 1) == 0.0


def test_codelength_of_a_perfect_and_of_a_uniform_predictor() -> None:
    labels = np.array([0, 2, 1, 3, -100, 2])
    perfect = np.eye(K)[np.where(labels < 0, 0, labels)]
    assert codelength(perfect, labels) == 0.0
    uniform = np.full((len(labels), K), 1 / K)
    assert codelength(uniform, labels) == pytest.approx(5 * 2.0)  # 5 labelled x log2 4
    # A wrong certainty costs a bounded, large amount, not infinity.
    wrong = np.eye(K)[[1, 0, 0, 0, 0, 0]]
    assert 100 < codelength(wrong, labels) < math.inf


def test_codelength_refuses_labels_outside_the_classes() -> None:
    with pytest.raises(ProbeError, match="class ids"):
        codelength(np.full((2, K), 1 / K), np.array([0, K]))


def test_online_code_totals_and_compression() -> None:
    code = OnlineCode.from_blocks([2, 4, 8], [3.0, 1.0], n_classes=4)
    assert code.block_bits == (4.0, 3.0, 1.0)
    assert code.online_bits == 8.0 and code.uniform_bits == 16.0 and code.compression == 2.0
    assert code.n == 8 and code.online_kbits == 0.008
    with pytest.raises(ProbeError):
        OnlineCode.from_blocks([2, 4, 8], [3.0], n_classes=4)


# --- the online code of planted features ------------------------------------------------------


MEANS = 0.8 * np.random.default_rng(42).standard_normal((K, HIDDEN))


def _words(rng: np.random.Generator, n_sent: int) -> WordData:
    """Sentences of 3-12 words, uniform labels; layer 0 carries the label (one class mean
    per label under unit noise), layer 1 is pure noise."""
    lengths = rng.integers(3, 13, n_sent)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = rng.integers(0, K, offsets[-1])
    planted = MEANS[labels] + rng.standard_normal((offsets[-1], HIDDEN))
    noise = rng.standard_normal((offsets[-1], HIDDEN))
    labels[rng.random(len(labels)) < 0.05] = -100  # some unscored words ride along for free
    return WordData({0: planted.astype(np.float16), 1: noise.astype(np.float16)}, labels,
                    offsets)  # fmt: skip


CONFIG = TrainConfig(device="cpu", max_epochs=15, patience=2, lr=5e-2)


def test_a_planted_signal_layer_has_a_shorter_code_than_a_noise_layer() -> None:
    signal = _words(np.random.default_rng(0), 250)
    dev = _words(np.random.default_rng(1), 40)

    def make() -> LinearProbe:
        return LinearProbe(HIDDEN, K)

    planted = online_code(signal, dev, K, make, CONFIG, seed=0, layer=0)
    noise = online_code(signal, dev, K, make, CONFIG, seed=0, layer=1)
    n = int((signal.labels != -100).sum())
    assert planted.n == noise.n == n
    assert planted.uniform_bits == pytest.approx(n * 2.0)
    assert planted.online_bits < 0.5 * noise.online_bits
    assert planted.compression > 2.0
    assert 0.85 < noise.compression < 1.05
    assert planted.blocks[-1] == n and planted.block_bits[0] == planted.blocks[0] * 2.0
    # The order is seeded: the same seed gives the same code, another seed another one.
    again = online_code(signal, dev, K, make, CONFIG, seed=0, layer=0)
    other = online_code(signal, dev, K, make, CONFIG, seed=1, layer=0)
    assert again == planted
    assert other.online_bits != planted.online_bits


def test_online_code_on_pairs() -> None:
    rng = np.random.default_rng(2)
    n = 400
    labels = rng.integers(0, 2, n)
    a = rng.standard_normal((n, HIDDEN))
    b = a + np.where(labels[:, None] == 1, 0.1, 3.0) * rng.standard_normal((n, HIDDEN))
    data = PairData({0: a}, {0: b}, labels)
    dev = PairData({0: a[-80:]}, {0: b[-80:]}, labels[-80:])

    head = HEADS.get("linear")  # the pair probe reads [a; b; |a - b|; a * b]
    code = online_code(data, dev, 2, lambda: head.build("pair", HIDDEN, 2), CONFIG, seed=0)
    assert code.blocks == tuple(block_ends(n)) == (1, 3, 6, 12, 25, 50, 100, 200, 400)
    assert code.compression > 1.2


def test_online_code_refuses_an_ambiguous_layer_and_bad_labels() -> None:
    data = _words(np.random.default_rng(3), 20)
    with pytest.raises(ProbeError, match="pass layer="):
        online_code(data, data, K, lambda: LinearProbe(HIDDEN, K), CONFIG)
    with pytest.raises(ProbeError, match="outside"):
        online_code(data, data, 2, lambda: LinearProbe(HIDDEN, 2), CONFIG, layer=0)


# --- rendering -------------------------------------------------------------------------------


def test_mdl_table_rows_and_plot(tmp_path: Path) -> None:
    codes = {
        0: OnlineCode.from_blocks([10, 20, 40], [15.0, 20.0], 4),
        1: OnlineCode.from_blocks([10, 20, 40], [8.0, 9.0], 4),
    }
    table = mdl_table(codes)
    assert "kbits" in table and "compress" in table
    lines = table.splitlines()
    assert lines[1].split()[0] == "0"
    assert float(lines[2].split()[-1]) == pytest.approx(80 / 37, abs=0.005)
    rows = mdl_rows(codes, lang="en")
    assert {r.metric for r in rows} == {"mdl_online_kbits", "mdl_uniform_kbits",
                                        "mdl_compression"}  # fmt: skip
    assert [r.value for r in rows if r.metric == "mdl_online_kbits" and r.layers == (1,)] == [
        pytest.approx(0.037)
    ]
    # A finished run re-renders from its rows: the same table from results.csv's numbers.
    assert mdl_table(Table(rows)) == table
    path = plot_mdl(codes, tmp_path / "mdl.png", title="pos (tiny): online code per layer")
    assert path.exists() and path.stat().st_size > 1000
    twin = plot_mdl(codes, tmp_path / "twin.png", title="t", compare={"random twin": codes})
    assert twin.exists()
    assert VOITA_FRACTIONS[-1] == 1.0


def test_sentences_without_labelled_words_never_make_an_empty_block() -> None:
    """[2, 0, 5]: the empty middle sentence once gave ends 1, 2, 3 with labelled counts
    2, 2, 7 (an empty block), which the online code then refused."""
    from probe.analysis.mdl import sentence_block_ends

    sizes = np.array([2, 0, 5])
    ends = sentence_block_ends(sizes)
    counts = [int(np.cumsum(sizes)[e - 1]) for e in ends]
    assert ends[-1] == 3 and counts == sorted(set(counts))

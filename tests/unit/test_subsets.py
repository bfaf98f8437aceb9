"""Seeded random subsets (`probe.data.subsets`): seeded, genre-balanced, whole sentences."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from probe.data.sources.conllu import read_conllu
from probe.data.subsets import allocate, genre_of_id, sample_sentences
from probe.errors import ProbeError

# An EWT-like split stored in genre blocks of unequal sizes.
GENRES = {"answers": 300, "email": 400, "newsgroup": 150, "reviews": 100, "weblog": 50}
IDS = [f"{genre}-doc{i // 7}-{i:04d}" for genre, n in GENRES.items() for i in range(n)]
SIZES = np.random.default_rng(1).integers(1, 40, len(IDS))


def test_same_seed_same_ids_different_seed_different() -> None:
    a = sample_sentences(IDS, 5_000, seed=3, sizes=SIZES)
    assert np.array_equal(a, sample_sentences(IDS, 5_000, seed=3, sizes=SIZES))
    b = sample_sentences(IDS, 5_000, seed=4, sizes=SIZES)
    assert not np.array_equal(a, b)
    assert len(set(a.tolist()) ^ set(b.tolist())) > 0.5 * len(a)  # not a shifted copy


def test_a_sample_is_no_prefix_and_spans_the_file() -> None:
    keep = sample_sentences(IDS, 100, seed=0)
    assert len(keep) == 100 and not np.array_equal(keep, np.arange(100))
    assert keep.max() > 0.9 * len(IDS)  # the last genre block is reached


def test_genres_are_balanced_within_rounding() -> None:
    """Sentences: every genre gets its proportional count exactly (largest remainders)."""
    keep = sample_sentences(IDS, 200, seed=0)
    got = Counter(genre_of_id(IDS[i]) for i in keep)
    want = {g: 200 * n / len(IDS) for g, n in GENRES.items()}
    assert sum(got.values()) == 200
    assert all(abs(got[g] - want[g]) < 1 for g in GENRES), got


def test_word_budgets_keep_whole_sentences_in_proportion() -> None:
    budget = 8_000
    keep = sample_sentences(IDS, budget, seed=5, sizes=SIZES)
    assert len(set(keep.tolist())) == len(keep) and np.all(np.diff(keep) > 0)
    assert SIZES[keep].sum() <= budget
    assert SIZES[keep].sum() > budget - len(GENRES) * SIZES.max()  # one sentence per genre
    genre = np.asarray([genre_of_id(i) for i in IDS])
    total = SIZES.sum()
    for g in GENRES:
        quota = budget * SIZES[genre == g].sum() / total
        got = SIZES[keep][genre[keep] == g].sum()
        assert quota - SIZES.max() - 1 <= got <= quota + 1, (g, got, quota)


def test_everything_is_kept_when_it_fits_so_resampling_is_the_identity() -> None:
    assert sample_sentences(IDS[:10], 10, 0).tolist() == list(range(10))
    keep = sample_sentences(IDS, 3_000, seed=2, sizes=SIZES)
    ids, sizes = [IDS[i] for i in keep], SIZES[keep]
    assert sample_sentences(ids, 3_000, seed=2, sizes=sizes).tolist() == list(range(len(ids)))


def test_explicit_strata_ids_without_genre_and_tiny_budgets() -> None:
    plain = [f"s{i}" for i in range(50)]  # no genre: one stratum
    assert len(sample_sentences(plain, 7, 0)) == 7
    halves = ["a"] * 40 + ["b"] * 10
    got = Counter(halves[i] for i in sample_sentences(plain, 10, 0, strata=halves))
    assert got == {"a": 8, "b": 2}
    one = sample_sentences(plain, 1, 0, sizes=[5] * 50)  # below every sentence: keep one
    assert len(one) == 1
    with pytest.raises(ProbeError, match="budget of at least 1"):
        sample_sentences(plain, 0, 0)
    with pytest.raises(ProbeError, match="50 ids but 3 sizes"):
        sample_sentences(plain, 5, 0, sizes=[1, 2, 3])


def test_allocate_sums_to_the_budget() -> None:
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(allocate(997, [13, 400, 7, 580])) == 997


def test_genre_of_id_reads_ewt_gum_pud_and_xnli_ids() -> None:
    assert genre_of_id("weblog-juancole.com_juancole_20051126063000_ENG_20051126_063000-0001") == (
        "weblog"
    )
    assert genre_of_id("GUM_academic_art-3") == "academic"
    assert genre_of_id("n01001011") == "news"
    assert genre_of_id("fiction/dev-de.tsv:7") == "fiction"
    assert genre_of_id("dev-de.tsv:7") is None


def test_real_ewt_train_sample_matches_its_genre_mix(shared_data: Path) -> None:
    """EWT train is stored in genre blocks: a 20k-word sample keeps the file's genre mix."""
    path = next((shared_data / "ud" / "UD_English-EWT").glob("*-ud-train.conllu"))
    sents = read_conllu(path)
    ids, sizes = [s.sent_id for s in sents], [len(s.words) for s in sents]
    keep = sample_sentences(ids, 20_000, seed=0, sizes=sizes)
    words = Counter()
    for i in keep:
        words[genre_of_id(ids[i])] += sizes[i]
    every = Counter()
    for i, sent_id in enumerate(ids):
        every[genre_of_id(sent_id)] += sizes[i]
    assert set(words) == set(every) == {"answers", "email", "newsgroup", "reviews", "weblog"}
    total = sum(every.values())
    for genre, n in every.items():
        assert abs(words[genre] - 20_000 * n / total) <= 100, (genre, words[genre])
    assert 19_800 <= sum(words.values()) <= 20_000

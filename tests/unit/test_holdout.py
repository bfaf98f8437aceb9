"""The one dev hold-out (`probe.data.holdout`): the indices cached probes and fine-tuning used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.data.holdout import holdout, premise_groups
from probe.errors import ProbeError


def _old_formula(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """train_dev's and finetune._source_data's hold-out as both wrote it before."""
    order = np.random.default_rng(seed).permutation(n)
    n_dev = max(1, int(round(fraction * n)))
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])


def test_holdout_gives_the_old_indices() -> None:
    train, dev = holdout(10, 0.2, 0)
    assert dev.tolist() == [4, 6]  # default_rng(0).permutation(10) starts 4, 6
    assert train.tolist() == [0, 1, 2, 3, 5, 7, 8, 9]
    for n, fraction, seed in [(2, 0.1, 0), (5, 0.1, 7), (37, 0.25, 3), (1000, 0.1, 42)]:
        got, want = holdout(n, fraction, seed), _old_formula(n, fraction, seed)
        assert [a.tolist() for a in got] == [a.tolist() for a in want]


def test_holdout_is_a_sorted_partition_with_at_least_one_dev_item() -> None:
    train, dev = holdout(5, 0.01, 1)
    assert len(dev) == 1 and len(train) == 4
    assert sorted([*train, *dev]) == list(range(5))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(dev) > 0)


@pytest.mark.parametrize("n", [0, 1])
def test_holdout_refuses_fewer_than_two_items(n: int) -> None:
    with pytest.raises(ProbeError, match="at least 2 source sentences"):
        holdout(n, 0.1, 0, "source sentences")


def test_premise_groups_are_held_out_whole() -> None:
    """XNLI has three hypotheses per premise: no premise may sit on both sides."""
    premises = [f"Premise number {i // 3}." for i in range(300)]
    premises[4] = "  PREMISE   number 1. "  # the same premise, cased and spaced differently
    groups = premise_groups(premises)
    assert groups[4] == groups[3]
    train, dev = holdout(len(premises), 0.1, 0, "pairs", groups)
    assert sorted([*train, *dev]) == list(range(300))
    assert not set(groups[train]) & set(groups[dev])
    assert 30 <= len(dev) <= 33  # whole groups of 3, at least the requested share
    again = holdout(len(premises), 0.1, 0, "pairs", groups)
    assert [a.tolist() for a in again] == [train.tolist(), dev.tolist()]
    other = holdout(len(premises), 0.1, 1, "pairs", groups)
    assert other[1].tolist() != dev.tolist()


def test_one_premise_group_cannot_be_split() -> None:
    with pytest.raises(ProbeError, match="at least 2 groups of pairs"):
        holdout(3, 0.5, 0, "pairs", premise_groups(["same"] * 3))


def test_real_xnli_holdout_shares_no_premise(shared_data: Path) -> None:
    """Item hold-out: 461 of 462 dev premises also trained on (measured); by premise: none."""
    from probe.data.sources.pairs import read_pair_tsv

    pairs = read_pair_tsv(shared_data / "xtreme" / "xnli" / "en" / "test-en.tsv", "xnli")
    groups = premise_groups([p.text_a for p in pairs])
    assert len(set(groups.tolist())) == len(pairs) // 3
    train, dev = holdout(len(pairs), 0.1, 0, "source pairs", groups)
    assert not set(groups[train]) & set(groups[dev])
    old_train, old_dev = holdout(len(pairs), 0.1, 0, "source pairs")
    assert len(set(groups[old_train]) & set(groups[old_dev])) > 400

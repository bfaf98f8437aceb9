"""The one dev hold-out (`probe.data.holdout`): the indices cached probes and fine-tuning used."""

from __future__ import annotations

import numpy as np
import pytest

from probe.data.holdout import holdout
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

"""The one dev hold-out: a seeded share of a task's training items, when it has no dev split."""

from __future__ import annotations

import numpy as np

from probe.errors import ProbeError


def holdout(
    n_items: int, fraction: float, seed: int, what: str = "items"
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, dev indices) into `n_items` items, each sorted.

    The dev set is the first max(1, round(fraction * n_items)) of a permutation drawn from
    `numpy.random.default_rng(seed)`, so a seed names the split on any machine, and cached
    probes and fine-tuning hold out the same items. Fewer than 2 items cannot be split into
    a training and a dev set, which is refused (`what` names the items in the message).
    """
    if n_items < 2:
        raise ProbeError(f"need at least 2 {what} to hold out a dev set; got {n_items}")
    order = np.random.default_rng(seed).permutation(n_items)
    n_dev = max(1, int(round(fraction * n_items)))
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])

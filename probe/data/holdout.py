"""The one dev hold-out: a seeded share of a task's training items, when it has no dev split.

Pair tasks hold out whole premise groups: XNLI has three hypotheses per premise, so an item
split would put the same premise on both sides of early stopping (`premise_groups`). Two
premises are the same when the leakage guard would call them copies (probe.data.overlap's
`normalise`), so the hold-out and the guard agree on what "the same text" is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.data.overlap import normalise
from probe.errors import ProbeError


def holdout(
    n_items: int,
    fraction: float,
    seed: int,
    what: str = "items",
    groups: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, dev indices) into `n_items` items, each sorted.

    Without `groups`, the dev set is the first max(1, round(fraction * n_items)) of a
    permutation drawn from `numpy.random.default_rng(seed)`, so a seed names the split on any
    machine, and cached probes and fine-tuning hold out the same items. With `groups` (a
    group number per item), whole groups are held out: a seeded permutation of the groups,
    taken until the dev set has at least that many items, so no group is on both sides.
    Fewer than 2 items (or groups) cannot be split into a training and a dev set, which is
    refused (`what` names the items in the message).
    """
    if n_items < 2:
        raise ProbeError(f"need at least 2 {what} to hold out a dev set; got {n_items}")
    n_dev = max(1, int(round(fraction * n_items)))
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n_items)
        return np.sort(order[n_dev:]), np.sort(order[:n_dev])
    labels = np.asarray(groups)
    if len(labels) != n_items:
        raise ProbeError(f"hold-out: {n_items} {what} but {len(labels)} group labels")
    names, group_of = np.unique(labels, return_inverse=True)
    if len(names) < 2:
        raise ProbeError(f"need at least 2 groups of {what} to hold out a dev set; got 1")
    sizes = np.bincount(group_of, minlength=len(names))
    order = rng.permutation(len(names))
    taken = int(np.searchsorted(np.cumsum(sizes[order]), n_dev, side="left")) + 1
    taken = min(taken, len(names) - 1)  # at least one group stays for training
    dev = np.isin(group_of, order[:taken])
    return np.flatnonzero(~dev), np.flatnonzero(dev)


def premise_groups(premises: Sequence[str]) -> np.ndarray:
    """A group number per pair: pairs whose first texts normalise alike (NFKC, casefolded,
    no whitespace: `probe.data.overlap.normalise`) share one."""
    index: dict[str, int] = {}
    return np.asarray([index.setdefault(normalise(p), len(index)) for p in premises],
                      dtype=np.int64)  # fmt: skip

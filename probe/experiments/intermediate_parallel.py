"""Disjoint samples for a multilingual intermediate stage on parallel data (PAWS-X dev, XNLI).

Why: PAWS-X dev holds the same 2,000 pairs in every language, and the seeded sampler
(`probe.data.subsets.sample_sentences`) draws from ids, sizes and the seed only, so each
language's share of `pawsx:en+de+fr` would be the same pairs in three translations: N/3
distinct pairs where `pawsx` trains on N. Here one seeded permutation of the items all the
languages share is cut into consecutive slices, one per language in the stage's order, so
the stage trains on as many distinct items as its budget.

Parallel means: every language holds the same item ids once the language's own code is
masked (`dev-en.tsv:7` and `dev-de.tsv:7` are one item). Only pair tasks are checked: the
word tasks' treebanks differ per language, and their splits are extracted as capped samples.
The slices are not genre-stratified (PAWS-X has no genres).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from probe.errors import ProbeError


def parallel_key(item_id: str, lang: str) -> str:
    """The id with the language's code masked where it stands alone (`dev-de.tsv:7` ->
    `dev-{lang}.tsv:7`): equal keys across languages name one item."""
    return re.sub(rf"(?<![A-Za-z]){re.escape(lang)}(?![A-Za-z])", "{lang}", item_id)


def is_parallel(ids: Mapping[str, Sequence[str]]) -> bool:
    """Two or more languages whose items are the same (as `parallel_key` sets)."""
    keys = [{parallel_key(i, lang) for i in items} for lang, items in ids.items()]
    return len(keys) > 1 and bool(keys[0]) and all(k == keys[0] for k in keys[1:])


def disjoint_items(
    ids: Mapping[str, Sequence[str]], budgets: Mapping[str, int], seed: int
) -> dict[str, np.ndarray]:
    """{language: sorted local indices of its items}: one seeded permutation of the shared
    items, sliced in the order of `budgets` (each slice as long as the language's budget, in
    items), so no item is drawn in two languages. A language whose slice runs past the
    shared items gets fewer (the stage's `short` flag then says so)."""
    if not is_parallel(ids):
        raise ProbeError(f"disjoint_items: {', '.join(ids)} do not hold the same items")
    shared = sorted({parallel_key(i, lang) for lang, items in ids.items() for i in items})
    order = [shared[j] for j in np.random.default_rng(seed).permutation(len(shared))]
    out: dict[str, np.ndarray] = {}
    start = 0
    for lang, budget in budgets.items():
        mine = set(order[start : start + budget])
        start += budget
        local = [k for k, i in enumerate(ids[lang]) if parallel_key(i, lang) in mine]
        out[lang] = np.asarray(local, dtype=np.int64)
    return out


def distinct_items(ids: Mapping[str, Sequence[str]], parallel: bool) -> int:
    """How many different items a stage trains on: on parallel data a translation of an
    item already counted is not another item."""
    if not parallel:
        return sum(len(items) for items in ids.values())
    return len({parallel_key(i, lang) for lang, items in ids.items() for i in items})

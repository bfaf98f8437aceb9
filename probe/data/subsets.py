"""Seeded random subsets of whole sentences (or pairs), stratified by genre where ids carry it.

Why not a file prefix: EWT and XNLI are stored in genre blocks, so the first N sentences of
a file are one or two genres, and any comparison across subset sizes or languages then
confounds size (or diversity) with genre. Every cap of the toolkit (`--max-train-words`,
`--max-sentences`, calibration's and domain-shift's size matching, fine-tuning's
`--max-train-sentences`) draws its subset here.

The sample is a function of the items' ids, sizes and strata, the budget and the seed only,
so extraction (from the records) and training (from the cached split) draw the same one;
and when everything fits the budget, everything is kept, so sampling a sample again with
the same budget is the identity: training on a capped extraction reads all of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from probe.data.sources.conllu import genre_of
from probe.errors import ProbeError

# XNLI's genres (the `genre` column of _myxnli/my.genre.<split>.tsv), carried as an id prefix
# `<genre>/<file>:<line>` by the XNLI reader.
XNLI_GENRES = ("facetoface", "fiction", "government", "letters", "nineeleven", "oup", "slate",
               "telephone", "travel", "verbatim")  # fmt: skip
_XNLI_GENRE = re.compile(rf"({'|'.join(XNLI_GENRES)})/")


def genre_of_id(sent_id: str) -> str | None:
    """The genre an id encodes: EWT (`weblog-…`), GUM (`GUM_academic_…`), PUD (`n…`/`w…`),
    XNLI (`fiction/…`); None for ids that carry none."""
    if m := _XNLI_GENRE.match(sent_id):
        return m.group(1)
    return genre_of({"sent_id": sent_id})


def sample_sentences(
    ids: Sequence[str],
    budget: int,
    seed: int,
    sizes: Sequence[int] | np.ndarray | None = None,
    strata: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Sorted indices of a seeded random sample of whole items totalling at most `budget`.

    `sizes` are the items' sizes in the budget's unit (words per sentence; None: one per
    item, so `budget` counts sentences or pairs). `strata` default to the genres the ids
    encode (`genre_of_id`); with two or more strata the budget is allocated in proportion to
    each stratum's total size (largest remainders, so the quotas sum to the budget), and each
    stratum keeps the longest prefix of its own seeded permutation that fits its quota. Items
    without a stratum form one stratum of their own. Everything is kept when the total fits;
    at least one item is always kept (a budget below the smallest sentence still trains).
    """
    n = len(ids)
    weights = np.ones(n, dtype=np.int64) if sizes is None else np.asarray(sizes, dtype=np.int64)
    if len(weights) != n:
        raise ProbeError(f"sample_sentences: {n} ids but {len(weights)} sizes")
    if budget < 1:
        raise ProbeError(f"a subset needs a budget of at least 1; got {budget}")
    if n == 0 or int(weights.sum()) <= budget:
        return np.arange(n, dtype=np.int64)
    labels = [genre_of_id(i) for i in ids] if strata is None else list(strata)
    if len(labels) != n:
        raise ProbeError(f"sample_sentences: {n} ids but {len(labels)} strata")
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault("" if label is None else str(label), []).append(index)
    names = sorted(groups)
    members = [np.asarray(groups[name], dtype=np.int64) for name in names]
    quotas = allocate(budget, [int(weights[m].sum()) for m in members])
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for group, quota in zip(members, quotas, strict=True):
        order = group[rng.permutation(len(group))]
        keep = int(np.searchsorted(np.cumsum(weights[order]), quota, side="right"))
        chosen.append(order[:keep])
    picked = np.concatenate(chosen)
    if len(picked) == 0:  # every quota is below its stratum's sentences: keep one sentence
        largest = members[int(np.argmax([len(m) for m in members]))]
        picked = largest[np.random.default_rng(seed).permutation(len(largest))[:1]]
    return np.sort(picked)


def allocate(budget: int, totals: Sequence[int]) -> list[int]:
    """Integer quotas proportional to `totals` that sum to `budget` (largest remainders;
    ties go to the earlier stratum)."""
    total = sum(totals)
    exact = [budget * t / total for t in totals]
    quotas = [int(x) for x in exact]
    spare = budget - sum(quotas)
    for i in sorted(range(len(totals)), key=lambda i: (-(exact[i] - quotas[i]), i))[:spare]:
        quotas[i] += 1
    return quotas


def sample_tag(seed: int, budget: int, unit: str = "") -> str:
    """The source-hash suffix naming a sample: `:sample<seed>-<budget><unit>` (`w`: words)."""
    return f":sample{seed}-{budget}{unit}"

"""Paired bootstrap intervals for scores and differences, over items and seeds.

What the interval is of. A reported difference is Δ = mean over languages of (mean over A's
seeds of A's score − mean over B's seeds of B's score), each score the exact metric of a
language's evaluation items (probe.analysis.item_scores). Two things make it uncertain:
which items the test set happens to hold, and which training seeds were drawn. One bootstrap
replicate redraws both, hierarchically (Davison & Hinkley 1997, §3.8):

- items: each language's items are drawn with replacement, with the *same* draw for A and B
  and for every seed (paired: A and B are scored on the same replicate test set, so the item
  difficulty both share cancels, as in Koehn 2004 and Berg-Kirkpatrick et al. 2012);
- seeds: A's seeds are drawn with replacement, and B's independently (a seed of one head is
  not a seed of the other), once per replicate for all languages (one trained head is scored
  on every language, so its seed is shared across them).

The interval is the percentile interval of the replicate Δs (1,000 by default); it "excludes
0" when both ends lie on one side. With one seed it is the plain paired item bootstrap. With
few seeds the seed level is a crude resample (3 seeds give 10 distinct multisets): the sd over
seeds is reported beside it in every table, so a reader sees both.

Languages are resampled independently of each other; an average over languages is an average
of fixed languages (the languages asked for are not treated as a sample of all languages;
probe.analysis.crosslingual resamples languages where that is the question).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from probe.analysis.item_scores import metric_from_sums

N_BOOT = 1000
WEIGHTS_BYTES = 256 * 2**20  # replicate draws kept in memory (see PairedBootstrap.weights)
LEVEL = 0.95

# Per language, the item statistics of each seed of one system: {lang: [(items, columns)]}.
Systems = Mapping[str, Sequence[np.ndarray]]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


class PairedBootstrap:
    """Bootstrap replicates shared by every score and difference of one run.

    One item draw per language (the replicate weights), made once and reused, so every
    interval of a run is computed on the same replicate test sets, and the replicate scores
    of each array of item statistics are computed once (cached by the array's identity, which
    the cache keeps alive)."""

    def __init__(self, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> None:
        if n_boot < 2:
            raise ValueError(f"n_boot must be at least 2, got {n_boot}")
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        self.n_boot, self.level, self.seed = n_boot, level, seed
        # Draws are kept up to WEIGHTS_BYTES, least recently used first out: (n_boot, items)
        # floats are 40 MB for a 10k-sentence test set, and a run may score 40 languages;
        # `prepare` visits each language once, so it never draws one twice whatever fits.
        self._weights: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._scores: dict[tuple[int, str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._prepared: list[object] = []

    def prepared(self, token: object) -> bool:
        """Whether `prepare` ran for `token` (identity, not equality)."""
        return any(t is token for t in self._prepared)

    def weights(self, lang: str, n_items: int) -> np.ndarray:
        """(n_boot, n_items) draw counts of `lang`'s items, the same for every system: a
        function of (seed, lang, n_items) only, so a redraw gives the same replicates."""
        key = (lang, n_items)
        if key in self._weights:
            self._weights.move_to_end(key)
            return self._weights[key]
        rng = np.random.default_rng([self.seed, n_items, *lang.encode()])
        drawn = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=self.n_boot)
        weights = drawn.astype(np.float32)  # draw counts: exact in float32
        self._weights[key] = weights
        while len(self._weights) > 1 and sum(w.nbytes for w in self._weights.values()) > (
            WEIGHTS_BYTES
        ):
            self._weights.popitem(last=False)
        return weights

    def replicates(self, lang: str, stats: np.ndarray, metric: str) -> np.ndarray:
        """The metric of `stats` (items, columns) on every replicate of `lang`: (n_boot,)."""
        key = (id(stats), lang, metric)
        if key not in self._scores:
            # float32: counts stay exact (sums far below 2**24); float statistics (ECE's
            # confidences) carry a ~1e-7 relative error, far below any interval's width.
            sums = self.weights(lang, len(stats)) @ np.asarray(stats, dtype=np.float32)
            self._scores[key] = (stats, metric_from_sums(metric, sums.astype(np.float64)))
        return self._scores[key][1]

    def prepare(self, entries: Iterable[tuple[str, str, np.ndarray]], token: object = None) -> None:
        """Compute the replicates of every (lang, metric, stats) up front, one language at a
        time, so each language's draw is made once (call it before many intervals); `token`
        (e.g. the run's item set) marks them done for `prepared(token)`."""
        if token is not None:
            self._prepared.append(token)
        by_lang: dict[tuple[str, int], list[tuple[str, np.ndarray]]] = {}
        for lang, metric, stats in entries:
            by_lang.setdefault((lang, len(stats)), []).append((metric, stats))
        for (lang, _), found in by_lang.items():
            for metric, stats in found:
                self.replicates(lang, stats, metric)

    def _seed_means(self, system: Systems, metric: str, langs: Sequence[str], role: int
                    ) -> np.ndarray:  # fmt: skip
        """(langs, n_boot): each replicate's mean over a redraw of the system's seeds."""
        n_seeds = {len(system[lang]) for lang in langs}
        if len(n_seeds) != 1 or 0 in n_seeds:
            raise ValueError(f"every language needs the same (non-zero) seeds; got {n_seeds}")
        (n,) = n_seeds
        rng = np.random.default_rng([self.seed, role, n])
        drawn = rng.integers(0, n, size=(self.n_boot, n))  # shared by every language
        out = np.empty((len(langs), self.n_boot))
        for i, lang in enumerate(langs):
            per_seed = np.stack([self.replicates(lang, s, metric) for s in system[lang]], axis=1)
            out[i] = np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1)
        return out

    def _interval(self, estimate: float, replicates: np.ndarray) -> Interval:
        """Percentile interval of the replicates whose metric is defined (a replicate that
        drew only empty items, possible on a tiny test set, has none and is left out)."""
        replicates = replicates[~np.isnan(replicates)]
        if len(replicates) == 0:
            return Interval(estimate, float("nan"), float("nan"), self.level)
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(replicates, [tail, 100 - tail])
        return Interval(estimate, float(low), float(high), self.level)

    def score(self, a: Systems, metric: str, langs: Sequence[str]) -> Interval:
        """The mean over `langs` of the seed-mean score of `a`, with its interval."""
        langs = _check_langs(langs, a)
        replicates = self._seed_means(a, metric, langs, role=0).mean(axis=0)
        return self._interval(_point(a, metric, langs), replicates)

    def delta(self, a: Systems, b: Systems, metric: str, langs: Sequence[str]) -> Interval:
        """Δ = mean over `langs` of (seed-mean score of a − seed-mean score of b), paired on
        items, with its interval (see the module note)."""
        langs = _check_langs(langs, a, b)
        for lang in langs:
            sizes = {len(s) for s in (*a[lang], *b[lang])}
            if len(sizes) != 1:
                raise ValueError(f"{lang}: {sorted(sizes)} items in the two systems; paired "
                                 "intervals need both scored on the same items")  # fmt: skip
        replicates = (self._seed_means(a, metric, langs, role=0)
                      - self._seed_means(b, metric, langs, role=1)).mean(axis=0)  # fmt: skip
        estimate = _point(a, metric, langs) - _point(b, metric, langs)
        return self._interval(estimate, replicates)


def _check_langs(langs: Sequence[str], *systems: Systems) -> list[str]:
    chosen = list(langs)
    if not chosen:
        raise ValueError("an interval needs at least one language")
    for system in systems:
        missing = [lang for lang in chosen if lang not in system]
        if missing:
            raise ValueError(f"no item statistics for {', '.join(missing)}")
    return chosen


def _point(system: Systems, metric: str, langs: Sequence[str]) -> float:
    """The estimate itself: mean over languages of the mean over seeds of the full-data score."""
    per_lang = [np.mean([metric_from_sums(metric, s.sum(axis=0)) for s in system[lang]])
                for lang in langs]  # fmt: skip
    return float(np.mean(per_lang))


# --- differences across two test sets (domain shift) ---------------------------------------------


def unpaired_delta(
    boot: PairedBootstrap, a: Systems, b: Systems, metric: str, langs_a: Sequence[str],
    langs_b: Sequence[str],
) -> Interval:  # fmt: skip
    """Δ = a's score on the sets `langs_a` − b's on `langs_b`, where the two are *different*
    test sets (a domain-shift drop: one head on its in-domain and on an out-of-domain set).

    Nothing pairs the items of two test sets: each set's items are redrawn on their own (the
    replicate weights are per set name). Seeds are redrawn once for both sides (the same
    seed draw, `role` 0 on both): a drop compares one head's seeds with themselves, so a
    seed that is good on both sets cancels, as it should."""
    langs_a, langs_b = _check_langs(langs_a, a), _check_langs(langs_b, b)
    if set(langs_a) & set(langs_b):
        raise ValueError("unpaired_delta compares two different test sets; "
                         f"{sorted(set(langs_a) & set(langs_b))} are on both sides")  # fmt: skip
    replicates = (boot._seed_means(a, metric, langs_a, role=0).mean(axis=0)
                  - boot._seed_means(b, metric, langs_b, role=0).mean(axis=0))  # fmt: skip
    estimate = _point(a, metric, langs_a) - _point(b, metric, langs_b)
    return boot._interval(estimate, replicates)


def drop_delta(
    boot: PairedBootstrap, a: Systems, b: Systems, metric: str, inside: Sequence[str],
    outside: Sequence[str],
) -> Interval:  # fmt: skip
    """Δ = drop of a − drop of b, a drop being the score on the sets `inside` minus the score
    on the sets `outside` (so Δ > 0: a drops more than b).

    Paired within each test set (a and b see the same item draw of each set) and unpaired
    across sets; a's seeds and b's are redrawn independently, each draw shared by both of
    its sets (one trained head is scored on both)."""
    inside, outside = _check_langs(inside, a, b), _check_langs(outside, a, b)
    both = sorted(set(inside) & set(outside))
    if both:
        raise ValueError(f"a drop needs two different test sets; {both} are on both sides")

    def drop(system: Systems, role: int) -> np.ndarray:
        return (boot._seed_means(system, metric, inside, role).mean(axis=0)
                - boot._seed_means(system, metric, outside, role).mean(axis=0))  # fmt: skip

    estimate = (_point(a, metric, inside) - _point(a, metric, outside)
                - _point(b, metric, inside) + _point(b, metric, outside))  # fmt: skip
    return boot._interval(estimate, drop(a, 0) - drop(b, 1))

"""Parallel-sentence retrieval on Tatoeba under two protocols; row i of one side translates
row i of the other, and accuracy is the share of queries whose nearest candidate is their
translation.

- XTREME's (Hu et al. 2020; google-research/xtreme `third_party/run_retrieval.py` and
  `utils_retrieve.similarity_search`): no centring, both sides scaled to unit length, the
  non-English sentences form the index and every English sentence queries it (en→xx),
  nearest by L2 distance, which on unit vectors is the most cosine-similar candidate.
- Centred (Libovický et al. 2020): each language is shifted by its mean first, which removes
  most of the language-specific offset that otherwise dominates the cosine. The mean must not
  come from the pairs being scored (that is transductive), so the pairs are split into two
  seeded halves, each half is centred by the other half's means and retrieves within itself,
  and the hits of both halves are pooled. (Leaving only the query out of the mean would not
  help: x_i - mean of the others = n/(n-1) (x_i - mean of all), the same cosine.)
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = ("xx2en", "en2xx")  # queries -> candidates: xx2en = the other language queries


def centre(x: np.ndarray) -> np.ndarray:
    """Subtract the column mean: (n, d) -> (n, d) float64, the rows' own centre at 0."""
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero rather than becoming NaN)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def nearest(queries: np.ndarray, candidates: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the most cosine-similar candidate for every query.

    queries: (n, d), candidates: (m, d), used as given (centre them first if wanted).
    Returns (n,) int. Ties go to the lowest index (argmax), so identical candidates can never
    make a query look right by luck. Queries are processed in chunks to bound memory.
    """
    q, c = unit_rows(queries), unit_rows(candidates)
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, candidates {c.shape[1]}")
    out = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), chunk):
        out[start : start + chunk] = (q[start : start + chunk] @ c.T).argmax(axis=1)
    return out


def _check_pairs(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"row i must translate row i: {a.shape[0]} queries, {b.shape[0]} candidates"
        )
    if a.shape[0] == 0:
        raise ValueError("no sentences to retrieve")


def _hits(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return nearest(queries, candidates) == np.arange(len(queries))


def retrieval_accuracy(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Share of queries i whose most cosine-similar candidate is candidate i, on the vectors
    as given (no centring).

    queries: (n, d) sentences of one language; candidates: (n, d) their translations, row for
    row.
    """
    queries, candidates = np.asarray(queries), np.asarray(candidates)
    _check_pairs(queries, candidates)
    return float(_hits(queries, candidates).mean())


def retrieval_both_ways(x: np.ndarray, eng: np.ndarray) -> dict[str, float]:
    """Accuracy with x querying English (xx2en), English querying x (en2xx, the direction
    XTREME searches), and their mean; plain cosine, no centring."""
    to_eng = retrieval_accuracy(x, eng)
    from_eng = retrieval_accuracy(eng, x)
    return {"xx2en": to_eng, "en2xx": from_eng, "mean": (to_eng + from_eng) / 2}


# --- XTREME's protocol -------------------------------------------------------------------------


def xtreme_search(x: np.ndarray, eng: np.ndarray) -> np.ndarray:
    """XTREME's `similarity_search(x, y)` with y = English: (n_eng,) index of the nearest x
    row for every English row. Both sides unit length, no centring; the smallest L2 distance
    between unit vectors is the largest cosine, so this is `nearest(eng, x)`."""
    x, eng = np.asarray(x), np.asarray(eng)
    _check_pairs(eng, x)
    return nearest(eng, x)


def xtreme_accuracy(x: np.ndarray, eng: np.ndarray) -> float:
    """Share of English queries whose nearest non-English sentence is their translation:
    XTREME's Tatoeba accuracy (evaluate.py's `accuracy`, here as a fraction, not x100)."""
    return float((xtreme_search(x, eng) == np.arange(len(eng))).mean())


# --- centred, with means from the other half -------------------------------------------------


def centring_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of n pairs into two disjoint halves of sorted row indices (the first
    has n // 2 rows); each half is centred by the other's means."""
    if n < 4:
        raise ValueError(f"{n} pairs: too few to centre each half by the other (need 4)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def centred_retrieval(x: np.ndarray, eng: np.ndarray, seed: int) -> dict[str, float]:
    """Retrieval after centring each language by means that exclude the scored pairs.

    The pairs are split by `centring_halves`; each half's sentences are shifted by the mean of
    the other half's sentences of the same language, then retrieve among their own half by
    cosine (so the candidate pool is about n/2). Returns xx2en, en2xx and their mean, each the
    share of hits over all n pairs.
    """
    x, eng = np.asarray(x, dtype=np.float64), np.asarray(eng, dtype=np.float64)
    _check_pairs(x, eng)
    hits = dict.fromkeys(DIRECTIONS, 0)
    a, b = centring_halves(len(x), seed)
    for scored, centring in ((a, b), (b, a)):
        xs = x[scored] - x[centring].mean(axis=0)
        es = eng[scored] - eng[centring].mean(axis=0)
        hits["xx2en"] += int(_hits(xs, es).sum())
        hits["en2xx"] += int(_hits(es, xs).sum())
    to_eng, from_eng = hits["xx2en"] / len(x), hits["en2xx"] / len(x)
    return {"xx2en": to_eng, "en2xx": from_eng, "mean": (to_eng + from_eng) / 2}

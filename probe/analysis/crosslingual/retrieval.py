"""Parallel-sentence retrieval: nearest neighbour by cosine after centring each language.

This is the Tatoeba protocol of XTREME (Hu et al. 2020) with the per-language centring of
Libovický et al. (2020): each side's sentence embeddings are shifted by their own mean,
which removes most of the language-specific offset that otherwise dominates the cosine, then
every query takes its most similar candidate. Row i of one side translates row i of the
other; accuracy is the fraction of queries whose nearest candidate is their translation.
"""

from __future__ import annotations

import numpy as np


def centre(x: np.ndarray) -> np.ndarray:
    """Subtract the column mean: (n, d) -> (n, d) float64, the language's own centre at 0."""
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero rather than becoming NaN)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def nearest(queries: np.ndarray, candidates: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the most cosine-similar candidate for every query.

    queries: (n, d), candidates: (m, d), both already centred if centring is wanted.
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


def retrieval_accuracy(queries: np.ndarray, candidates: np.ndarray, centred: bool = True) -> float:
    """Fraction of queries i whose nearest candidate is candidate i.

    queries: (n, d) sentences of one language; candidates: (n, d) their translations, row for
    row. With `centred`, each side is first centred by its own mean (the protocol above).
    """
    queries, candidates = np.asarray(queries), np.asarray(candidates)
    if queries.shape[0] != candidates.shape[0]:
        raise ValueError(
            f"row i must translate row i: {queries.shape[0]} queries, {candidates.shape[0]} "
            "candidates"
        )
    if queries.shape[0] == 0:
        raise ValueError("no sentences to retrieve")
    if centred:
        queries, candidates = centre(queries), centre(candidates)
    hits = nearest(queries, candidates) == np.arange(len(queries))
    return float(hits.mean())


def retrieval_both_ways(x: np.ndarray, eng: np.ndarray, centred: bool = True) -> dict[str, float]:
    """Accuracy x -> English (XTREME's direction), English -> x, and their mean."""
    to_eng = retrieval_accuracy(x, eng, centred)
    from_eng = retrieval_accuracy(eng, x, centred)
    return {"xx2en": to_eng, "en2xx": from_eng, "mean": (to_eng + from_eng) / 2}

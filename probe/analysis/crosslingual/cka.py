"""Linear centred kernel alignment (Kornblith et al. 2019) between two sets of representations.

CKA compares what two representations say about the same n examples, whatever their bases:
it is invariant to orthogonal transforms and isotropic scaling of either side, but not to
arbitrary invertible maps, so a high CKA between English and its translations means the
two languages occupy the space in the same *shape*, not merely in linearly related ways.
"""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of x (n, d1) and y (n, d2), rows paired: a number in [0, 1].

    With both sides column-centred, CKA = ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F), the
    feature-space form of HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels; it
    costs O(n d²) and never builds the n x n Gram matrices.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need (n, d1) and (n, d2) with the same n; got {x.shape}, {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least two examples")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm_x = np.linalg.norm(x.T @ x)
    norm_y = np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError("CKA is undefined for a constant representation (zero variance)")
    return float(cross / (norm_x * norm_y))

"""Linear maps from one language's sentence embeddings onto English, fitted on parallel pairs.

The alignment projection of Choi et al. 2021 ("Analyzing Zero-shot Cross-lingual Transfer
in Supervised NLP Tasks", arXiv 2101.10649): learn W with x W ≈ e from translation pairs
(x in language X, e its English translation), then ask whether retrieval improves on pairs
the map never saw. Three ways to fit W:

- least squares (closed form): argmin ||X W - E||²_F + α ||W||²_F, with α chosen by k-fold
  cross-validation on the fitting pairs (`choose_ridge`) unless one is given; unregularised
  (α = 0, the minimum-norm solution) it interpolates the fitting pairs whenever d >= n
  (768-d mBERT, 500 pairs), so its held-out retrieval measures that, not an alignment;
- orthogonal Procrustes (closed form): the rotation W = U Vᵀ from the SVD of Xᵀ E, which
  keeps X's geometry and only turns it (Schönemann 1966);
- a single-layer net, x W + b, trained by full-batch gradient descent (Adam) on the mean
  squared error, as the paper's neural variant, stopped early on a slice of the fitting
  pairs (never the test pairs).

`heldout_alignment` splits the pairs deterministically (the first `fit_fraction` fit, the
rest test) and scores retrieval on the test part only. Both parts are centred, per language,
by the fitting part's mean and scaled to unit rows (`prepare`): the maps are fitted on the
representation retrieval then compares, so "before" and "after" differ only by the map, and
no statistic of the scored pairs enters their own representation (centring the test part by
its own mean would be transductive, the flaw the centred Tatoeba variant also avoids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from probe.analysis.crosslingual.retrieval import centre, retrieval_both_ways, unit_rows

if TYPE_CHECKING:
    import torch

METHODS: tuple[str, ...] = ("lstsq", "procrustes", "net")
# Ridge penalties cross-validation picks from: the fitted rows have unit length, so the Gram
# matrix's trace is n and 1e-3..1e3 spans "almost none" to "W shrunk towards zero".
RIDGE_GRID: tuple[float, ...] = tuple(float(10**e) for e in np.arange(-3.0, 3.25, 0.5))
RIDGE_FOLDS = 5


@dataclass(frozen=True)
class LinearMap:
    """x -> x W + b; weight (d_in, d_out), bias (d_out,)."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n, d_in) -> (n, d_out)."""
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


@dataclass(frozen=True)
class NetConfig:
    """The single-layer net's optimiser: full-batch Adam with early stopping.

    The last `val_fraction` of the fitting pairs is held out of the gradient and watched:
    training stops once its loss has not improved for `patience` steps (or after `steps`),
    and the weights of its lowest loss are kept. A linear map with as many parameters as
    d_in x d_out overfits a few hundred pairs when trained to convergence, so without this
    the net's held-out retrieval falls as training goes on.
    """

    steps: int = 1000
    lr: float = 1e-3
    patience: int = 50
    val_fraction: float = 0.1
    seed: int = 0


def _check_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need paired (n, d) arrays with the same n; got {x.shape}, {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("no pairs to fit a map on")
    return x, y


def fit_least_squares(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> LinearMap:
    """Closed-form W minimising ||x W - y||² + ridge ||W||² (x: (n, d_in), y: (n, d_out))."""
    x, y = _check_pairs(x, y)
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, not {ridge}")
    if ridge > 0:
        gram = x.T @ x + ridge * np.eye(x.shape[1])
        weight = np.linalg.solve(gram, x.T @ y)
    else:
        weight = np.linalg.lstsq(x, y, rcond=None)[0]
    return LinearMap(weight, np.zeros(y.shape[1]))


def choose_ridge(
    x: np.ndarray,
    y: np.ndarray,
    alphas: tuple[float, ...] = RIDGE_GRID,
    folds: int = RIDGE_FOLDS,
) -> float:
    """The α of `alphas` with the lowest mean held-out squared error over `folds` contiguous
    folds of the pairs (the fitting part only; the test pairs are never seen). Ties go to
    the larger α. Closed form per fold through one SVD: W(α) = V diag(s / (s² + α)) Uᵀ y.
    """
    x, y = _check_pairs(x, y)
    if len(x) < 2:
        raise ValueError(f"cross-validating a ridge needs at least 2 pairs, got {len(x)}")
    folds = min(folds, len(x))
    errors = np.zeros(len(alphas))
    for held in np.array_split(np.arange(len(x)), folds):
        keep = np.setdiff1d(np.arange(len(x)), held)
        u, s, vt = np.linalg.svd(x[keep], full_matrices=False)
        projected = u.T @ y[keep]  # (r, d_out)
        for i, alpha in enumerate(alphas):
            weight = vt.T @ ((s / (s**2 + alpha))[:, None] * projected)
            errors[i] += float(((x[held] @ weight - y[held]) ** 2).sum())
    best = np.flatnonzero(errors <= errors.min() * (1 + 1e-12))
    return float(alphas[int(best[-1])])


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> LinearMap:
    """The orthogonal W minimising ||x W - y||_F: W = U Vᵀ where Xᵀ Y = U Σ Vᵀ (d_in = d_out)."""
    x, y = _check_pairs(x, y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Procrustes needs equal dimensions; got {x.shape[1]} and {y.shape[1]}")
    u, _, vt = np.linalg.svd(x.T @ y)
    return LinearMap(u @ vt, np.zeros(y.shape[1]))


def fit_linear_net(x: np.ndarray, y: np.ndarray, config: NetConfig = NetConfig()) -> LinearMap:
    """One `nn.Linear` (with bias) trained by full-batch Adam on the squared error.

    The loss is the squared error summed over dimensions and averaged over pairs, so its
    scale does not depend on the hidden size. Float32; initialisation is seeded and the
    caller's global torch RNG is left as it was. Early stopping as in `NetConfig`.
    """
    import torch

    x, y = _check_pairs(x, y)
    n_val = int(round(len(x) * config.val_fraction)) if len(x) >= 10 else 0
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        layer = torch.nn.Linear(x.shape[1], y.shape[1])
    optimiser = torch.optim.Adam(layer.parameters(), lr=config.lr)
    return _train(layer, optimiser, xt, yt, n_val, config)


def _train(
    layer: torch.nn.Linear,
    optimiser: torch.optim.Optimizer,
    xt: torch.Tensor,
    yt: torch.Tensor,
    n_val: int,
    config: NetConfig,
) -> LinearMap:
    """The early-stopped full-batch loop of `fit_linear_net`; the last n_val rows validate.

    xt: (n, d_in), yt: (n, d_out); rows [n - n_val, n) are watched, never trained on.
    """
    import torch

    cut = len(xt) - n_val

    def loss_on(rows: slice) -> torch.Tensor:
        return ((layer(xt[rows]) - yt[rows]) ** 2).sum(dim=1).mean()

    best = (math.inf, layer.weight.detach().clone(), layer.bias.detach().clone())
    since_best = 0
    for _ in range(config.steps):
        optimiser.zero_grad()
        loss_on(slice(0, cut)).backward()
        optimiser.step()
        if not n_val:
            continue
        with torch.no_grad():
            val = float(loss_on(slice(cut, None)))
        if val < best[0]:
            best, since_best = (val, layer.weight.detach().clone(), layer.bias.detach().clone()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    weight, bias = (best[1], best[2]) if n_val else (layer.weight.detach(), layer.bias.detach())
    return LinearMap(weight.numpy().T.astype(np.float64), bias.numpy().astype(np.float64))


def prepare(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """What retrieval compares: rows shifted by `mean` (the set's own mean when None), then
    scaled to unit length. x: (n, d); mean: (d,), from other rows than x's when x is scored."""
    if mean is None:
        return unit_rows(centre(x))
    return unit_rows(np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64))


def split_pairs(n: int, fit_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, test) sorted indices: round(n * fit_fraction) pairs drawn at random (seeded) fit,
    the rest test; a random split, never a file prefix, since files may be sorted."""
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), not {fit_fraction}")
    cut = int(round(n * fit_fraction))
    if cut < 2 or n - cut < 2:
        raise ValueError(f"{n} pairs are too few to fit on {cut} and test on {n - cut}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:cut]), np.sort(order[cut:])


def fit_map(
    method: str, x: np.ndarray, y: np.ndarray, ridge: float | None, net: NetConfig
) -> LinearMap:
    """One map; least squares with `ridge`, or a cross-validated one when it is None."""
    if method == "lstsq":
        return fit_least_squares(x, y, choose_ridge(x, y) if ridge is None else ridge)
    if method == "procrustes":
        return fit_procrustes(x, y)
    if method == "net":
        return fit_linear_net(x, y, net)
    raise ValueError(f"unknown alignment method {method!r}; expected one of {METHODS}")


def heldout_alignment(
    x: np.ndarray,
    eng: np.ndarray,
    fit_fraction: float = 0.5,
    methods: tuple[str, ...] = METHODS,
    ridge: float | None = None,
    net: NetConfig = NetConfig(),
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Retrieval on the held-out pairs before ("none") and after each map x -> English.

    x: (n, d) sentences of language X; eng: (n, d) their English translations, row for row;
    `seed` draws which pairs fit and which are scored (`split_pairs`).
    Both parts are centred, per language, by the fit part's mean and given unit rows, so the
    test pairs contribute nothing but themselves to what is scored; maps, and the ridge's
    cross-validation, see the fit part only. Returns {method: {"xx2en", "en2xx", "mean"}}
    with accuracies in [0, 1]; least squares adds the ridge it used, `"ridge"`
    (cross-validated on the fit part when `ridge` is None).
    """
    x, eng = _check_pairs(x, eng)
    fit, test = split_pairs(len(x), fit_fraction, seed)
    x_mean, e_mean = x[fit].mean(axis=0), eng[fit].mean(axis=0)
    x_fit, e_fit = prepare(x[fit], x_mean), prepare(eng[fit], e_mean)
    x_test, e_test = prepare(x[test], x_mean), prepare(eng[test], e_mean)
    out = {"none": retrieval_both_ways(x_test, e_test)}
    if ridge is None and "lstsq" in methods:
        ridge = choose_ridge(x_fit, e_fit)
    for method in methods:
        mapping = fit_map(method, x_fit, e_fit, ridge, net)
        out[method] = retrieval_both_ways(mapping(x_test), e_test)
        if method == "lstsq":
            out[method] = {**out[method], "ridge": float(ridge or 0.0)}
    return out

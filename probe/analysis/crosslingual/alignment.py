"""Linear maps from one language's sentence embeddings onto English, fitted on parallel pairs.

The alignment projection of Choi et al. 2021 ("Analyzing Zero-shot Cross-lingual Transfer
in Supervised NLP Tasks", arXiv 2101.10649): learn W with x W ≈ e from translation pairs
(x in language X, e its English translation), then ask whether retrieval improves on pairs
the map never saw. Three ways to fit W:

- least squares (closed form): argmin ||X W - E||²_F (+ ridge ||W||²_F when asked); with
  fewer pairs than dimensions the minimum-norm solution is taken;
- orthogonal Procrustes (closed form): the rotation W = U Vᵀ from the SVD of Xᵀ E, which
  keeps X's geometry and only turns it (Schönemann 1966);
- a single-layer net, x W + b, trained by full-batch gradient descent (Adam) on the mean
  squared error, as the paper's neural variant, stopped early on a slice of the fitting
  pairs (never the test pairs).

Every map is fitted on the representation retrieval compares: each language centred by its
own mean and rows scaled to unit length (`prepare`), so "before" and "after" differ only by
the map. `heldout_alignment` splits the pairs deterministically (the first `fit_fraction`
fit, the rest test) and scores retrieval on the test part only.
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


def prepare(x: np.ndarray) -> np.ndarray:
    """What retrieval compares: centred by the set's own mean, rows of unit length."""
    return unit_rows(centre(x))


def split_pairs(n: int, fit_fraction: float = 0.5) -> tuple[slice, slice]:
    """(fit, test) slices: the first round(n * fit_fraction) pairs fit, the rest test."""
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), not {fit_fraction}")
    cut = int(round(n * fit_fraction))
    if cut < 2 or n - cut < 2:
        raise ValueError(f"{n} pairs are too few to fit on {cut} and test on {n - cut}")
    return slice(0, cut), slice(cut, n)


def fit_map(method: str, x: np.ndarray, y: np.ndarray, ridge: float, net: NetConfig) -> LinearMap:
    if method == "lstsq":
        return fit_least_squares(x, y, ridge)
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
    ridge: float = 0.0,
    net: NetConfig = NetConfig(),
) -> dict[str, dict[str, float]]:
    """Retrieval on the held-out pairs before ("none") and after each map x -> English.

    x: (n, d) sentences of language X; eng: (n, d) their English translations, row for row.
    Each part is prepared on its own (centred by its own mean, unit rows), as retrieval on
    that part alone would be; maps are fitted on the fit part only. Returns
    {method: {"xx2en", "en2xx", "mean"}} with accuracies in [0, 1].
    """
    x, eng = _check_pairs(x, eng)
    fit, test = split_pairs(len(x), fit_fraction)
    x_fit, e_fit = prepare(x[fit]), prepare(eng[fit])
    x_test, e_test = prepare(x[test]), prepare(eng[test])
    out = {"none": retrieval_both_ways(x_test, e_test, centred=False)}
    for method in methods:
        mapping = fit_map(method, x_fit, e_fit, ridge, net)
        out[method] = retrieval_both_ways(mapping(x_test), e_test, centred=False)
    return out

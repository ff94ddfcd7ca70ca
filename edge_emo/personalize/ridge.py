"""Closed-form ridge for the 6-unit head, shrunk toward the shipped head, with exact leave-one-out.

With the utterance embeddings X (n, H), the labels Y (n, E) and the shipped head (W0 (H, E), b0 (E,)), the
new head minimises

    ||X W + 1 b' - Y||^2 + lam (||W - W0||^2 + ||b - b0||^2)

The bias is penalised too, with the same strength: otherwise five clips that are all "happy" would move the
bias toward happiness however large lam is. lam -> infinity gives the shipped head back exactly, which is
what makes the fit safe with few or noisy labels: its strength is chosen by leave-one-out error on the
wearer's clips from a grid that includes infinity (keep the shipped head).

With A = [X, 1] and Z = Y - A theta0 (what the shipped head gets wrong), the solution is
theta = theta0 + A' (K + lam I)^-1 Z with K = A A' (n x n, n <= a few hundred), and the fitted values are
A theta0 + H Z with the hat matrix H = K (K + lam I)^-1. Leave-one-out residuals are exact and need no refit:
e_i / (1 - H_ii), where e are the residuals of the fit on all n clips. One eigendecomposition of K serves the
whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Strengths relative to the mean squared norm of an augmented embedding (trace(K) / n), so the grid fits
# any hidden size and embedding scale. inf = the shipped head.
RELATIVE_STRENGTHS: tuple[float, ...] = (*np.logspace(-3, 3, 13).tolist(), float("inf"))


@dataclass(frozen=True)
class HeadFit:
    weight: np.ndarray  # (H, E)
    bias: np.ndarray  # (E,)
    strength: float  # lam relative to trace(K)/n; inf: the shipped head
    loo_mse: dict[float, float]  # leave-one-out mean squared error of every strength tried

    @property
    def shipped(self) -> bool:
        return self.strength == float("inf")


def _augment(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.hstack([x, np.ones((len(x), 1))])


def _loo_mse(eigvals: np.ndarray, eigvecs: np.ndarray, z: np.ndarray, lam: float) -> float:
    if lam == float("inf"):
        return float(np.mean(z**2))  # the shipped head's error, nothing fitted
    shrink = eigvals / (eigvals + lam)
    hat_diag = (eigvecs**2) @ shrink
    residuals = z - eigvecs @ (shrink[:, None] * (eigvecs.T @ z))
    return float(np.mean((residuals / (1.0 - hat_diag)[:, None]) ** 2))


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    weight0: np.ndarray,
    bias0: np.ndarray,
    strengths: tuple[float, ...] = RELATIVE_STRENGTHS,
) -> HeadFit:
    """The ridge head toward (weight0, bias0) whose strength has the lowest leave-one-out error on (x, y).
    Ties go to the stronger shrinkage (the grid is scanned from the shipped head down)."""
    a = _augment(x)
    y = np.asarray(y, dtype=np.float64)
    theta0 = np.vstack([np.asarray(weight0, np.float64), np.asarray(bias0, np.float64)[None]])
    if len(a) < 2 or y.shape != (len(a), theta0.shape[1]):
        raise ValueError(f"need at least 2 clips and labels (n, {theta0.shape[1]}), got {y.shape}")
    z = y - a @ theta0
    k = a @ a.T
    eigvals, eigvecs = np.linalg.eigh(k)
    eigvals = np.clip(eigvals, 0.0, None)
    scale = float(np.trace(k)) / len(a)
    loo = {s: _loo_mse(eigvals, eigvecs, z, s * scale) for s in strengths}
    best = min(sorted(strengths, reverse=True), key=lambda s: loo[s])
    if best == float("inf"):
        theta = theta0
    else:
        theta = theta0 + a.T @ np.linalg.solve(k + best * scale * np.eye(len(a)), z)
    return HeadFit(theta[:-1].astype(np.float32), theta[-1].astype(np.float32), best, loo)


def fit_head_fixed(
    x: np.ndarray, y: np.ndarray, weight0: np.ndarray, bias0: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ridge head toward (weight0, bias0) at one relative strength (chosen beforehand on held-out
    speakers, not on these clips): (weight, bias)."""
    a = _augment(x)
    theta0 = np.vstack([np.asarray(weight0, np.float64), np.asarray(bias0, np.float64)[None]])
    z = np.asarray(y, np.float64) - a @ theta0
    k = a @ a.T
    lam = strength * float(np.trace(k)) / len(a)
    theta = theta0 + a.T @ np.linalg.solve(k + lam * np.eye(len(a)), z)
    return theta[:-1].astype(np.float32), theta[-1].astype(np.float32)


def held_out_fixed(
    x: np.ndarray, y: np.ndarray, weight0: np.ndarray, bias0: np.ndarray, strength: float
) -> np.ndarray:
    """Exact leave-one-out predictions (n, E) of fit_head_fixed (hat-matrix formula, no refits; the
    strength relative to all n clips' embeddings, as the fit on all of them uses)."""
    a = _augment(x)
    theta0 = np.vstack([np.asarray(weight0, np.float64), np.asarray(bias0, np.float64)[None]])
    z = np.asarray(y, np.float64) - a @ theta0
    k = a @ a.T
    hat = k @ np.linalg.inv(k + strength * float(np.trace(k)) / len(a) * np.eye(len(a)))
    residuals = (z - hat @ z) / (1.0 - np.diag(hat))[:, None]
    return a @ theta0 + z - residuals


def predict(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The head on utterance embeddings: (n, H) -> (n, E)."""
    return np.asarray(x, np.float64) @ np.asarray(weight, np.float64) + np.asarray(bias, np.float64)


def held_out_predictions(x: np.ndarray, y: np.ndarray, weight0: np.ndarray, bias0: np.ndarray) -> np.ndarray:
    """Honest leave-one-out predictions (n, E) of the whole procedure: for each clip, the strength is chosen
    and the head fitted on the other clips only, then the clip is predicted."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    out = np.zeros_like(y)
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        fit = fit_head(x[rest], y[rest], weight0, bias0)
        out[i] = predict(x[i : i + 1], fit.weight, fit.bias)[0]
    return out

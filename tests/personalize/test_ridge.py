"""The closed-form head: exact leave-one-out, shrinkage to the shipped head, honest held-out predictions."""

from __future__ import annotations

import numpy as np

from edge_emo.personalize.ridge import (
    _augment,
    _loo_mse,
    fit_head,
    held_out_fixed,
    held_out_predictions,
    predict,
)


def problem(n: int = 12, h: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h)) * 0.3
    w0, b0 = rng.normal(size=(h, 6)) * 0.1, rng.normal(size=6) * 0.1
    w_true = w0 + rng.normal(size=(h, 6)) * 0.5
    y = np.clip(x @ w_true + b0 + 1.0 + 0.05 * rng.normal(size=(n, 6)), 0, 3)
    return x, y, w0, b0


def test_leave_one_out_error_equals_n_refits():
    x, y, w0, b0 = problem()
    a = _augment(x)
    theta0 = np.vstack([w0, b0])
    eigvals, eigvecs = np.linalg.eigh(a @ a.T)
    for lam in (0.05, 1.0, 30.0):
        errors = []
        for i in range(len(x)):
            rest = np.arange(len(x)) != i
            theta = theta0 + a[rest].T @ np.linalg.solve(
                a[rest] @ a[rest].T + lam * np.eye(len(x) - 1), y[rest] - a[rest] @ theta0
            )
            errors.append(y[i] - a[i] @ theta)
        assert np.isclose(_loo_mse(eigvals, eigvecs, y - a @ theta0, lam), np.mean(np.square(errors)))


def test_the_dual_solution_is_the_ridge_minimiser_toward_the_shipped_head():
    x, y, w0, b0 = problem()
    fit = fit_head(x, y, w0, b0)
    lam = fit.strength * float(np.trace(_augment(x) @ _augment(x).T)) / len(x)
    a, theta0 = _augment(x), np.vstack([w0, b0])
    primal = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y + lam * theta0)
    np.testing.assert_allclose(np.vstack([fit.weight, fit.bias]), primal, atol=1e-4)


def test_learnable_labels_move_the_head_and_lower_the_held_out_error():
    x, y, w0, b0 = problem(n=40)
    fit = fit_head(x, y, w0, b0)
    assert not fit.shipped and fit.loo_mse[fit.strength] < fit.loo_mse[float("inf")] / 2
    held_out = held_out_predictions(x, y, w0, b0)
    assert np.mean((held_out - y) ** 2) < np.mean((predict(x, w0, b0) - y) ** 2) / 2


def test_labels_the_shipped_head_already_predicts_keep_it_exactly():
    x, _, w0, b0 = problem()
    y = predict(x, w0, b0)
    fit = fit_head(x, y, w0, b0)
    assert fit.shipped
    np.testing.assert_array_equal(fit.weight, w0.astype(np.float32))
    np.testing.assert_array_equal(fit.bias, b0.astype(np.float32))


def test_noise_labels_choose_strong_shrinkage():
    x, _, w0, b0 = problem(n=10)
    y = np.random.default_rng(5).uniform(0, 3, size=(10, 6))  # unrelated to the voice
    fit = fit_head(x, y, w0, b0)
    assert fit.strength >= 0.1  # never the near-interpolating end of the grid


def test_a_held_out_prediction_never_sees_its_own_label():
    x, y, w0, b0 = problem()
    changed = y.copy()
    changed[3] += 2.0
    np.testing.assert_allclose(
        held_out_predictions(x, y, w0, b0)[3], held_out_predictions(x, changed, w0, b0)[3]
    )


def test_exact_leave_one_out_of_the_fixed_strength_fit_equals_refits():
    """held_out_fixed: the fit on all clips' strength scale, each clip left out in turn (brute force)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 5)), rng.uniform(0, 3, size=(7, 6))
    w0, b0 = rng.normal(size=(5, 6)), rng.normal(size=6)
    held = held_out_fixed(x, y, w0, b0, 0.5)
    a = _augment(x)
    lam = 0.5 * float(np.trace(a @ a.T)) / len(a)
    theta0 = np.vstack([w0, b0[None]])
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        z = y[rest] - a[rest] @ theta0
        theta = theta0 + a[rest].T @ np.linalg.solve(a[rest] @ a[rest].T + lam * np.eye(len(x) - 1), z)
        np.testing.assert_allclose(held[i], a[i] @ theta, atol=1e-8)

"""Statistics over label draws: mean, standard deviation and a percentile bootstrap interval of the mean.

The draws of one budget are the unit: an interval says how much the mean over draws would move with other
draws of labeled clips (and other training seeds), on the same evaluation clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 10_000
# A percentile bootstrap of a mean can never be wider than the range of the values: with very few draws it
# is far too narrow (two draws give just their min and max). Below this many values no interval is given.
MIN_FOR_INTERVAL = 5


def bootstrap_ci(
    values: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (at least 2 of them)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 values, got {len(v)}")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def describe(values: Sequence[float]) -> dict:
    """n, mean, sample std (None for n < 2) and the 95% bootstrap interval of the mean (None for fewer than
    MIN_FOR_INTERVAL values)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise ValueError("no values to describe")
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) >= 2 else None,
        "ci95": list(bootstrap_ci(v)) if len(v) >= MIN_FOR_INTERVAL else None,
    }


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Student-t 95% interval of the mean of `values` (at least 2). Unlike a bootstrap, it widens as the
    values get fewer, so it is the honest choice for a handful of cross-validation folds."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {len(v)}")
    df, z = len(v) - 1, 1.959964
    # Beyond the table: the Cornish-Fisher expansion of the t quantile (error < 0.001 for df > 30).
    t = (
        _T975[df - 1]
        if df <= len(_T975)
        else z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    )
    half = t * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def describe_folds(values: Sequence[float]) -> dict:
    """`describe` for values that are cross-validation folds: the interval is the t interval, from 2 folds on."""
    v = np.asarray(values, dtype=np.float64)
    out = describe(v)
    out["ci95"] = list(t_interval(v)) if len(v) >= 2 else None
    return out

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

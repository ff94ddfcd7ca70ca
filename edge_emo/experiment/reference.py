"""The classic reference: what an openSMILE user does today. eGeMAPSv02 functionals (88 utterance-level
statistics of the low-level descriptors, as `opensmile.Smile` computes them) and ridge regression on the six
intensities.

Ridge: features standardised on the training clips, an unpenalised intercept, and alpha chosen at every fit
by exact leave-one-out cross-validation on the training clips (closed form from one SVD) over a fixed grid.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emo.data.corpus import cached_per_clip
from edge_emo.data.labels import read_labels, read_manifest
from edge_emo.features import FeatureSet, resample, spec_for, to_mono

FUNCTIONALS = "egemaps-functionals"
ALPHAS = np.logspace(-2, 5, 15)


@functools.cache
def _smile():
    import opensmile

    return opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)


def egemaps_functionals(signal: np.ndarray, sample_rate: int, source: str = "signal") -> np.ndarray:
    """(1, 88) eGeMAPSv02 functionals of a clip, at the 16 kHz the frame-level features use."""
    rate = spec_for(FeatureSet.egemaps).sample_rate
    x = resample(to_mono(signal, source), int(sample_rate), rate)
    return _smile().process_signal(x, rate).to_numpy(np.float32)


def corpus_functionals(data_dir: str | Path, names: Sequence[str], workers: int = 0) -> np.ndarray:
    """(N, 88) functionals of the clips `names` (relative paths, as in `ClipSet.names`) of an audio corpus,
    labeled (labels.csv) or not (manifest.csv); the whole corpus is computed once and cached like the
    frame-level features."""
    data_dir = Path(data_dir)
    labeled = (data_dir / "labels.csv").is_file()
    records = read_labels(data_dir / "labels.csv") if labeled else read_manifest(data_dir / "manifest.csv")
    arrays = cached_per_clip(data_dir, records, FUNCTIONALS, FUNCTIONALS, egemaps_functionals, workers)
    index = {r.path.relative_to(data_dir).as_posix(): i for i, r in enumerate(records)}
    return np.concatenate([arrays[index[n]] for n in names])


@dataclass
class Ridge:
    mean: np.ndarray  # (D,) feature standardisation
    std: np.ndarray
    weights: np.ndarray  # (D, K)
    intercept: np.ndarray  # (K,)
    alpha: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alphas: Sequence[float] = ALPHAS) -> Ridge:
        """Fit on x (N, D) and y (N, K), choosing alpha by leave-one-out mean squared error."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        mean, std = x.mean(0), x.std(0)
        std[std < 1e-8] = 1.0
        z = _standardise(x, mean, std)
        y_mean = y.mean(0)
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        uty = u.T @ (y - y_mean)
        best = None
        for alpha in alphas:
            shrink = s**2 / (s**2 + alpha)
            fitted = u @ (shrink[:, None] * uty) + y_mean
            # Leverage of the centred ridge fit plus 1/N for the intercept (centred columns are orthogonal to it).
            leverage = (u**2) @ shrink + 1.0 / len(x)
            loo = (y - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]
            mse = float(np.mean(loo**2))
            if best is None or mse < best[0]:
                best = (mse, float(alpha))
        alpha = best[1]
        weights = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        return cls(mean, std, weights, y_mean, alpha)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _standardise(np.asarray(x, np.float64), self.mean, self.std) @ self.weights + self.intercept


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.nan_to_num((x - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)

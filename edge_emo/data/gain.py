"""Microphone gain, for measuring and training robustness to it: a clip's audio scaled by a gain in dB before
openSMILE sees it. Nobody sets the gain of a wearable's microphone, so the same voice arrives 20 dB softer or
12 dB louder than in the training recordings.

A gain never makes a clip clip: a clip whose peak would pass `CEILING` gets the largest gain that keeps it
below (and `apply_gain` says how much it applied). A clip is never turned down for that reason below 0 dB,
so 0 dB is always the recording as it is.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emo.features import FeatureSpec, extract

CEILING = 0.99  # peak amplitude (full scale 1.0) a gained clip may reach


@dataclass(frozen=True)
class Gain:
    """A fixed gain of `db`, or (db None) a gain per clip drawn uniformly from [low, high] dB with `seed`
    and the clip's file name, so that each clip always gets the same one."""

    db: float | None = 0.0
    low: float = -20.0
    high: float = 12.0
    seed: int = 0

    @property
    def name(self) -> str:
        if self.db is not None:
            return f"gain{self.db:+g}dB"
        return f"gain{self.low:+g}to{self.high:+g}dB-seed{self.seed}"

    def for_clip(self, source: str) -> float:
        if self.db is not None:
            return float(self.db)
        key = zlib.crc32("/".join(Path(source).parts[-2:]).encode())
        return float(np.random.default_rng([self.seed, key]).uniform(self.low, self.high))


def apply_gain(signal: np.ndarray, gain_db: float) -> tuple[np.ndarray, float]:
    """(signal scaled by gain_db, the gain applied): less than asked where the peak would pass CEILING."""
    signal = np.asarray(signal, dtype=np.float32)
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    applied = float(gain_db)
    if peak > 0:
        applied = min(applied, max(0.0, 20 * np.log10(CEILING / peak)))
    return signal * np.float32(10 ** (applied / 20)), applied


def gained_extract(
    signal: np.ndarray, sample_rate: int, source: str = "signal", *, spec: FeatureSpec, gain: Gain
) -> np.ndarray:
    """Feature frames of a clip heard through `gain` (the gain drawn for `source` when it is random)."""
    return extract(apply_gain(signal, gain.for_clip(source))[0], sample_rate, spec, source)


RANDOM_GAIN_DB = (-20.0, 12.0)  # the range of 'random' on the command line


def parse_gain(text: str) -> Gain:
    """A `Gain` from 'random' or a number of dB."""
    if text.strip() == "random":
        return Gain(db=None, low=RANDOM_GAIN_DB[0], high=RANDOM_GAIN_DB[1])
    try:
        return Gain(db=float(text))
    except ValueError:
        raise ValueError(f"a gain is a number of dB or 'random', not {text!r}") from None


def parse_gains(text: str | None) -> list[Gain]:
    """The gains of a comma-separated list (see `parse_gain`); none for None or ''."""
    return [parse_gain(t) for t in text.split(",") if t.strip()] if text else []

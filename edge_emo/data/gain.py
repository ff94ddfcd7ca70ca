"""Microphone gain, for measuring and training robustness to it: a clip's audio scaled by a gain in dB before
openSMILE sees it. Nobody sets the gain of a wearable's microphone, so the same voice arrives 20 dB softer or
12 dB louder than in the training recordings.

A gain never makes a clip clip: a clip whose peak would pass `CEILING` gets the largest gain that keeps it
below (and `apply_gain` says how much it applied). A clip is never turned down for that reason below 0 dB,
so 0 dB is always the recording as it is.

A room adds noise as well: `Gain(noise=...)` mixes pink noise (equal energy per octave, the shape of most
rooms, streets and fans) into the clip at a signal-to-noise ratio drawn per clip, before the gain, as a
microphone hears a voice in a noisy place.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
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
    # Pink noise at a speech-to-noise ratio drawn per clip from this range of dB (None: a quiet room).
    noise: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        gain = f"gain{self.db:+g}dB" if self.db is not None else f"gain{self.low:+g}to{self.high:+g}dB"
        noise = f"-pink{self.noise[0]:g}to{self.noise[1]:g}dB" if self.noise else ""
        return gain + noise + ("" if self.db is not None and not self.noise else f"-seed{self.seed}")

    def key(self) -> dict:
        """What the features heard through this gain depend on (for caches; a quiet room adds nothing, so
        that caches written before rooms had noise stay valid)."""
        key = asdict(self)
        if self.noise is None:
            del key["noise"]
        return key

    def for_clip(self, source: str) -> float:
        if self.db is not None:
            return float(self.db)
        return float(np.random.default_rng([self.seed, _clip_key(source)]).uniform(self.low, self.high))

    def snr_for_clip(self, source: str) -> float:
        """The speech-to-noise ratio (dB) drawn for a clip in a noisy room, the same wherever it lives."""
        assert self.noise is not None
        return float(np.random.default_rng([self.seed, 1, _clip_key(source)]).uniform(*self.noise))


def _clip_key(source: str) -> int:
    return zlib.crc32("/".join(Path(source).parts[-2:]).encode())


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of pink noise (power falling 3 dB per octave), unit mean square."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def speech_power(signal: np.ndarray, frame: int = 320) -> float:
    """Mean square of the louder half of a clip's 20 ms frames (at 16 kHz): the level of its speech, not of
    the silence around it."""
    n = len(signal) // frame
    if n == 0:
        return float(np.mean(np.square(signal, dtype=np.float64))) if len(signal) else 0.0
    power = np.mean(np.square(signal[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    return float(np.mean(np.sort(power)[n // 2 :]))


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The clip with pink noise mixed in at `snr_db` below its speech level, turned down as a whole if the
    mixture would pass CEILING."""
    signal = np.asarray(signal, dtype=np.float32)
    level = speech_power(signal)
    if level <= 0:
        return signal
    mixed = signal + (pink_noise(len(signal), rng) * np.sqrt(level / 10 ** (snr_db / 10))).astype(np.float32)
    peak = float(np.max(np.abs(mixed)))
    return mixed * np.float32(CEILING / peak) if peak > CEILING else mixed


def hear(signal: np.ndarray, source: str, gain: Gain) -> np.ndarray:
    """A clip as the microphone hears it: in the gain's room (noise), then through its gain."""
    if gain.noise is not None:
        rng = np.random.default_rng([gain.seed, 2, _clip_key(source)])
        signal = add_noise(signal, gain.snr_for_clip(source), rng)
    return apply_gain(signal, gain.for_clip(source))[0]


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
    return extract(hear(signal, source, gain), sample_rate, spec, source)


RANDOM_GAIN_DB = (-20.0, 12.0)  # the range of 'random' on the command line
NOISY_SNR_DB = (5.0, 20.0)  # the range of 'noisy': a busy street or cafe to a quiet office with a fan


def parse_gain(text: str) -> Gain:
    """A `Gain` from 'random', a number of dB, or either with '+noisy' (pink noise at a random
    NOISY_SNR_DB speech-to-noise ratio per clip); 'noisy' alone is 0 dB in that noise."""
    base = text.strip()
    noisy = base == "noisy" or base.endswith("+noisy")  # '+12+noisy': the sign belongs to the gain
    base = "0" if base == "noisy" else base.removesuffix("+noisy")
    noise = NOISY_SNR_DB if noisy else None
    if base == "random":
        return Gain(db=None, low=RANDOM_GAIN_DB[0], high=RANDOM_GAIN_DB[1], noise=noise)
    try:
        return Gain(db=float(base), noise=noise)
    except ValueError:
        raise ValueError(
            f"a gain is a number of dB or 'random' (either with '+noisy'), not {text!r}"
        ) from None


def parse_gains(text: str | None) -> list[Gain]:
    """The gains of a comma-separated list (see `parse_gain`); none for None or ''."""
    return [parse_gain(t) for t in text.split(",") if t.strip()] if text else []

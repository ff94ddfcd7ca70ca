"""Speech-like audio made with numpy, so tests need no dataset and no text-to-speech package.

`synth_speech` strings "syllables" together: a harmonic voice source with a gliding F0 (90-260 Hz), shaped by
a moving three-formant envelope (vowel-like), with a slight jitter/shimmer, fricative noise bursts and
pauses of silence. openSMILE finds pitch, voicing and formants in it, so every LLD moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

# (F1, F2, F3) in Hz of a few vowels
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]]
)
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_DURATIONS_S = {"voiced": (0.15, 0.4), "fricative": (0.05, 0.12), "pause": (0.08, 0.3)}


def _envelope(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Magnitude of a 3-resonance vocal tract with -6 dB/octave tilt, at freqs (T,) for formants (T, 3)."""
    gain = np.zeros_like(freqs)
    for i in range(3):
        f, b = formants[:, i], _BANDWIDTHS[i]
        gain += (f * b) / np.sqrt((freqs**2 - f**2) ** 2 + (freqs * b) ** 2)
    return gain * 200.0 / np.maximum(freqs, 50.0)


def _syllable(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    f0_start, f0_end = rng.uniform(90, 260, size=2)
    f0 = f0_start + (f0_end - f0_start) * t / t[-1] + 8 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    f0 *= 1 + 0.004 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))  # slow jitter
    v0, v1 = _VOWELS[rng.integers(len(_VOWELS), size=2)]
    formants = v0 + (v1 - v0) * (t / t[-1])[:, None]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = np.zeros(n)
    for k in range(1, int(sr / 2 / f0.min())):
        fk = k * f0
        voice += np.where(fk < sr / 2 - 200, _envelope(fk, formants), 0.0) * np.sin(k * phase)
    shimmer = 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(8, 15) * t)
    attack = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)  # 30 ms on/off ramps
    return voice * shimmer * attack


def _fricative(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """High-pass noise (above about 3 kHz), like /s/."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[: int(3000 * n / sr)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise * np.hanning(n)


def synth_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """float32 mono speech-like signal, peak 0.5."""
    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    parts, n = [], 0
    while n < total:
        kind = rng.choice(["voiced", "voiced", "voiced", "fricative", "pause"])
        length = int(sample_rate * rng.uniform(*_DURATIONS_S[kind]))
        if kind == "voiced":
            part = _syllable(length, sample_rate, rng)
            part /= np.abs(part).max() / rng.uniform(0.3, 1.0)
        elif kind == "fricative":
            part = _fricative(length, sample_rate, rng)
            part /= np.abs(part).max() / rng.uniform(0.05, 0.2)
        else:
            part = np.zeros(length)
        parts.append(part)
        n += length
    x = np.concatenate(parts)[:total]
    x += 1e-4 * rng.standard_normal(total)  # room noise floor
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_wav(path: Path, signal: np.ndarray, sample_rate: int = 16000) -> Path:
    """Write 16-bit PCM WAV (channel-last for soundfile: pass (samples,) or (samples, channels))."""
    soundfile.write(str(path), signal, sample_rate, subtype="PCM_16")
    return path

"""Reading and checking audio: mono float32 in [-1, 1], resampled with libsoxr (python-soxr), and the one
conversion to the 16-bit PCM that openSMILE reads.

Errors are one line and name the file (or say "signal" for arrays), so the CLI can print them as they are."""

from __future__ import annotations

import os

import numpy as np
import soundfile
import soxr

# libsoxr "high quality" (the default of audresample too). One-shot `resample` and the chunked
# `soxr.ResampleStream` used by the streaming extractor give bit-identical output at this quality.
RESAMPLE_QUALITY = "HQ"
# Sample rates edge-emo reads: telephone (8 kHz) to studio (192 kHz). Below 8 kHz nothing of a voice's
# formants survives (and a 1 Hz "file" broke the resampler); above 192 kHz is not a microphone.
MIN_RATE, MAX_RATE = 8000, 192000


class AudioInputError(ValueError):
    """Audio that edge-emo cannot use. Subclasses say why; the message names the file."""


class AudioFileError(AudioInputError):
    """The file is missing, unreadable or not audio."""


class EmptyAudioError(AudioInputError):
    """No samples, or too few for a single feature frame."""


class ChannelLayoutError(AudioInputError):
    """Neither mono nor stereo."""


class BadSamplesError(AudioInputError):
    """NaN or infinite sample values."""


class SampleRateError(AudioInputError):
    """A sample rate outside MIN_RATE..MAX_RATE."""


def check_rate(rate: float, source: str = "signal") -> int:
    """`rate` as an int if edge-emo reads audio at it, else SampleRateError naming the source and the limits."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise SampleRateError(
            f"{source}: sample rate {rate:g} Hz is outside {MIN_RATE // 1000}..{MAX_RATE // 1000} kHz"
        )
    return int(rate)


def require_audio_file(name: str | os.PathLike) -> None:
    """AudioFileError unless `name` is a file (a folder is named as one: a common slip on the command line)."""
    if os.path.isdir(name):
        raise AudioFileError(f"{os.fspath(name)}: is a folder, not an audio file")
    if not os.path.isfile(name):
        raise AudioFileError(f"{os.fspath(name)}: no such audio file")


def audio_seconds(path: str | os.PathLike) -> float:
    """Length of an audio file in seconds, from its header (nothing decoded); AudioFileError if unreadable."""
    name = os.fspath(path)
    require_audio_file(name)
    try:
        info = soundfile.info(name)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFileError(f"{name}: not a readable audio file ({e})") from None
    return info.frames / check_rate(info.samplerate, name)


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as a float32 mono signal in [-1, 1] and its sample rate (no resampling).

    Stereo is averaged to mono; more channels raise `ChannelLayoutError`."""
    name = os.fspath(path)
    require_audio_file(name)
    try:
        data, rate = soundfile.read(name, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFileError(f"{name}: not a readable audio file ({e})") from None
    return to_mono(data.T, name), check_rate(rate, name)


def to_mono(signal: np.ndarray, source: str = "signal") -> np.ndarray:
    """A checked float32 mono signal from (samples,) or channel-first (channels, samples) audio; float in
    [-1, 1] or signed integer PCM (scaled to [-1, 1))."""
    x = np.asarray(signal)
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / np.float32(-np.iinfo(x.dtype).min)
    elif x.dtype.kind != "f":
        raise BadSamplesError(f"{source}: audio samples must be float or signed integers, got {x.dtype}")
    if x.ndim == 2:
        channels = x.shape[0]
        if channels == 1:
            x = x[0]
        elif channels == 2:
            x = x.astype(np.float32).mean(axis=0, dtype=np.float32)  # both ears carry the same voice
        else:
            raise ChannelLayoutError(
                f"{source}: {channels} audio channels; edge-emo reads mono or stereo (arrays: channels first)"
            )
    elif x.ndim != 1:
        raise ChannelLayoutError(f"{source}: audio must be (samples,) or (channels, samples), got {x.shape}")
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        raise EmptyAudioError(f"{source}: audio has no samples")
    if not np.all(np.isfinite(x)):
        raise BadSamplesError(f"{source}: audio contains NaN or infinite samples")
    return x


def resample(signal: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """float32 mono `signal` at `rate` Hz converted to `target_rate` Hz (unchanged when equal)."""
    if rate == target_rate:
        return signal
    return soxr.resample(signal, rate, target_rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def to_pcm16(signal: np.ndarray) -> np.ndarray:
    """float in [-1, 1] to int16 as openSMILE's Python package does (x * 32768), but clipped first."""
    return np.clip(np.multiply(signal, 32768.0, dtype=np.float32), -32768.0, 32767.0).astype(np.int16)

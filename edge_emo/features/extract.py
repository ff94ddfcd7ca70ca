"""Offline extraction: a whole clip in, all its frames out (T, F) float32."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from .audio import EmptyAudioError, load_audio, resample, to_mono, to_pcm16
from .smile import SINK, SOURCE, OpenSmileError, check_extractable, open_smile
from .spec import FeatureSpec


class FrameCollector:
    """openSMILE sink callback that keeps the frames. It runs on openSMILE's thread; `take` hands them over
    to any other thread.

    With `on_frames`, frames are not kept: each delivery is passed to it at once, on openSMILE's thread. What
    it raises is kept in `failure` (an exception must not escape into openSMILE's C code, where ctypes would
    print it and carry on) and no later frame reaches it."""

    def __init__(self, on_frames: Callable[[np.ndarray], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self.next_index = 0  # index of the frame openSMILE will deliver next
        self.error: str | None = None
        self.on_frames = on_frames
        self.failure: BaseException | None = None  # what on_frames raised

    def __call__(self, data: np.ndarray, meta) -> None:
        frames = data.copy()  # openSMILE reuses its buffer after the callback
        with self._lock:
            if meta.vIdx != self.next_index and self.error is None:
                self.error = f"openSMILE skipped frames: expected frame {self.next_index}, got {meta.vIdx}"
            self.next_index = meta.vIdx + frames.shape[0]
            if self.on_frames is None:
                self._chunks.append(frames)
                return
        if self.failure is None and self.error is None:
            try:
                self.on_frames(frames)
            except BaseException as e:  # handed to the feeding thread (see the class doc)
                self.failure = e

    def take(self, dim: int) -> np.ndarray:
        """All frames delivered since the last call, (n, dim) float32 (n may be 0)."""
        with self._lock:
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.empty((0, dim), dtype=np.float32)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def extract(signal: np.ndarray, sample_rate: int, spec: FeatureSpec, source: str = "signal") -> np.ndarray:
    """LLD frames (T, spec.dim) float32 of a mono or (channels, samples) signal in [-1, 1].

    Frame k covers the audio from k * spec.hop_s on. Resamples to spec.sample_rate if needed."""
    check_extractable(spec)
    x = resample(to_mono(signal, source), int(sample_rate), spec.sample_rate)
    smile = open_smile(spec.name, streaming=False, hop_s=spec.hop_s)
    frames = FrameCollector()
    try:
        smile.external_sink_set_callback_ex(SINK, frames)
        smile.external_audio_source_write_data(SOURCE, to_pcm16(x).tobytes())
        smile.external_audio_source_set_eoi(SOURCE)
        smile.run()
    finally:
        smile.free()
    if frames.error:
        raise OpenSmileError(f"{source}: {frames.error}")
    out = frames.take(spec.dim)
    if len(out) == 0:
        raise EmptyAudioError(
            f"{source}: {x.size / spec.sample_rate * 1000:.0f} ms of audio is too short for a feature frame"
        )
    return out


def extract_file(path: str | os.PathLike, spec: FeatureSpec) -> np.ndarray:
    """LLD frames (T, spec.dim) float32 of an audio file (stereo averaged, resampled to the spec's rate)."""
    signal, rate = load_audio(path)
    return extract(signal, rate, spec, source=os.fspath(path))

"""Streaming extraction: PCM chunks of any size in, the same frames as `extract` out, as soon as openSMILE
has them.

openSMILE runs its own loop (`run()`) on a thread, reading an external audio source through a ring buffer
and handing frames to a sink callback. That thread must never outlive its instance: a process that exits
while `run()` is live aborts. So every instance is stopped by `close()`, by the context manager, by
`__del__` when forgotten, and at interpreter exit by an `atexit` hook; each path aborts, joins and frees."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import soxr

from .audio import RESAMPLE_QUALITY, BadSamplesError, ChannelLayoutError, check_rate, to_pcm16
from .extract import FrameCollector
from .smile import SINK, SOURCE, OpenSmileError, check_extractable, open_smile, smile_lib
from .spec import FeatureSpec

# Largest piece written to openSMILE at once (100 ms at 16 kHz): well below the free space of its wave ring
# buffer, so a write fails only while openSMILE is behind, and then waits for it.
_WRITE_SAMPLES = 1600
_RETRY_S = 0.0005
_ABORT_POLL_S = 0.01
_SOURCE = SOURCE.encode("ascii")

# Engines whose openSMILE thread may still be running, stopped at interpreter exit. Engines, not extractors,
# are kept here, so a forgotten extractor is still garbage-collected (and closes its engine in __del__).
_live_engines: set[_Engine] = set()
_live_lock = threading.Lock()


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` (at most 15 bytes) in the operating system, so `top -H` and /proc
    (and `edge-emo bench`'s live CPU share) can tell the pipeline's threads apart. Linux only; a no-op
    elsewhere or when it fails."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


class _Engine:
    """One openSMILE instance running on its own thread, fed through a ring buffer."""

    def __init__(self, spec: FeatureSpec, on_frames: Callable[[np.ndarray], None] | None = None) -> None:
        self.smile = open_smile(spec.name, streaming=True, hop_s=spec.hop_s)
        self.frames = FrameCollector(on_frames)
        self.error: BaseException | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._io_lock = threading.Lock()  # no write may reach the C object while it is being freed
        try:
            self.smile.external_sink_set_callback_ex(SINK, self.frames)
            self.thread = threading.Thread(target=self._run, name="edge-emo-opensmile", daemon=True)
            with _live_lock:
                _live_engines.add(self)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def _run(self) -> None:
        name_os_thread("edge-emo-smile")
        try:
            self.smile.run()
        except BaseException as e:  # reported to the feeding thread by write()/finish()
            self.error = e

    def write(self, pcm: np.ndarray) -> None:
        """Write int16 samples; waits while openSMILE's ring buffer is full."""
        for start in range(0, len(pcm), _WRITE_SAMPLES):
            piece = pcm[start : start + _WRITE_SAMPLES]
            while True:
                with self._io_lock:
                    if self._closed:
                        raise RuntimeError("stream was closed while audio was being written")
                    result = smile_lib.smileapi.smile_extaudiosource_write_data(
                        self.smile._smileobj, _SOURCE, piece.ctypes.data, piece.nbytes
                    )
                if result == smile_lib.SMILE_SUCCESS:
                    break
                if result != smile_lib.SMILE_NOT_WRITTEN or not self.thread.is_alive():
                    raise OpenSmileError(
                        f"openSMILE stopped while audio was still coming in (code {result}, {self.error})"
                    )
                time.sleep(_RETRY_S)

    def finish(self) -> None:
        """Signal end of input and wait until openSMILE has delivered every frame."""
        self.smile.external_audio_source_set_eoi(SOURCE)
        self.thread.join()
        if self.error is not None:
            raise OpenSmileError(f"openSMILE failed: {self.error}") from self.error

    def close(self) -> None:
        """Abort, join and free; safe to call more than once, from any thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if getattr(self, "thread", None) is threading.current_thread():
            # Garbage collection can run a finalizer on openSMILE's own thread (inside the sink callback);
            # it cannot join itself, so a helper thread finishes the job.
            threading.Thread(target=self._stop_and_free, daemon=True).start()
        else:
            self._stop_and_free()

    def _stop_and_free(self) -> None:
        thread = getattr(self, "thread", None)
        # An abort that comes before run() has reached its loop is lost, so repeat it until run() returns.
        while thread is not None and thread.is_alive():
            with contextlib.suppress(smile_lib.OpenSmileException):  # run() may end on its own meanwhile
                self.smile.abort()
            thread.join(_ABORT_POLL_S)
        with self._io_lock:
            self.smile.free()
        with _live_lock:
            _live_engines.discard(self)


def _raise_failure(engine: _Engine) -> None:
    """What went wrong on openSMILE's thread in on_frames mode (where `frames()` is not called to say it)."""
    if engine.frames.failure is not None:
        raise engine.frames.failure
    if engine.frames.on_frames is not None and engine.frames.error:
        raise OpenSmileError(engine.frames.error)


@atexit.register
def _close_live_engines() -> None:
    with _live_lock:
        engines = list(_live_engines)
    for engine in engines:
        engine.close()


class StreamingExtractor:
    """Frames of `spec` from audio fed in chunks of any size, identical to `extract` on the whole signal.

    >>> with StreamingExtractor(spec) as stream:
    ...     for chunk in mic:                      # int16 or float in [-1, 1], shape (n,) or (n, 1)
    ...         stream.accept_waveform(chunk)
    ...         x = stream.frames()                # (n, F) float32, possibly n == 0
    ...     x_last = stream.end_of_input()         # the final frames (openSMILE holds back about 5)

    Frame k (counted from the start or the last `reset`) covers the input from k * spec.hop_s seconds on;
    `frame_index` is the index of the first frame the next `frames()` call returns. A frame comes out about
    90 ms of audio after its start. Input at another rate than spec.sample_rate (e.g. a 48 kHz microphone) is
    converted by a streaming libsoxr resampler whose output equals one-shot resampling of the whole signal,
    so the frames equal `extract(signal, input_rate, spec)` exactly, too.

    Memory is bounded: openSMILE works in fixed ring buffers. Frames not yet taken with `frames()` are kept.

    on_frames: instead of keeping the frames for `frames()`, hand each batch of them to this callable as soon
    as openSMILE has them, on openSMILE's own thread (`frames()` then returns none). A live caller then need
    not wake up again to collect them: they are analysed while it waits for the next block (`edge-emo
    listen`, runtime/recognizer.py). What it raises comes back from the next `accept_waveform` or
    `end_of_input`, and no frame reaches it after that.

    batch_s: audio is handed to openSMILE once at least this much is waiting (0: every chunk at once). Each
    hand-over wakes openSMILE's thread, which then runs every component of the configuration: live, with
    10 ms chunks, that bookkeeping cost as much CPU as the analysis itself. Batching changes no frame, only
    when frames come out (up to batch_s later).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        input_rate: int | None = None,
        *,
        batch_s: float = 0.0,
        on_frames: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        check_extractable(spec)
        if batch_s < 0:
            raise ValueError(f"batch_s must be >= 0, got {batch_s}")
        self.spec = spec
        self._on_frames = on_frames
        self.input_rate = check_rate(input_rate or spec.sample_rate, "stream")
        self._batch = round(batch_s * spec.sample_rate)  # samples at openSMILE's rate
        self._engine: _Engine | None = None
        self._start()

    def _start(self) -> None:
        self._resampler = (
            None
            if self.input_rate == self.spec.sample_rate
            else soxr.ResampleStream(self.input_rate, self.spec.sample_rate, 1, "float32", RESAMPLE_QUALITY)
        )
        self.frame_index = 0
        self._ended = False
        self._waiting: list[np.ndarray] = []  # int16 audio not yet handed to openSMILE (batch_s)
        self._waiting_n = 0
        self._engine = _Engine(self.spec, self._on_frames)

    def check(self, samples: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """`samples` as `accept_waveform` takes them, shape (n,); raises what it would raise for them, before
        anything is kept."""
        if sample_rate is not None and int(sample_rate) != self.input_rate:
            raise ValueError(
                f"stream was opened for {self.input_rate} Hz input, got {sample_rate} Hz "
                f"(pass input_rate={sample_rate} to StreamingExtractor)"
            )
        x = np.asarray(samples)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        elif x.ndim != 1:
            raise ChannelLayoutError(f"stream: expected mono samples (n,) or (n, 1), got shape {x.shape}")
        if x.dtype != np.int16 and not np.all(np.isfinite(x)):
            raise BadSamplesError("stream: audio chunk contains NaN or infinite samples")
        return x

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> None:
        """Feed mono audio: int16, or float in [-1, 1] (clipped); (n,) or (n, 1); any n, including 0 or 1."""
        self.accept_checked(self.check(samples, sample_rate))

    def accept_checked(self, x: np.ndarray) -> None:
        """`accept_waveform` for what `check` returned, without checking it again (a caller that needs the
        checked samples first, e.g. the recognizer's levels, checks once per block)."""
        engine = self._engine  # once: close() from another thread may clear the attribute meanwhile
        if engine is None or self._ended:
            raise RuntimeError("stream has ended or is closed: call reset() to start a new one")
        _raise_failure(engine)
        if self._resampler is not None:
            if x.dtype == np.int16:
                x = x.astype(np.float32) / np.float32(32768.0)
            x = self._resampler.resample_chunk(np.ascontiguousarray(x, dtype=np.float32))
        pcm = x if x.dtype == np.int16 else to_pcm16(x)
        if self._waiting_n + len(pcm) >= self._batch and not self._waiting:
            engine.write(np.ascontiguousarray(pcm))  # a closed engine raises RuntimeError, never writes
            return
        self._waiting.append(np.array(pcm, np.int16))  # a copy: the caller may reuse its buffer
        self._waiting_n += len(pcm)
        if self._waiting_n >= self._batch:
            self._hand_over(engine)

    def _hand_over(self, engine: _Engine) -> None:
        if self._waiting:
            engine.write(np.concatenate(self._waiting))
            self._waiting, self._waiting_n = [], 0

    def frames(self) -> np.ndarray:
        """Frames computed since the last call, (n, spec.dim) float32; n may be 0."""
        engine = self._engine  # once, as in accept_waveform
        if engine is None:
            return np.empty((0, self.spec.dim), dtype=np.float32)
        if engine.frames.error:
            raise OpenSmileError(engine.frames.error)
        out = engine.frames.take(self.spec.dim)
        self.frame_index += len(out)
        return out

    def end_of_input(self) -> np.ndarray:
        """Mark the end of the audio and return the remaining frames; then only reset() or close()."""
        engine = self._engine  # once, as in accept_waveform
        if engine is None:
            raise RuntimeError("stream is closed")
        if not self._ended:
            self._hand_over(engine)
            if self._resampler is not None:
                tail = self._resampler.resample_chunk(np.empty(0, dtype=np.float32), last=True)
                engine.write(to_pcm16(tail))
            self._ended = True
            engine.finish()
            _raise_failure(engine)
        return self.frames()

    flush = end_of_input

    def reset(self) -> None:
        """Drop all state (audio, frames not taken, resampler) and start a new stream at frame 0."""
        self.close()
        self._start()

    def close(self) -> None:
        """Stop openSMILE and free it (idempotent). Frames not taken are dropped."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def __enter__(self) -> StreamingExtractor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()

"""Audio sources for the recognizer: a microphone through PortAudio (sounddevice) and audio files.

The microphone is read in PortAudio's own callback thread, which only copies each block into a bounded
queue: it never waits, so a slow consumer loses whole blocks (counted in `dropped_blocks`) instead of
stalling the audio driver. Blocks are int16 at the model's rate if the device offers it, else at the device's
own rate (44.1/48 kHz), which the recognizer resamples.

sounddevice loads PortAudio when imported; it is imported here only when a device is needed, so a missing
PortAudio library is a clear error of `edge-emo listen`, never of `import edge_emo`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile

from edge_emo.features import AudioFileError, check_rate, require_audio_file, to_mono
from edge_emo.features.streaming import name_os_thread


class AudioSourceError(RuntimeError):
    """The audio source cannot be used or failed. `exit_code` is what `edge-emo listen` exits with."""

    exit_code = 3


class NoInputDeviceError(AudioSourceError):
    """No usable input device: none at all, none matching --device, or none at a usable rate."""

    exit_code = 3


class DeviceLostError(AudioSourceError):
    """The input device failed or stopped delivering audio while streaming (e.g. unplugged)."""

    exit_code = 4


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    channels: int
    default_rate: int
    is_default: bool


def _sounddevice():
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when the PortAudio library is missing
        raise NoInputDeviceError(
            f"cannot use a microphone: {e} (install PortAudio, e.g. `apt install libportaudio2`)"
        ) from None
    return sounddevice


def input_devices() -> list[InputDevice]:
    """Every device PortAudio can capture from."""
    sd = _sounddevice()
    apis = sd.query_hostapis()
    default = sd.default.device[0]
    return [
        InputDevice(
            index=d["index"],
            name=d["name"],
            host_api=apis[d["hostapi"]]["name"],
            channels=d["max_input_channels"],
            default_rate=int(d["default_samplerate"]),
            is_default=d["index"] == default,
        )
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


def find_device(wanted: str | int | None) -> InputDevice:
    """The input device given by index or name (exact, else a unique case-insensitive part of the name);
    the system default (else the first input) when `wanted` is None."""
    devices = input_devices()
    if not devices:
        raise NoInputDeviceError("no audio input device found")
    if wanted is None:
        return next((d for d in devices if d.is_default), devices[0])
    text = str(wanted).strip()
    if text.isdigit():
        match = [d for d in devices if d.index == int(text)]
    else:
        match = [d for d in devices if d.name.lower() == text.lower()] or [
            d for d in devices if text.lower() in d.name.lower()
        ]
    if len(match) == 1:
        return match[0]
    names = ", ".join(f"{d.index}: {d.name}" for d in (match or devices))
    reason = "matches several input devices" if match else "is not an input device"
    raise NoInputDeviceError(f"--device {text!r} {reason} (inputs: {names}; see `edge-emo devices`)")


def usable_rate(device: InputDevice, preferred: int) -> int:
    """The first rate the device takes for mono int16 capture: `preferred`, its default, 48 or 44.1 kHz."""
    sd = _sounddevice()
    tried = list(dict.fromkeys([preferred, device.default_rate, 48000, 44100]))
    for rate in tried:
        try:
            sd.check_input_settings(device=device.index, samplerate=rate, channels=1, dtype="int16")
            return rate
        except (sd.PortAudioError, ValueError):
            continue
    raise NoInputDeviceError(
        f"input device '{device.name}' takes none of {', '.join(map(str, tried))} Hz for mono 16-bit capture"
    )


# Audio per block of both sources. Every block wakes the listening process (the capture thread, then
# openSMILE's), and on a paced stream each wake-up costs far more CPU than the block's own work (cold caches:
# the same work fed as fast as it goes costs a quarter). With updates delivered on openSMILE's thread
# (EmotionRecognizer.deliver_to) a frame no longer waits for the next block, so 60 ms blocks cost about the
# latency 10 ms blocks had (median 143 against 132 ms; target 150) for about a fifth less CPU than the 10 and
# 30 ms blocks before (benchmarks/README.md, session 13). Larger blocks add latency again (80 ms: 161 ms).
LIVE_BLOCK_S = 0.06
_MAX_JOINED = 2  # blocks joined to the one a wake-up found (3 x 60 ms at most, when catching up)


class Microphone:
    """Mono int16 blocks from an input device, captured in PortAudio's callback thread.

    >>> with Microphone(find_device(None), preferred_rate=16000) as mic:
    ...     for block in mic.blocks():         # (n,) int16 at mic.rate
    ...         ...

    block_s: audio per callback (LIVE_BLOCK_S). buffer_s: audio the queue holds before blocks
    are dropped. max_s: stop after this much audio (then `blocks()` ends normally). stall_s: no
    audio for this long counts as a lost device (PortAudio does not always report one).
    """

    def __init__(
        self,
        device: InputDevice,
        preferred_rate: int = 16000,
        *,
        block_s: float = LIVE_BLOCK_S,
        buffer_s: float = 2.0,
        max_s: float | None = None,
        stall_s: float = 3.0,
    ) -> None:
        self.sd = _sounddevice()
        self.device = device
        self.rate = usable_rate(device, preferred_rate)
        self.block = max(1, round(block_s * self.rate))
        self.dropped_blocks = 0  # blocks the queue had no room for
        self.overflows = 0  # callbacks in which PortAudio itself reported lost input
        self.captured = 0  # samples delivered by the device
        self.stall_s = stall_s
        self._max_samples = None if max_s is None else max(1, round(max_s * self.rate))
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(2, round(buffer_s / block_s)))
        self._finished = threading.Event()
        self._completed = False  # max_samples reached
        self._closing = False
        try:
            self._stream = self.sd.InputStream(
                samplerate=self.rate,
                blocksize=self.block,
                device=device.index,
                channels=1,
                dtype="int16",
                callback=self._callback,
                finished_callback=self._finished.set,
            )
            self._stream.start()
        except self.sd.PortAudioError as e:
            raise NoInputDeviceError(
                f"cannot open input device '{device.name}' at {self.rate} Hz: {e}"
            ) from None

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        # PortAudio's thread: no waiting, no printing. indata is reused after return, so copy.
        if not self.captured:
            name_os_thread("edge-emo-audio")
        if status.input_overflow:
            self.overflows += 1
        block = indata[:, 0].copy()
        if self._max_samples is not None and self.captured + frames >= self._max_samples:
            block = block[: self._max_samples - self.captured]
            self._completed = True
        self.captured += len(block)
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self.dropped_blocks += 1
        if self._completed:
            raise self.sd.CallbackStop

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        """The captured blocks, in order, until max_samples, close() or `stop`; DeviceLostError if the device
        fails."""
        last = time.monotonic()
        while not (stop is not None and stop.is_set()):
            try:
                block = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing or (self._finished.is_set() and self._completed):
                    return
                if self._finished.is_set():
                    raise DeviceLostError(
                        f"input device '{self.device.name}' failed while streaming (disconnected?)"
                    ) from None
                if time.monotonic() - last > self.stall_s:
                    raise DeviceLostError(
                        f"input device '{self.device.name}' delivered no audio for {self.stall_s:g} s"
                    ) from None
                continue
            last = time.monotonic()
            # Blocks that came meanwhile (a sound card hands over a period of several at once) go out as one
            # array: one pass through the recognizer instead of several, the same updates.
            more = []
            while len(more) < _MAX_JOINED:
                try:
                    more.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            yield np.concatenate([block, *more]) if more else block

    def close(self) -> None:
        self._closing = True
        self._stream.close(ignore_errors=True)

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.device.name} ({self.device.host_api}, {self.rate} Hz)"


class AudioFileSource:
    """An audio file read in blocks (mono float32, stereo averaged), paced like a microphone unless `fast`;
    the first `max_s` seconds only if given. Paced, a block comes once its last sample would have been
    recorded; blocks of LIVE_BLOCK_S, as the microphone hands them over. The updates do not depend on the
    block size.

    Opening checks that the file is readable audio at a usable rate (`AudioFileError` or `SampleRateError`,
    ValueErrors, otherwise). A file that stops decoding part-way (e.g. a truncated FLAC) ends the stream
    there: what decoded is used, and `damaged` says why the rest was not."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fast: bool = False,
        block_s: float = LIVE_BLOCK_S,
        max_s: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        require_audio_file(self.path)
        try:
            self._file = soundfile.SoundFile(self.path)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
            raise AudioFileError(f"{self.path}: not a readable audio file ({e})") from None
        if self._file.frames == 0:
            self._file.close()
            raise AudioFileError(f"{self.path}: audio has no samples")
        try:
            self.rate = check_rate(self._file.samplerate, self.path)
        except ValueError:
            self._file.close()
            raise
        self.damaged: str | None = None  # why decoding stopped before the end of the file
        self.fast = fast
        self.block = max(1, round((1.0 if fast else block_s) * self.rate))
        self.dropped_blocks = 0
        self.captured = 0
        self._max_samples = None if max_s is None else max(1, round(max_s * self.rate))

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        start = time.monotonic()
        frames = self._file.frames if self._max_samples is None else min(self._file.frames, self._max_samples)
        # Read about a second at a time and hand it out in blocks: each read costs libsndfile a seek, which
        # at 10 ms blocks was a sizeable part of listening's CPU.
        read = self.block * max(1, round(self.rate / self.block))
        for data in self._decoded(frames, read):
            piece = to_mono(data.T, self.path)
            for at in range(0, len(piece), self.block):
                if stop is not None and stop.is_set():
                    return
                block = piece[at : at + self.block]
                if not self.fast:  # real time: no block before its last sample would have been recorded
                    delay = start + (self.captured + len(block)) / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.captured += len(block)
                yield block

    def _decoded(self, frames: int, read: int) -> Iterator[np.ndarray]:
        """The file's blocks of `read` frames until `frames` or the first block libsndfile cannot decode."""
        blocks = self._file.blocks(read, dtype="float32", always_2d=True, frames=frames)
        while True:
            try:
                data = next(blocks)
            except StopIteration:
                return
            except (soundfile.LibsndfileError, RuntimeError) as e:
                self.damaged = f"{self.path}: decoding stopped at {self.captured / self.rate:.2f} s ({e})"
                return
            if len(data) == 0:
                return
            yield data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioFileSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{os.path.basename(self.path)} ({self.rate} Hz{', fast' if self.fast else ''})"

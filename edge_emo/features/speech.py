"""Which frames are speech: an energy detector with an adaptive noise floor, shared by the live runtime and by
the training data, so that a model is trained on the stretches of audio the device will show it.

A fixed level threshold fails both ways on a wearable: at -20 dB microphone gain a quiet talker never reaches
-45 dBFS, and in a noisy street the background alone does. So the threshold follows the noise floor, taken
as the quietest the (slightly smoothed) level has been over the last `window_s` ("minimum statistics"):
speech pauses between words many times a second, steady noise does not, so the floor is the noise and not
the talker. A frame is loud at `margin_db` above the floor, within [`min_threshold_db`, `max_threshold_db`]
(a floor near digital silence must not make breath noise speech; a loud room must not hide speech
entirely). For its first `initial_s` a stream's floor is at most `initial_floor_db`, so speech at its very
start is heard. `threshold_db` set to a number turns all this off: a fixed threshold, as before.

Frame k is the mean square of the PCM samples of k * hop .. (k + 1) * hop (the feature frame with the same
index). `LoudnessGate` decides frame by frame and keeps its floor across calls (a stream); an
`UtteranceCutter` turns those decisions into utterances, frame by frame, for the live recognizer and for
`speech_segments` (whole clips) alike.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

# The share of a level change the smoothed level follows per 10 ms (a time constant of about 30 ms), taken
# per frame at any hop. Every setting of `Vad` is in seconds and means the same audio at a 10 or 20 ms hop
# (until session 11 the smoothing and the onset counted frames: at 20 ms the level followed over about 60
# ms and 40 ms of loud audio started an utterance).
_SMOOTHING_PER_10MS = 0.3
# Raised whenever the same `Vad` settings come to cut differently: cached cuts of training clips are then stale.
DETECTOR_VERSION = 2
_LOWEST_DB = -100.0  # levels below this (digital silence) count as this when tracking the floor


def frames_of(seconds: float, hop_s: float) -> int:
    """Frames that hold at least `seconds` of audio (the exact count where the hop divides it)."""
    return math.ceil(seconds / hop_s - 1e-9)


@dataclass(frozen=True)
class Vad:
    """Voice-activity detection on the PCM level, per feature frame (one hop of audio)."""

    threshold_db: float | None = None  # a fixed threshold (dB full scale); None: adaptive to the noise floor
    margin_db: float = 12.0  # adaptive: a frame is loud at this much above the noise floor
    min_threshold_db: float = -70.0  # adaptive threshold's limits
    max_threshold_db: float = -25.0
    window_s: float = 1.5  # adaptive: the floor is the quietest smoothed level over this long
    initial_floor_db: float = -60.0  # the floor assumed before the stream has shown one ...
    initial_s: float = 0.25  # ... for this long
    min_speech_s: float = 0.05  # this much consecutive loud audio starts an utterance
    hangover_s: float = 0.5  # pauses shorter than this stay inside the utterance
    max_utterance_s: float = 10.0  # longer speech is cut into utterances of this length

    def __post_init__(self) -> None:
        numbers = [v for v in vars(self).values() if v is not None]
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("voice-activity settings must be finite numbers")
        if (
            min(self.min_speech_s, self.hangover_s, self.max_utterance_s, self.window_s) <= 0
            or self.initial_s < 0
        ):
            raise ValueError("min_speech_s, hangover_s, max_utterance_s and window_s must be > 0")
        if self.min_threshold_db > self.max_threshold_db:
            raise ValueError("min_threshold_db must not exceed max_threshold_db")

    @property
    def describe(self) -> str:
        if self.threshold_db is not None:
            return f"fixed {self.threshold_db:g} dBFS"
        return (
            f"adaptive: noise floor + {self.margin_db:g} dB, "
            f"within {self.min_threshold_db:g}..{self.max_threshold_db:g} dBFS"
        )


DEFAULT_VAD = Vad()


class LoudnessGate:
    """Per-frame speech decisions of a stream of frame mean squares, carrying the noise floor across calls."""

    def __init__(self, vad: Vad, hop_s: float) -> None:
        self.vad = vad
        self._window = max(1, frames_of(vad.window_s, hop_s))
        per_10ms = hop_s / 0.01  # at 10 ms exactly the constant: a 10 ms model keeps the cut it learned with
        self._smoothing = (
            _SMOOTHING_PER_10MS if abs(per_10ms - 1) < 1e-9 else 1.0 - (1.0 - _SMOOTHING_PER_10MS) ** per_10ms
        )
        self._frame = 0
        self._smoothed: float | None = None
        # Candidates for the window's minimum, (frame, smoothed level) with rising levels: the first is the
        # floor. The initial floor enters as if it had been seen just long enough ago to leave at initial_s.
        first = frames_of(vad.initial_s, hop_s) - self._window
        self._minima: deque[tuple[int, float]] = deque([(first, vad.initial_floor_db)])
        if vad.threshold_db is not None:
            self._fixed = 10.0 ** (vad.threshold_db / 10.0)  # on the mean square

    @property
    def floor_db(self) -> float:
        return self._minima[0][1]

    def loud(self, squares: np.ndarray) -> np.ndarray:
        """(n,) bool: which frames of `squares` (mean squares, full scale 1.0) are loud."""
        squares = np.asarray(squares, np.float64)
        if self.vad.threshold_db is not None:
            return squares >= self._fixed
        vad, minima, smoothed, frame = self.vad, self._minima, self._smoothed, self._frame
        levels = 10.0 * np.log10(np.maximum(squares, 1e-30))
        out = np.empty(len(levels), bool)
        # A few operations per frame (100 per second of audio): negligible beside the features.
        for i, level in enumerate(levels.tolist()):
            tracked = max(level, _LOWEST_DB)
            smoothed = tracked if smoothed is None else smoothed + self._smoothing * (tracked - smoothed)
            while minima and minima[-1][1] >= smoothed:
                minima.pop()
            minima.append((frame, smoothed))
            while minima[0][0] <= frame - self._window:
                minima.popleft()
            threshold = min(max(minima[0][1] + vad.margin_db, vad.min_threshold_db), vad.max_threshold_db)
            out[i] = level >= threshold
            frame += 1
        self._smoothed, self._frame = smoothed, frame
        return out


def frame_squares(signal: np.ndarray, rate: int, hop_s: float = 0.01) -> np.ndarray:
    """Mean square of each hop of a float signal in [-1, 1] (the last, partial hop counts with what it has)."""
    hop = max(1, round(rate * hop_s))
    x = np.asarray(signal, np.float32)
    n = len(x) // hop
    squares = np.einsum("ij,ij->i", x[: n * hop].reshape(n, hop), x[: n * hop].reshape(n, hop)) / hop
    if len(x) > n * hop:
        squares = np.append(squares, np.mean(np.square(x[n * hop :], dtype=np.float64)))
    return squares.astype(np.float64)


class Cut(Enum):
    """What a frame does, as the `UtteranceCutter` decides."""

    silence = "silence"  # not speech, and no utterance is open: the frame is dropped
    hold = "hold"  # waits for what follows: a possible onset, or a pause inside the utterance
    start = "start"  # an utterance starts with the held frames and this one
    speech = "speech"  # the held frames and this one belong to the open utterance
    end = "end"  # the pause (the held frames and this one) was the end: dropped, the utterance is over


class UtteranceCutter:
    """The voice detector's utterances, one frame decision at a time (as silero-vad's VADIterator turns
    frame probabilities into start and end events): an utterance starts at the first of `min_speech_s`
    consecutive loud frames, runs through pauses shorter than `hangover_s` and ends at its last loud frame.
    Whoever buffers frames cuts an utterance longer than `max_frames` (at least one model chunk). With vad
    None every frame is to be called loud: the stream is one utterance."""

    def __init__(self, vad: Vad | None, hop_s: float, chunk_frames: int = 1) -> None:
        if vad is None:
            self.min_speech, self.hangover, self.max_frames = 1, 1, math.inf
        else:
            self.min_speech = max(1, frames_of(vad.min_speech_s, hop_s))
            self.hangover = max(1, frames_of(vad.hangover_s, hop_s))
            self.max_frames = max(chunk_frames, frames_of(vad.max_utterance_s, hop_s))
        self.speaking = False
        self.held = 0  # frames held so far, this one included once `step` returned hold

    def step(self, loud: bool) -> Cut:
        """The next frame's decision (see `Cut`)."""
        if not self.speaking and not loud:
            self.held = 0
            return Cut.silence
        self.held += 1
        if not self.speaking:
            if self.held < self.min_speech:
                return Cut.hold
            self.speaking, self.held = True, 0
            return Cut.start
        if loud:
            self.held = 0
            return Cut.speech
        if self.held >= self.hangover:
            self.speaking, self.held = False, 0
            return Cut.end
        return Cut.hold

    def end(self) -> None:
        """The stream is over: the open utterance (if any) ends at its last loud frame."""
        self.speaking, self.held = False, 0


def speech_segments(
    loud: Sequence[bool], vad: Vad, hop_s: float, chunk_frames: int = 1
) -> list[tuple[int, int]]:
    """Utterances [start, end) of frame indices, as the recognizer cuts a stream (`UtteranceCutter`): ended
    at their last loud frame (also at the end of the stream) and cut every `max_utterance_s`."""
    cutter = UtteranceCutter(vad, hop_s, chunk_frames)
    spans: list[tuple[int, int]] = []
    start, last = None, 0
    for i, is_loud in enumerate(loud):
        cut = cutter.step(bool(is_loud))
        if cut is Cut.start:
            start = i - cutter.min_speech + 1
        elif cut is Cut.end:
            spans.append((start, last + 1))
            start = None
        if is_loud and start is not None:
            last = i
    if start is not None:
        spans.append((start, last + 1))
    step = cutter.max_frames
    return [(s, min(s + step, end)) for begin, end in spans for s in range(begin, end, step)]


def utterance_spans(
    signal: np.ndarray, rate: int, vad: Vad = DEFAULT_VAD, hop_s: float = 0.01
) -> list[tuple[int, int]]:
    """The utterances [start, end) of feature-frame indices the device's detector cuts from a clip."""
    return speech_segments(LoudnessGate(vad, hop_s).loud(frame_squares(signal, rate, hop_s)), vad, hop_s)


def speech_seconds(signal: np.ndarray, rate: int, vad: Vad = DEFAULT_VAD, hop_s: float = 0.01) -> float:
    """Longest utterance the detector finds in a clip, in seconds (0.0: no speech)."""
    spans = utterance_spans(signal, rate, vad, hop_s)
    return max((end - start for start, end in spans), default=0) * hop_s

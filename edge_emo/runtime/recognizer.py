"""The streaming emotion recognizer: PCM of any rate, dtype and chunk size in, rolling emotion updates out.

    recognizer = EmotionRecognizer(load_bundle("default.bundle"))
    for block in microphone:                        # int16 or float, any size, any rate
        recognizer.accept_waveform(block, 48000)
        for update in recognizer.updates():
            print(update.to_json())
    recognizer.end_of_input()                      # closes the last utterance
    for update in recognizer.updates(): ...

    recognizer.deliver_to(show)                     # or: each update to show() the moment it exists

Pipeline: StreamingExtractor (openSMILE frames, resampled to the bundle's rate) -> utterance segmentation ->
BundleStream (normalise, GRU with carried state, running utterance mean) -> one update every
`update_interval_s` of audio.

Utterances. The model was trained on clips, one label per clip, and predicts a clip's intensities as the
mean over its frames. A continuous stream is cut into utterances by an energy voice-activity detector on the
PCM itself (`Vad`, edge_emo/features/speech.py: by default a threshold that follows the noise floor, the same
detector that cut the model's training clips): an utterance starts at the first of `min_speech_s` of loud
frames, continues through pauses shorter than `hangover_s`, and ends at its last loud frame;
it is also cut after `max_utterance_s` (a new one starts at once). The GRU state and the running mean are
reset at every utterance start, so nothing said before influences what comes after (no drift). Frames of a
pause are held back until the detector knows whether speech resumes: pauses inside an utterance belong to it,
trailing silence does not. In silence, updates say speech=False with zero intensities.

With `vad=None` the whole stream is one utterance, as `edge-emo evaluate` treats a clip: the final update
after `end_of_input()` then equals `np.clip(bundle.predict_utterances([extract_file(clip, bundle.spec)]),
0, 3)` exactly. With the detector on, each utterance's final update equals the same expression on the
utterance's frames `frames[start:end]` of the whole stream (start/end in `utterance_start_s` and
`utterance_s`), again exactly: frames go through the model in chunks of the bundle's `chunk_frames`
counted from the utterance start, as `predict_utterances` does.

Speaker adaptation. A bundle with `speaker_adaptation` standardises frames by its estimate of the speaker's
statistics (`RunningNorm`): the estimate in force is fixed at each utterance start (`speaker_norm`) and the
utterance's frames join it as they run. The exactness above then holds with `speaker_norm` in place of the
bundle's statistics; the first utterance of a stream uses the bundle's own.

Cues. Before an utterance holds `cue_after_s` of speech, its updates carry zero intensities and no dominant
emotion: the model learned from clips of whole utterances, and its mean over the first few frames is noise
(docs/QUALITY.md: with the onset shown, an emotion crossed 0.5 at some update in several times as many
LibriSpeech utterances as the finished utterances did). The final update always carries the utterance's
result, however short it is, so the exactness above is untouched.

Timing. Frame k covers the audio from k * hop on; openSMILE hands it over about 90 ms (10 ms hop) or 110 ms
(20 ms hop) after the frame's end. An update is due every `update_interval_s` of frames; inside an
utterance the schedule restarts at the utterance start, so with the default (one model chunk) every update
carries a freshly computed chunk. Updates depend only on the audio, never on how it was cut into blocks or
on wall time.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_emo.emotions import MAX_INTENSITY, PRESENT
from edge_emo.features import StreamingExtractor
from edge_emo.features.normalization import RunningNorm
from edge_emo.features.speech import DEFAULT_VAD, Cut, LoudnessGate, UtteranceCutter, Vad
from edge_emo.runtime.bundle import Bundle

_SILENT_DB = -120.0  # the level reported for digital silence
CUE_AFTER_S = 1.5  # speech an utterance needs before its rolling estimate is shown (see "Cues" above)
# Audio handed to openSMILE at once, at most: live at a 10 ms hop, 30 ms instead of every 10 ms block saved
# about 1.4% of a core (openSMILE's per-wake-up bookkeeping) for about 8 ms more median latency. The batch is
# a whole number of hops (`batch_for`), so a wake-up ends where a frame can: at a 20 ms hop a 30 ms batch
# left every other frame waiting 10 ms for the next one (median 160 ms against 150 for 20 ms batches, same
# CPU within noise; benchmarks/README.md).
BATCH_S = 0.03


def _weakly(method: Callable[[np.ndarray], None]) -> Callable[[np.ndarray], None]:
    """`method` called through a weak reference: openSMILE's engine (kept alive by the streaming module until
    it is closed) must not keep a forgotten recognizer, and so itself, alive."""
    ref = weakref.WeakMethod(method)

    def call(frames: np.ndarray) -> None:
        target = ref()
        if target is not None:
            target(frames)

    return call


def batch_for(hop_s: float) -> float:
    """The default batch at frames every `hop_s`: the most whole hops within BATCH_S (one at least)."""
    return max(1, math.floor(BATCH_S / hop_s + 1e-9)) * hop_s


class SpeechSink(Protocol):
    """Receives the raw frames of every utterance, as the model analyses them (e.g. a `FeatureLogger`)."""

    def start_segment(self, start_frame: int) -> None: ...  # index of its first frame in the stream

    def add_frame(self, row: np.ndarray) -> None: ...  # (F,) float32, valid during the call only

    def end_segment(self) -> None: ...


@dataclass(frozen=True)
class EmotionUpdate:
    """What the recognizer says about the audio up to `time_s`."""

    time_s: float  # end of the newest analysed frame, seconds since the stream started
    intensities: np.ndarray  # (E,) float32 in 0..3: the current utterance's estimate; zeros in silence
    emotions: tuple[str, ...]  # names of the intensities, the bundle's order
    dominant: str | None  # the strongest emotion if it reaches `dominant_min`, else None (always in silence)
    speech: bool  # inside an utterance
    utterance_start_s: float | None  # start of the current (or, when final, the finished) utterance
    utterance_s: float  # audio of the utterance analysed so far (its length when final); 0 in silence
    final: bool  # the last update of an utterance: intensities are its result
    level_db: float  # RMS level of the input over this update's frames, dB full scale
    # Speech of the current partner the speaker estimate rests on, seconds (older speech counts less; the
    # bundle's statistics weigh as much as `prior_s` of it); None: the bundle does not adapt to its speaker.
    speaker_heard_s: float | None = None

    def to_dict(self) -> dict:
        return {
            "time_s": round(self.time_s, 3),
            "speech": self.speech,
            "dominant": self.dominant,
            "intensities": {e: round(float(v), 4) for e, v in zip(self.emotions, self.intensities)},
            "utterance_start_s": None if self.utterance_start_s is None else round(self.utterance_start_s, 3),
            "utterance_s": round(self.utterance_s, 3),
            "final": self.final,
            "level_db": round(self.level_db, 1),
            "speaker_heard_s": None if self.speaker_heard_s is None else round(self.speaker_heard_s, 1),
        }

    def to_json(self) -> str:
        """One line of JSON (the `edge-emo listen --json` format)."""
        return json.dumps(self.to_dict(), separators=(", ", ": "))


@dataclass
class _Utterance:
    start: int  # absolute index of its first frame
    frames: int = 0  # frames committed to it so far


@dataclass
class _Levels:
    """Per-frame mean square of the input PCM, computed as blocks arrive, read when frames come out."""

    hop: int  # input samples per frame hop
    carry: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    squares: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    first: int = 0  # frame index of squares[0]

    def add(self, x: np.ndarray) -> None:
        """x: float32 samples in [-1, 1]."""
        if self.carry.size:
            x = np.concatenate([self.carry, x])
        n = (x.size // self.hop) * self.hop
        hops = x[:n].reshape(-1, self.hop)
        self.squares = np.concatenate([self.squares, np.einsum("ij,ij->i", hops, hops) / self.hop])
        self.carry = x[n:].copy()

    def end(self) -> None:
        """The last, partial hop counts with what it has."""
        if self.carry.size:
            self.squares = np.append(self.squares, np.mean(np.square(self.carry, dtype=np.float64)))
            self.carry = self.carry[:0]

    def take(self, first: int, n: int) -> np.ndarray:
        """Mean squares of frames first..first+n-1 (frames the PCM never reached count as silence)."""
        start = first - self.first
        out = np.zeros(n, np.float64)
        have = self.squares[start : start + n]
        out[: have.size] = have
        self.squares = self.squares[start + n :]
        self.first = first + n
        return out


class EmotionRecognizer:
    """Rolling emotion updates from a stream of audio (see the module docstring).

    bundle: a loaded `Bundle`. update_interval_s: audio between updates (rounded to whole frames; None: one
    model chunk, so that every update carries a freshly computed chunk).
    smoothing_s: time constant of exponential smoothing of the reported intensities (0: none, exact model
    output). threads: onnxruntime intra-op threads. vad: a `Vad`, or None for one utterance per stream.
    dominant_min: the least intensity that names a dominant emotion. cue_after_s: speech of an utterance
    before its updates show an estimate (its final update always does). input_rate: the PCM rate, if known
    before the first `accept_waveform` (which may also give it). speech_sink: gets each utterance's raw
    frames (`SpeechSink`); nothing else of the audio leaves the recognizer. batch_s: audio handed to openSMILE
    at once (see `StreamingExtractor`; None: `batch_for` the hop): less CPU live, updates up to that much
    later; never other updates.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        update_interval_s: float | None = None,
        smoothing_s: float = 0.0,
        threads: int = 1,
        vad: Vad | None = DEFAULT_VAD,
        dominant_min: float = PRESENT,
        cue_after_s: float = CUE_AFTER_S,
        input_rate: int | None = None,
        speech_sink: SpeechSink | None = None,
        batch_s: float | None = None,
    ) -> None:
        from edge_emo.features.smile import check_extractable

        check_extractable(bundle.spec)  # a bundle for features this openSMILE cannot make fails here
        # Written so that NaN fails too (every comparison with NaN is false).
        if update_interval_s is None:
            update_interval_s = bundle.chunk_s
        if not (0 < update_interval_s < math.inf and 0 <= smoothing_s < math.inf and threads >= 1):
            raise ValueError("update_interval_s must be > 0, smoothing_s >= 0 (both finite) and threads >= 1")
        if not 0 <= cue_after_s < math.inf:
            raise ValueError(f"cue_after_s must be >= 0 and finite, got {cue_after_s}")
        if vad is not None and vad.threshold_db is not None and not (-120 <= vad.threshold_db <= 0):
            raise ValueError(f"VAD threshold {vad.threshold_db} dBFS is outside -120..0")
        self.bundle = bundle
        self.emotions = bundle.emotions
        self.hop_s = bundle.spec.hop_s
        self.update_frames = max(1, round(update_interval_s / self.hop_s))
        self.smoothing_s = smoothing_s
        self.vad = vad
        self.dominant_min = dominant_min
        self.cue_after_frames = round(cue_after_s / self.hop_s)
        self.speech_sink = speech_sink
        self.batch_s = batch_for(self.hop_s) if batch_s is None else batch_s
        self._model = bundle.stream(bundle.session(threads))
        self._chunk = bundle.chunk_frames
        cutter = UtteranceCutter(vad, self.hop_s, self._chunk)
        held = max(cutter.min_speech, cutter.hangover)
        # Frames not yet run: [0, _n_committed) belong to the utterance and wait for a full chunk;
        # [_n_committed, _n_committed + _n_held) wait for the detector (a pause or a possible onset).
        self._buf = np.empty((self._chunk + held + 1, bundle.spec.dim), np.float32)
        self._extractor: StreamingExtractor | None = None
        self.input_rate = input_rate
        self._deliver: Callable[[EmotionUpdate], None] | None = None
        # _Levels is filled by the feeding thread and, with deliver_to, read on openSMILE's.
        self._levels_lock = threading.Lock()
        self._start_stream()

    def deliver_to(self, callback: Callable[[EmotionUpdate], None] | None) -> None:
        """Hand every update to `callback` the moment it exists instead of keeping it for `updates()`.

        The frames are then analysed on openSMILE's thread as it computes them, and `callback` runs there too
        (for the updates of `end_of_input`, on the caller's thread). Live, this saves the wait for the next
        block before new frames are looked at (about one block of latency), which is what lets `edge-emo
        listen` take its audio in larger blocks, i.e. wake up less often (benchmarks/README.md, session 13).
        The updates are the same either way. What `callback` (or the analysis) raises comes back from the
        next `accept_waveform` or `end_of_input`. Call it before the stream's first audio."""
        if self._extractor is not None:
            raise RuntimeError("deliver_to must be called before the stream's first audio")
        self._deliver = callback

    # -- feeding ---------------------------------------------------------------------------------------

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> None:
        """Feed mono audio: int16, or float in [-1, 1]; shape (n,) or (n, 1); any n. The rate is fixed by
        the first call that gives one (or by input_rate); it defaults to the bundle's rate."""
        if sample_rate is not None and self.input_rate is None:
            self.input_rate = int(sample_rate)
        if self._extractor is None:
            self._extractor = StreamingExtractor(
                self.bundle.spec,
                self.input_rate,
                batch_s=self.batch_s,
                on_frames=None if self._deliver is None else _weakly(self._on_frames),
            )
            self._levels = _Levels(hop=round(self._extractor.input_rate * self.hop_s))
        x = self._extractor.check(samples, sample_rate)  # the rate, the shape and the values
        scale = np.float32(1 / 32768) if x.dtype == np.int16 else np.float32(1)
        with self._levels_lock:  # before openSMILE has the audio: its frames' levels are there when they are
            self._levels.add(np.multiply(x, scale, dtype=np.float32))
        self._extractor.accept_checked(x)
        if self._deliver is None:
            self._process(self._extractor.frames())

    def end_of_input(self) -> None:
        """The stream is over: analyse the last frames and close the open utterance (its final update)."""
        if self._extractor is None:
            return
        with self._levels_lock:
            self._levels.end()
        self._process(self._extractor.end_of_input())  # with deliver_to: after openSMILE's thread is done
        if self._utt is not None:
            self._n_held = 0  # trailing silence, or an onset too short to be speech
            self._cutter.end()
            self._end_utterance()
        self._extractor.close()
        self._hand_on()

    def updates(self) -> Iterator[EmotionUpdate]:
        """The updates produced since the last call, oldest first (none with `deliver_to`)."""
        while self._pending:
            yield self._pending.pop(0)

    def reset(self) -> None:
        """Forget everything and start a new stream at time 0 (same input rate)."""
        self.close()
        self._start_stream()

    def close(self) -> None:
        if self._extractor is not None:
            self._extractor.close()
            self._extractor = None

    def __enter__(self) -> EmotionRecognizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def speaker_norm(self):
        """The statistics that standardise the current (or next) utterance: the bundle's, or the speaker
        estimate in force (`NormStats`)."""
        return self._model.norm if self._utt is not None or self._speaker is None else self._speaker.stats()

    @property
    def time_s(self) -> float:
        """Audio analysed so far (end of the newest frame)."""
        return self._frame * self.hop_s

    # -- the frame loop --------------------------------------------------------------------------------

    def _start_stream(self) -> None:
        self._extractor = None
        self._gate = None if self.vad is None else LoudnessGate(self.vad, self.hop_s)
        self._cutter = UtteranceCutter(self.vad, self.hop_s, self._chunk)
        adaptation = self.bundle.adaptation
        self._speaker = None if adaptation is None else RunningNorm(self.bundle.norm, adaptation, self.hop_s)
        self._model.norm = self.bundle.norm
        self._frame = 0  # absolute index of the next frame
        self._utt: _Utterance | None = None
        self._n_committed = 0
        self._n_held = 0
        self._since_update = 0
        self._level_sum = 0.0
        self._level_frames = 0
        self._smoothed = np.zeros(len(self.emotions), np.float32)
        self._last_update_s = 0.0
        self._pending: list[EmotionUpdate] = []

    def _on_frames(self, frames: np.ndarray) -> None:
        """deliver_to: openSMILE's thread, as soon as it has computed `frames`."""
        self._process(frames)
        self._hand_on()

    def _hand_on(self) -> None:
        while self._deliver is not None and self._pending:
            self._deliver(self._pending.pop(0))

    def _process(self, frames: np.ndarray) -> None:
        if len(frames) == 0:
            return
        with self._levels_lock:
            squares = self._levels.take(self._frame, len(frames))
        loud = np.ones(len(frames), bool) if self._gate is None else self._gate.loud(squares)
        # A decision per frame: a few integer operations each, about 1 us, i.e. 1e-4 of real time.
        for row, is_loud, square in zip(frames, loud.tolist(), squares.tolist()):
            self._step(row, is_loud, square)

    def _step(self, row: np.ndarray, loud: bool, square: float) -> None:
        frame = self._frame
        self._frame += 1
        self._since_update += 1
        self._level_frames += 1
        self._level_sum += square
        cut = self._cutter.step(loud)
        if cut is Cut.silence:
            self._n_held = 0  # an onset that was too short: silence after all
        else:
            self._buf[self._n_committed + self._n_held] = row
            self._n_held += 1
            if cut is Cut.start:
                self._start_utterance(frame - self._n_held + 1)
                self._commit_held()
            elif cut is Cut.speech:
                self._commit_held()
            elif cut is Cut.end:
                self._n_held = 0  # the pause was the end: drop it
                self._end_utterance()
        if self._since_update >= self.update_frames:
            self._emit(final=False)

    def _start_utterance(self, start: int) -> None:
        self._utt = _Utterance(start)
        self._model.reset()
        if self._speaker is not None:
            self._model.norm = self._speaker.stats()
        if self.speech_sink is not None:
            self.speech_sink.start_segment(start)
        self._since_update = self._frame - start  # updates follow the utterance's chunks

    def _commit_held(self) -> None:
        for _ in range(self._n_held):
            self._n_held -= 1
            self._n_committed += 1
            self._utt.frames += 1
            if self.speech_sink is not None:
                self.speech_sink.add_frame(self._buf[self._n_committed - 1])
            if self._n_committed == self._chunk:
                self._run(self._chunk)
            if self._utt.frames >= self._cutter.max_frames:
                next_start = self._utt.start + self._utt.frames
                self._end_utterance()
                self._start_utterance(next_start)

    def _run(self, n: int) -> None:
        self._model.run_chunk(self._buf[:n])
        if self._speaker is not None:
            self._speaker.add(self._buf[:n])
        rest = self._n_held
        if rest:
            self._buf[:rest] = self._buf[n : n + rest]
        self._n_committed = 0

    def _end_utterance(self) -> None:
        if self._n_committed:
            self._run(self._n_committed)  # the shorter last chunk, as predict_utterances runs it
        self._emit(final=True)
        self._utt = None
        if self.speech_sink is not None:
            self.speech_sink.end_segment()

    def _emit(self, final: bool) -> None:
        utt = self._utt
        if utt is not None and self._model.frames and (final or utt.frames >= self.cue_after_frames):
            raw = np.clip(self._model.utterance_intensities(), 0.0, MAX_INTENSITY)
        else:
            raw = np.zeros(len(self.emotions), np.float32)
        time_s = self._frame * self.hop_s
        if self.smoothing_s > 0:
            alpha = 1.0 - math.exp(-(time_s - self._last_update_s) / self.smoothing_s)
            self._smoothed += np.float32(alpha) * (raw - self._smoothed)
            intensities = self._smoothed.copy()
        else:
            intensities = raw
        top = int(np.argmax(intensities))
        dominant = self.emotions[top] if utt is not None and intensities[top] >= self.dominant_min else None
        level = self._level_sum / max(self._level_frames, 1)
        self._pending.append(
            EmotionUpdate(
                time_s=time_s,
                intensities=intensities,
                emotions=self.emotions,
                dominant=dominant,
                speech=utt is not None,
                utterance_start_s=None if utt is None else utt.start * self.hop_s,
                utterance_s=0.0 if utt is None else utt.frames * self.hop_s,
                final=final,
                level_db=10.0 * math.log10(level) if level > 0 else _SILENT_DB,
                speaker_heard_s=None if self._speaker is None else self._speaker.speech_frames * self.hop_s,
            )
        )
        self._since_update = 0
        self._level_sum = 0.0
        self._level_frames = 0
        self._last_update_s = time_s

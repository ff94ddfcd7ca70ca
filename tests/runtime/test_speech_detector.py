"""The adaptive voice-activity detector (edge_emo/features/speech.py): the offline segmentation that cuts
training clips equals the live recognizer's utterances, and speech is found at -20 dB gain and in noise."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emo.features.speech import (
    LoudnessGate,
    UtteranceCutter,
    Vad,
    frame_squares,
    speech_seconds,
    speech_segments,
    utterance_spans,
)
from edge_emo.runtime.recognizer import EmotionRecognizer
from tests.fixtures import synth_speech
from tests.runtime.test_recognizer import HOP, speech_and_silence, stream

PARTS = [
    ("silence", 0.6, 0),
    ("speech", 1.6, 1),
    ("silence", 0.9, 0),
    ("speech", 1.2, 2),
    ("silence", 0.7, 0),
]


@pytest.mark.parametrize("gain_db", [-20.0, 0.0, 12.0])
def test_offline_segments_are_the_recognizers_utterances(bundle, gain_db):
    x = (speech_and_silence(PARTS) * 10 ** (gain_db / 20)).clip(-1, 1).astype(np.float32)
    finals = [u for u in stream(EmotionRecognizer(bundle), x, 16000, 333) if u.final]
    live = [
        (round(u.utterance_start_s / HOP), round((u.utterance_start_s + u.utterance_s) / HOP)) for u in finals
    ]
    vad = Vad()
    offline = speech_segments(
        LoudnessGate(vad, HOP).loud(frame_squares(x, 16000, HOP)), vad, HOP, bundle.chunk_frames
    )
    assert live == offline
    assert len(live) == 2  # both pieces of speech, at every gain


def test_every_setting_means_seconds_at_either_hop():
    """At 20 ms the detector hears what it hears at 10 ms: the onset needs at least 50 ms of loud audio (3
    frames, not 2), the level follows with the same time constant (after one 20 ms frame as far as after
    two 10 ms ones), so the same audio is cut at the same times, within a frame."""
    cut = UtteranceCutter(Vad(), 0.02)
    assert (cut.min_speech, cut.hangover, cut.max_frames) == (3, 25, 500)
    step = np.r_[np.full(8, 1e-6), np.full(8, 1e-2)]  # -60 dBFS, then -20 dBFS
    smoothed = {}
    for hop, squares in ((0.01, np.repeat(step, 2)), (0.02, step)):
        gate = LoudnessGate(Vad(), hop)
        gate.loud(squares[: round(0.18 / hop)])  # up to 20 ms after the step
        smoothed[hop] = gate._smoothed
    assert smoothed[0.02] == pytest.approx(smoothed[0.01], abs=1e-9)
    for gain_db in (-20.0, 0.0):
        x = (speech_and_silence(PARTS) * 10 ** (gain_db / 20)).astype(np.float32)
        at10, at20 = (np.array(utterance_spans(x, 16000, Vad(), hop)) * hop for hop in (0.01, 0.02))
        assert at10.shape == at20.shape == (2, 2) and np.abs(at10 - at20).max() <= 0.02 + 1e-9


def test_the_gate_carries_its_floor_across_calls():
    squares = frame_squares(speech_and_silence(PARTS), 16000, HOP)
    whole = LoudnessGate(Vad(), HOP).loud(squares)
    gate = LoudnessGate(Vad(), HOP)
    pieces = np.concatenate([gate.loud(squares[i : i + 37]) for i in range(0, len(squares), 37)])
    np.testing.assert_array_equal(whole, pieces)


def test_quiet_speech_is_found_where_a_fixed_threshold_misses_it():
    x = speech_and_silence(PARTS) * 10 ** (-35 / 20)  # speech peaks near -41 dBFS, loud frames near -55
    assert speech_seconds(x, 16000, Vad(threshold_db=-45.0)) < 0.5
    assert speech_seconds(x, 16000) > 1.0


def test_a_steady_noisy_room_is_not_speech_but_speech_over_it_is():
    rng = np.random.default_rng(3)
    noise = (0.01 * rng.standard_normal(16000 * 4)).astype(np.float32)  # -40 dBFS: over -45
    assert speech_seconds(noise, 16000, Vad(threshold_db=-45.0)) > 3.0
    assert speech_seconds(noise, 16000) <= Vad().initial_s  # only while the floor is still unknown
    talk = noise.copy()
    talk[16000 : 16000 + 24000] += synth_speech(1.5, seed=4)
    assert speech_seconds(talk, 16000) > 0.8


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="finite"):
        Vad(threshold_db=float("nan"))
    with pytest.raises(ValueError, match="> 0"):
        Vad(hangover_s=0)

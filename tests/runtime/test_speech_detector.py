"""The adaptive voice-activity detector (edge_emo/features/speech.py): the offline segmentation that cuts
training clips equals the live recognizer's utterances, and speech is found at -20 dB gain and in noise."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emo.features.speech import (
    LoudnessGate,
    Vad,
    frame_squares,
    speech_seconds,
    speech_segments,
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

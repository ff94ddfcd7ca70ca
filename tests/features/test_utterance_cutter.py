"""The voice detector's utterance cutter on its own: frame decisions in, what each frame does out. (That the
live recognizer cuts the same utterances as `speech_segments` is tests/runtime/test_speech_detector.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from edge_emo.features.speech import Cut, UtteranceCutter, Vad, speech_segments

HOP = 0.01
VAD = Vad(min_speech_s=0.03, hangover_s=0.04, max_utterance_s=0.1)  # 3 loud frames start, 4 quiet end


def cuts(loud: str, vad: Vad | None = VAD) -> str:
    """One letter per frame: '.' silence, 'h' hold, 'S' start, 's' speech, 'E' end."""
    letters = {Cut.silence: ".", Cut.hold: "h", Cut.start: "S", Cut.speech: "s", Cut.end: "E"}
    cutter = UtteranceCutter(vad, HOP)
    return "".join(letters[cutter.step(c == "#")] for c in loud)


@pytest.mark.parametrize(
    ("loud", "expected"),
    [
        ("__##_###__", "..hh.hhShh"),  # a 2-frame onset is not speech; 3 frames are
        ("###_##____#", "hhShsshhhEh"),  # a 1-frame pause stays inside; 4 quiet frames end it
        ("#__#_", "h..h."),  # onsets broken by silence never start
    ],
)
def test_each_frame_is_held_started_continued_or_ended(loud, expected):
    assert cuts(loud) == expected


def test_without_a_vad_every_frame_is_one_utterance():
    assert cuts("#####", vad=None) == "Sssss"


def test_end_of_stream_closes_the_open_utterance():
    cutter = UtteranceCutter(VAD, HOP)
    assert [cutter.step(True) for _ in range(3)][-1] is Cut.start
    cutter.end()
    assert not cutter.speaking and cutter.step(False) is Cut.silence


def test_offline_segments_follow_the_cutter_and_split_long_speech():
    loud = np.array([c == "#" for c in "__###_##________" + "#" * 25 + "___"])
    # The first utterance ends at its last loud frame (7); the second is cut every 10 frames (0.1 s).
    assert speech_segments(loud, VAD, HOP) == [(2, 8), (16, 26), (26, 36), (36, 41)]

"""Ten minutes of speech and silence through one recognizer: every utterance comes out as if it had been
processed alone, at minute 9 as at minute 0 (no state, timing or buffer drift)."""

from __future__ import annotations

import numpy as np

from edge_emo.features import extract
from edge_emo.runtime.recognizer import EmotionRecognizer
from tests.fixtures import synth_speech
from tests.runtime.test_recognizer import offline, span, stream

RATE = 16000
FRAME = 160  # samples per 10 ms hop: gaps are whole frames, so every utterance meets the same frame grid


def final_updates(bundle, x: np.ndarray) -> list:
    return [u for u in stream(EmotionRecognizer(bundle), x, RATE, block=RATE) if u.final]


def test_ten_minutes_without_drift(bundle):
    rng = np.random.default_rng(1)
    snippets = [
        synth_speech(FRAME * int(rng.integers(200, 500)) / RATE, RATE, seed=200 + i) for i in range(12)
    ]
    pieces, onsets, which = [], [], []
    n = 0
    while n < 600 * RATE:
        k = len(onsets) % len(snippets)
        gap = np.zeros(FRAME * int(rng.integers(80, 300)), np.float32)  # 0.8-3 s of silence
        pieces += [gap, snippets[k]]
        onsets.append((n + gap.size) / RATE)
        which.append(k)
        n += gap.size + snippets[k].size
    pieces.append(np.zeros(RATE, np.float32))
    x = np.concatenate(pieces)
    assert x.size >= 600 * RATE

    # each snippet on its own, between 0.8 s of silence: one or more utterances (a long pause splits one)
    lead = np.zeros(FRAME * 80, np.float32)
    alone = [final_updates(bundle, np.concatenate([lead, snippet, lead])) for snippet in snippets]
    expected = [(onset, u) for onset, k in zip(onsets, which) for u in alone[k]]

    finals = final_updates(bundle, x)
    assert len(finals) == len(expected)
    frames = extract(x, RATE, bundle.spec)
    for u, (onset, single) in zip(finals, expected):
        # exactly the offline result on its frames of the whole stream
        np.testing.assert_array_equal(u.intensities, offline(bundle, frames[span(u)]))
        # and what the utterance gives streamed on its own, at the same place relative to its audio, whether
        # it comes in the first minute or in the tenth
        np.testing.assert_allclose(u.intensities, single.intensities, atol=1e-6)
        assert abs(u.utterance_s - single.utterance_s) < 1e-6
        assert abs((u.utterance_start_s - onset) - (single.utterance_start_s - 0.8)) < 1e-6

"""Speaker adaptation (edge_emo/features/normalization.py): the offline estimate that training and evaluate
use, the device's running estimate, and the level the microphone adds cancelling out."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emo.features.normalization import (
    NormStats,
    RunningNorm,
    SpeakerAdaptation,
    blended,
    is_unknown_speaker,
    speaker_adapted,
)

HOP = 0.01
DIM = 4


def frames(n: int, mean: float, std: float, seed: int) -> np.ndarray:
    return (mean + std * np.random.default_rng(seed).standard_normal((n, DIM))).astype(np.float32)


PRIOR = NormStats(np.zeros(DIM, np.float32), np.ones(DIM, np.float32))


def test_adapted_frames_are_standardised_by_the_speakers_blended_estimate():
    adaptation = SpeakerAdaptation(prior_s=1.0, memory_s=600.0)  # the prior counts as 100 frames
    clips = [frames(300, 5.0, 2.0, 0), frames(200, 5.0, 2.0, 1), frames(150, -3.0, 0.5, 2)]
    out = speaker_adapted(clips, ["a", "a", "b"], PRIOR, adaptation, HOP)
    own_a = blended(PRIOR, NormStats.frame_sums(clips[:2], DIM), 100)
    np.testing.assert_allclose(PRIOR.apply(out[0]), own_a.apply(clips[0]), atol=1e-4)
    # 500 frames of the speaker against 100 of the prior: the estimate sits 5/6 of the way to the speaker
    np.testing.assert_allclose(own_a.mean, np.concatenate(clips[:2]).mean(0) * 500 / 600, rtol=1e-5)
    # speaker b is standardised by b's own statistics only
    own_b = blended(PRIOR, NormStats.frame_sums(clips[2:], DIM), 100)
    np.testing.assert_allclose(PRIOR.apply(out[2]), own_b.apply(clips[2]), atol=1e-4)


def test_an_unknown_speaker_is_each_clip_on_its_own():
    assert is_unknown_speaker("") and is_unknown_speaker("wild_unknown_house")
    assert not is_unknown_speaker("ravdess_01")
    adaptation = SpeakerAdaptation(prior_s=1.0, memory_s=600.0)
    clips = [frames(50, 5.0, 1.0, 0), frames(50, -5.0, 1.0, 1)]
    pooled = speaker_adapted(clips, ["x", "x"], PRIOR, adaptation, HOP)
    alone = speaker_adapted(clips, ["wild_unknown_misc"] * 2, PRIOR, adaptation, HOP)
    for clip, result in zip(clips, alone):
        np.testing.assert_allclose(
            result, speaker_adapted([clip], ["someone"], PRIOR, adaptation, HOP)[0], atol=1e-5
        )
    assert not np.allclose(pooled[0], alone[0])


def test_the_running_estimate_is_the_offline_one_and_forgets_old_speech():
    utterances = [frames(120, 2.0, 3.0, i) for i in range(5)]
    long_memory = RunningNorm(PRIOR, SpeakerAdaptation(prior_s=1.0, memory_s=1e9), HOP)
    assert long_memory.stats() is PRIOR  # before any speech: exactly the bundle's statistics
    for u in utterances:
        long_memory.add(u)
    offline = blended(PRIOR, NormStats.frame_sums(utterances, DIM), 100)
    np.testing.assert_allclose(long_memory.stats().mean, offline.mean, rtol=1e-5)
    np.testing.assert_allclose(long_memory.stats().std, offline.std, rtol=1e-5)
    # a new partner takes over: after 60 s of their speech with a 10 s memory, fed in the device's chunks
    # of 10 frames, the old partner is forgotten: what is left is the new one and the prior (1 s of 10 s)
    short = RunningNorm(PRIOR, SpeakerAdaptation(prior_s=1.0, memory_s=10.0), HOP)
    for partner in (frames(6000, 8.0, 1.0, 7), frames(6000, -4.0, 1.0, 8)):
        for start in range(0, len(partner), 10):
            short.add(partner[start : start + 10])
    np.testing.assert_allclose(short.stats().mean, -4.0 * 1000 / 1100, atol=0.1)
    assert short.speech_frames == pytest.approx(1000, rel=0.02)


@pytest.mark.parametrize("gain_db", [-20.0, 12.0])
def test_a_level_shift_of_every_frame_cancels_out(gain_db):
    """A gain adds a constant to level-like features (dB) and scales loudness-like ones: both vanish once
    a speaker's frames are standardised by the speaker's estimate (up to the prior's small weight)."""
    adaptation = SpeakerAdaptation(prior_s=1e-4, memory_s=600.0)  # a hundredth of a frame of prior
    clips = [frames(400, 1.0, 2.0, i) for i in range(3)]
    scale = np.float32((10 ** (gain_db / 20)) ** 0.6)  # loudness-like columns scale
    shifted = [np.concatenate([c[:, :2] + gain_db, c[:, 2:] * scale], axis=1) for c in clips]
    a = speaker_adapted(clips, ["s"] * 3, PRIOR, adaptation, HOP)
    b = speaker_adapted(shifted, ["s"] * 3, PRIOR, adaptation, HOP)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=0.05)


def test_bad_adaptation_settings_are_refused():
    with pytest.raises(ValueError, match="positive"):
        SpeakerAdaptation(prior_s=0.0)
    with pytest.raises(ValueError, match="one speaker per clip"):
        speaker_adapted([frames(5, 0, 1, 0)], [], PRIOR, SpeakerAdaptation(), HOP)

"""Unlabeled adaptation: the bundle's input normalisation re-estimated from the wearer's partner's speech.

The graph sees standardised frames, (x - mean) / std with the bundle's training statistics. A speaker whose
voice sits away from the training mean (pitch, loudness, formants, microphone) shifts every frame the same
way; standardising with that speaker's own statistics removes the shift without a single label. The new
statistics travel in the personal bundle's manifest (`normalization`), which the runtime already reads, so
nothing else changes on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

from edge_emo.features.normalization import NormStats


class SpeakerNorm(str, Enum):
    """How much of the speaker's statistics replaces the bundle's."""

    global_ = "global"  # the bundle's own (no adaptation)
    half = "spk_half"  # mean half-way to the speaker's, the bundle's std
    mean = "spk_mean"  # the speaker's mean, the bundle's std
    full = "spk_full"  # the speaker's mean and std


def speaker_norm(shipped: NormStats, frames: Sequence[np.ndarray], kind: SpeakerNorm | str) -> NormStats:
    """Normalisation statistics for one speaker from their raw frames (any number of segments), computed
    exactly as the training statistics are (NormStats.fit: every finite value of every frame)."""
    kind = SpeakerNorm(kind)
    if kind is SpeakerNorm.global_:
        return shipped
    own = NormStats.fit(frames)
    if kind is SpeakerNorm.half:
        return NormStats((0.5 * (shipped.mean + own.mean)).astype(np.float32), shipped.std)
    if kind is SpeakerNorm.mean:
        return NormStats(own.mean, shipped.std)
    return own

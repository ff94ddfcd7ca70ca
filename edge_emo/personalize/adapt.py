"""Unlabeled adaptation: the bundle's input normalisation re-estimated from the wearer's partner's speech.

The graph sees standardised frames, (x - mean) / std with the bundle's training statistics. A speaker whose
voice sits away from the training mean (pitch, loudness, formants, microphone) shifts every frame the same
way; standardising with that speaker's own statistics removes the shift without a single label. The new
statistics travel in the personal bundle's manifest (`normalization`), which the runtime already reads, so
nothing else changes on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path

import numpy as np

from edge_emo.features.log_format import shard_paths
from edge_emo.features.normalization import NormStats
from edge_emo.runtime.bundle import Bundle


class PersonalizeError(ValueError):
    """Personalization cannot run on this input; nothing was changed."""


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


# Less speech than this gives statistics that move with what was said rather than with the voice.
MIN_UNLABELED_S = 60.0


def load_unlabeled(folder: str | Path, bundle: Bundle) -> list[np.ndarray]:
    """The speech segments of a feature log (`edge-emo listen --log-features DIR`) in the bundle's feature
    spec, checked: a feature log, of the bundle's features, with at least MIN_UNLABELED_S of speech."""
    from edge_emo.data.log_corpus import load_feature_log

    folder = Path(folder)
    if not folder.is_dir() or not shard_paths(folder):
        raise PersonalizeError(
            f"{folder}: not a feature log (no features-NNNNNNNN.npz; record one with `edge-emo listen "
            "--log-features DIR`)"
        )
    frames = [f for f in load_feature_log(folder, bundle.spec).features if len(f)]
    seconds = sum(len(f) for f in frames) * bundle.spec.hop_s
    if seconds < MIN_UNLABELED_S:
        raise PersonalizeError(
            f"{folder}: {seconds:.0f} s of logged speech; adapting needs at least {MIN_UNLABELED_S:g} s"
        )
    return frames


def with_norm(bundle: Bundle, norm: NormStats) -> Bundle:
    """The bundle with other normalisation statistics, in memory (write it with write_bundle_with_head:
    the manifest carries them, the runtime reads them from there)."""
    return replace(bundle, norm=norm, manifest={**bundle.manifest, "normalization": norm.to_dict()})

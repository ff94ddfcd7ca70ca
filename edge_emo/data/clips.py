"""A set of clips as the trainers and scorers see them: raw feature frames, speakers, names and labels. Its own
module so that every corpus reader (corpus.py, mosei.py, logged_features.py) builds one without importing the
others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_emo.data.labels import CorpusError
from edge_emo.data.splits import Split, speaker_split
from edge_emo.emotions import EMOTIONS
from edge_emo.features import FeatureSpec


@dataclass
class ClipSet:
    """Raw (unnormalised) feature frames of a set of clips, with labels when the corpus has them."""

    spec: FeatureSpec
    features: list[np.ndarray]  # one (T_i, F) float32 array per clip
    speakers: list[str]
    names: list[str]
    labels: np.ndarray | None = None  # (N, 6) float32 intensities
    emotions: tuple[str, ...] = field(default=EMOTIONS)

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, indices: Sequence[int]) -> ClipSet:
        idx = [int(i) for i in indices]
        return ClipSet(
            self.spec,
            [self.features[i] for i in idx],
            [self.speakers[i] for i in idx],
            [self.names[i] for i in idx],
            None if self.labels is None else self.labels[idx],
            self.emotions,
        )

    @classmethod
    def concat(cls, sets: Sequence[ClipSet]) -> ClipSet:
        """One set of the clips of several, in order (same features; labeled all or none)."""
        first = sets[0]
        for other in sets[1:]:
            first.spec.check_compatible(other.spec, "the first corpus")
            if (other.labels is None) != (first.labels is None) or other.emotions != first.emotions:
                raise CorpusError(
                    "corpora to join must all be labeled, with the same emotions, or all unlabeled"
                )
        return cls(
            first.spec,
            [f for s in sets for f in s.features],
            [x for s in sets for x in s.speakers],
            [x for s in sets for x in s.names],
            None if first.labels is None else np.concatenate([s.labels for s in sets]),
            first.emotions,
        )

    def as_neutral(self) -> ClipSet:
        """The same clips labeled with no emotion (all-zero intensities): ordinary speech as a target."""
        return ClipSet(
            self.spec,
            self.features,
            self.speakers,
            self.names,
            np.zeros((len(self), len(self.emotions)), np.float32),
            self.emotions,
        )

    def split(self, split: Split | str, seed: int = 0) -> ClipSet:
        return self.subset(speaker_split(self.speakers, split, seed))

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.features)

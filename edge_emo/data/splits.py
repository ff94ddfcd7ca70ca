"""Seeded splits that never put a speaker (or a MOSEI video) in two parts."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

VAL_FRACTION = 0.2


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"


def speaker_split(speakers: Sequence[str], split: Split | str, seed: int = 0) -> np.ndarray:
    """Indices of the clips in `split`: 80% of the speakers for train, 20% for val, chosen with `seed`."""
    split = Split(split)
    if split is Split.all:
        return np.arange(len(speakers))
    val_speakers = set(val_speaker_set(speakers, seed))
    want_val = split is Split.val
    return np.array([i for i, s in enumerate(speakers) if (s in val_speakers) == want_val], dtype=np.int64)


def val_speaker_set(speakers: Sequence[str], seed: int = 0) -> list[str]:
    unique = sorted(set(speakers))
    if len(unique) < 2:
        raise ValueError(f"a speaker-disjoint split needs at least 2 speakers, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = min(len(unique) - 1, max(1, round(VAL_FRACTION * len(unique))))
    return [unique[i] for i in order[:n_val]]


def speaker_folds(speakers: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """`k` disjoint groups of speakers that together hold every speaker once (a speaker cross-validation):
    the speakers in an order drawn with `seed`, dealt round-robin, so group sizes differ by at most one."""
    unique = sorted(set(speakers))
    if not 2 <= k <= len(unique):
        raise ValueError(f"a {k}-fold speaker cross-validation needs 2 <= k <= {len(unique)} (the speakers)")
    order = np.random.default_rng(seed).permutation(len(unique))
    return [sorted(unique[i] for i in order[f::k]) for f in range(k)]


def trained_on(provenance: dict, speakers: Sequence[str]) -> list[str]:
    """Which of `speakers` fine-tuned the model of this checkpoint or bundle provenance (from its record of
    training speakers; models made before that record say nothing)."""
    finetune = provenance.get("finetune") or (provenance.get("training") or {}).get("finetune") or {}
    return sorted(set(finetune.get("speakers") or ()) & set(speakers))


def trained_on_warning(seen: list[str], speakers: Sequence[str]) -> str:
    names = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "")
    return (
        f"warning: {len(seen)} of the {len(set(speakers))} speakers scored here trained this model ({names}): "
        "these scores overstate its quality on unseen speakers; score it on speakers it was not trained on "
        "(e.g. --split val for a model fine-tuned with --split train)"
    )

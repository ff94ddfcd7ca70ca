"""On-device personalization of the emotion head (numpy, onnxruntime and onnx only; never torch).

record.py: the wearer's labeled clips (clips/NNNN.wav + labels.csv), written crash-safely.
ridge.py: the closed-form head toward the shipped one (fixed strength, or by exact leave-one-out).
adapt.py: the input normalisation from a partner's unlabeled logged speech (listen --log-features).
method.py: the measured default (benchmarks/personalization.py): which normalisation, head fit, strength.
guard.py: a new bundle ships only if its held-out predictions beat the current bundle's.
wearer.py: personalize a bundle from a labels.csv and/or a feature log, validate, swap atomically; roll back.
"""

from .ridge import HeadFit, fit_head, held_out_predictions
from .wearer import (
    MIN_CLIPS,
    PersonalizeError,
    PersonalizeResult,
    personal_bundle_path,
    personalize,
    rollback,
)

__all__ = [
    "MIN_CLIPS",
    "HeadFit",
    "PersonalizeError",
    "PersonalizeResult",
    "fit_head",
    "held_out_predictions",
    "personal_bundle_path",
    "personalize",
    "rollback",
]

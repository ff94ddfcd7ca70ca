"""On-device personalization of the emotion head (numpy, onnxruntime and onnx only; never torch).

record.py: the wearer's labeled clips (clips/NNNN.wav + labels.csv), written crash-safely.
ridge.py: the closed-form head toward the shipped one, strength by exact leave-one-out.
wearer.py: personalize a bundle from a labels.csv, validate, swap atomically; roll back.
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

"""Training (torch): masked-span pretraining, few-shot head fine-tuning, checkpoints. Not on the device path.

This file imports no torch: the command line reads its choices at start."""

from enum import Enum


class LossOn(str, Enum):
    """Frames the pretraining reconstruction loss covers."""

    masked = "masked"  # the masked span only
    all = "all"  # every frame (the paper)

"""The guard: a personalized head ships only when its held-out check beats the current head.

On the wearer's labeled clips, each clip is predicted by a head fitted without it (leave-one-out) and by the
current head. The new head is accepted only when its held-out squared error (from what the heads aim at,
method.aim) is lower, its held-out
macro-F1 is not lower AND, when the clips include neutral ones, it cues an emotion on no more of them:
otherwise personalization keeps the current head and says so. Measured without the last condition, heads
fitted on 10 clips gained macro-F1 by cueing on half of the partner's neutral clips (docs/PERSONALIZATION.md);
a false cue is a wrong instruction to the wearer, so more of them is never an improvement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_emo.metrics import false_cues, scores
from edge_emo.personalize.method import aim_error


def accept(
    y: np.ndarray,
    current: np.ndarray,
    held_out: np.ndarray,
    emotions: Sequence[str],
    cue_margin: float = 0.0,
    one_sided: bool = True,
    require_f1: bool = True,
) -> bool:
    """True when the held-out predictions beat the current head's on the same labeled clips. The error is
    the distance from what both heads aim at (method.aim_error: the labels lowered by the bundle's cue
    margin, an absent emotion counted only above it), macro-F1 and false cues are against the labels (what
    the wearer sees). require_f1=False leaves macro-F1 out (on 5-10 clips it is mostly noise)."""
    error_new = aim_error(y, held_out, cue_margin, one_sided)
    error_old = aim_error(y, current, cue_margin, one_sided)
    f1_new = scores(y, held_out, emotions)["macro_f1"]
    f1_old = scores(y, current, emotions)["macro_f1"]
    cues_new, cues_old = false_cues(y, held_out), false_cues(y, current)
    more_cues = cues_new is not None and cues_new > cues_old
    return error_new < error_old and (f1_new >= f1_old or not require_f1) and not more_cues

"""The guard: a personalized head ships only when its held-out check beats the current head.

On the wearer's labeled clips, each clip is predicted by a head fitted without it (leave-one-out) and by the
current head. The new head is accepted only when its held-out squared error is lower AND its held-out
macro-F1 is not lower: otherwise personalization keeps the current head and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_emo.metrics import scores


def accept(y: np.ndarray, current: np.ndarray, held_out: np.ndarray, emotions: Sequence[str]) -> bool:
    """True when the held-out predictions beat the current head's on the same labeled clips."""
    mse_new = float(np.mean((held_out - y) ** 2))
    mse_old = float(np.mean((current - y) ** 2))
    f1_new = scores(y, held_out, emotions)["macro_f1"]
    f1_old = scores(y, current, emotions)["macro_f1"]
    return mse_new < mse_old and f1_new >= f1_old

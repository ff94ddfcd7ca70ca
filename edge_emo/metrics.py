"""Honest metrics for emotion intensities (0..3).

- The paper's 4-class accuracy: round half up both sides (r(x) = floor(x + 0.5), clipped to 0..3) and count
  matching (clip, emotion) cells, overall and per emotion.
- MAE, overall and per emotion.
- F1 per emotion with a stated binarisation: an emotion is *present* when its intensity is >= 0.5 (the
  same threshold on truth and prediction), and macro-F1 over the six emotions.

Most cells are 0, so an all-zeros predictor scores a high accuracy and a low MAE while detecting nothing:
every report carries the same metrics for it (`zeros`) beside the model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRESENT = 0.5


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 0, 3)


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 per column with present = intensity >= 0.5. A column with no positives on either side scores 0:
    detecting nothing is not rewarded."""
    t, p = y_true >= PRESENT, y_pred >= PRESENT
    tp = (t & p).sum(0)
    denom = t.sum(0) + p.sum(0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def scores(y_true: np.ndarray, y_pred: np.ndarray, emotions: Sequence[str]) -> dict:
    """All metrics of one predictor: overall values and a per-emotion breakdown."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or y_true.shape[1] != len(emotions):
        raise ValueError(
            f"truth {y_true.shape} and predictions {y_pred.shape} must both be (N, {len(emotions)})"
        )
    if not np.all(np.isfinite(y_pred)):
        raise ValueError("predictions contain NaN or inf")
    hit = round_half_up(y_true) == round_half_up(y_pred)
    err = np.abs(y_true - y_pred)
    f1 = f1_scores(y_true, y_pred)
    return {
        "acc4": float(hit.mean()),
        "mae": float(err.mean()),
        "macro_f1": float(f1.mean()),
        "per_emotion": {
            e: {"acc4": float(hit[:, i].mean()), "mae": float(err[:, i].mean()), "f1": float(f1[i])}
            for i, e in enumerate(emotions)
        },
    }


def false_cues(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Share of neutral clips (every emotion < 0.5) on which some emotion is predicted present: a cue the
    wearer would see for nothing. None without neutral clips."""
    neutral = (np.asarray(y_true) < PRESENT).all(1)
    if not neutral.any():
        return None
    return float((np.asarray(y_pred)[neutral] >= PRESENT).any(1).mean())


def report(y_true: np.ndarray, y_pred: np.ndarray, emotions: Sequence[str]) -> dict:
    """The model's metrics beside the all-zeros reference, on the same clips."""
    y_true = np.asarray(y_true)
    return {
        "n_clips": len(y_true),
        "model": scores(y_true, y_pred, emotions),
        "zeros": scores(y_true, np.zeros_like(y_true, dtype=np.float64), emotions),
    }


def format_report(rep: dict) -> str:
    """A Markdown table: one row per metric, model beside all-zeros."""
    m, z = rep["model"], rep["zeros"]
    lines = [
        f"{rep['n_clips']} clips; F1: an emotion is present when its intensity is >= {PRESENT}",
        "",
        "| metric | model | all-zeros |",
        "|---|---|---|",
        f"| macro-F1 | {m['macro_f1']:.3f} | {z['macro_f1']:.3f} |",
        f"| 4-class accuracy | {m['acc4']:.3f} | {z['acc4']:.3f} |",
        f"| MAE | {m['mae']:.3f} | {z['mae']:.3f} |",
    ]
    for e, pe in m["per_emotion"].items():
        ze = z["per_emotion"][e]
        lines.append(
            f"| {e}: F1 / acc4 / MAE | {pe['f1']:.3f} / {pe['acc4']:.3f} / {pe['mae']:.3f} "
            f"| {ze['f1']:.3f} / {ze['acc4']:.3f} / {ze['mae']:.3f} |"
        )
    return "\n".join(lines)

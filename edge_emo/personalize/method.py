"""The personalization method `edge-emo personalize` runs, chosen by measurement
(benchmarks/personalization.py, docs/PERSONALIZATION.md): which input normalisation, which head fit, which
strength. The strength is fixed beforehand on held-out speakers, not chosen on the wearer's few clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from edge_emo.personalize.adapt import SpeakerNorm
from edge_emo.personalize.ridge import fit_head_fixed, held_out_fixed, predict


class HeadFit(str, Enum):
    shipped = "shipped"  # keep the head
    ridge = "ridge"  # the whole head, ridge toward the current one (strength relative to the embeddings)
    bias = "bias"  # only the bias, ridge toward the current one (strength in clips)
    calib = "calib"  # per-emotion scale and offset of the current outputs, ridge toward (1, 0), in clips


@dataclass(frozen=True)
class Method:
    norm: SpeakerNorm = SpeakerNorm.mean
    head: HeadFit = HeadFit.ridge
    # Chosen on held-out speakers for the default's recipe (a bundle trained without them, each speaker's
    # strength picked on the others): 3 at 5, 10 and 20 clips (docs/PERSONALIZATION.md, 2026-12-01 run).
    strength: float = 3.0


DEFAULT = Method()


def aim(labels: np.ndarray, outputs: np.ndarray, cue_margin: float, one_sided: bool = True) -> np.ndarray:
    """What a head fitted on the wearer's clips aims at, given the current head's outputs on them. A present
    emotion: its label lowered by the cue margin, as the shipped head was lowered after training (aimed at
    the labels themselves, a head lifts every output by the margin and cues on calm speech; measured in
    docs/PERSONALIZATION.md). An absent emotion (label 0): -margin or the current output if that is lower:
    the device clips outputs at 0, so an output below -margin is as good as -margin and is left where it
    is; only outputs above it are pulled down. (one_sided=False: exactly -margin, as measured against.)"""
    target = np.asarray(labels, np.float64) - cue_margin
    if one_sided:
        absent = np.asarray(labels) <= 0
        target[absent] = np.minimum(np.asarray(outputs, np.float64)[absent], -cue_margin)
    return target


def aim_error(
    labels: np.ndarray, predictions: np.ndarray, cue_margin: float, one_sided: bool = True
) -> float:
    """Mean squared distance of predictions from what `aim` asks: an absent emotion's error counts only
    above -margin (one_sided)."""
    error = np.asarray(predictions, np.float64) - (np.asarray(labels, np.float64) - cue_margin)
    if one_sided:
        absent = np.asarray(labels) <= 0
        error[absent] = np.maximum(error[absent], 0.0)
    return float(np.mean(error**2))


def fit(
    method: Method,
    x: np.ndarray,
    y: np.ndarray,
    weight0: np.ndarray,
    bias0: np.ndarray,
    cue_margin: float = 0.0,
    one_sided: bool = True,
):
    """The new head (weight (H, E), bias (E,)) and its exact leave-one-out predictions (n, E) on (x, y),
    aimed at `aim(y, current outputs, cue_margin, one_sided)`."""
    p = predict(x, weight0, bias0)
    y = aim(y, p, cue_margin, one_sided)
    if method.head is HeadFit.shipped:
        return weight0, bias0, p
    if method.head is HeadFit.ridge:
        weight, bias = fit_head_fixed(x, y, weight0, bias0, method.strength)
        return weight, bias, held_out_fixed(x, y, weight0, bias0, method.strength)
    z = y - p
    if method.head is HeadFit.calib:
        return calibrate(p, z, weight0, bias0, method.strength)
    bias = np.asarray(bias0, np.float64) + z.sum(0) / (len(z) + method.strength)
    held = p + (z.sum(0) - z) / (len(z) - 1 + method.strength)  # exact leave-one-out
    return np.asarray(weight0, np.float32), bias.astype(np.float32), held


def calibrate(p: np.ndarray, z: np.ndarray, weight0: np.ndarray, bias0: np.ndarray, lam: float):
    """Per emotion e, the outputs p_e rescaled: p_e (1 + a) + c with (a, c) the ridge fit of the residual
    z_e = y_e - p_e on (p_e, 1), penalty lam; as a head: column e of the weight times 1 + a, bias
    b_e (1 + a) + c. Leave-one-out exact (hat matrix): residual / (1 - leverage)."""
    weight, bias = np.array(weight0, np.float64), np.array(bias0, np.float64)
    held = np.empty_like(p)
    for e in range(p.shape[1]):
        a = np.stack([p[:, e], np.ones(len(p))], 1)
        inverse = np.linalg.inv(a.T @ a + lam * np.eye(2))
        scale, offset = inverse @ a.T @ z[:, e]
        leverage = np.einsum("ij,jk,ik->i", a, inverse, a)
        residual = z[:, e] - a @ np.array([scale, offset])
        held[:, e] = p[:, e] + z[:, e] - residual / (1.0 - leverage)
        weight[:, e] *= 1 + scale
        bias[e] = bias[e] * (1 + scale) + offset
    return weight.astype(np.float32), bias.astype(np.float32), held

"""Honest metrics for emotion intensities (0..3), scored as the device emits them: every prediction is
clipped to 0..3 first (the recognizer clips its output; an unclipped -0.4 or 3.6 is not what a wearer sees).

- The paper's 4-class accuracy: round half up both sides (r(x) = floor(x + 0.5), clipped to 0..3) and count
  matching (clip, emotion) cells, overall and per emotion.
- MAE, overall and per emotion.
- F1 per emotion with a stated binarisation: an emotion is *present* when its intensity is >= 0.5 (the
  same threshold on truth and prediction), and macro-F1 over the emotions the clips label at all: an emotion
  no clip labels (e.g. a corpus without disgust) has no F1 to earn and is left out (`left_out` names it).
- The categorical readout, what a cue shows: the strongest emotion if it reaches 0.5, else "neutral". The
  truth category is the same rule on the labels (calm, boredom and other rows without an intensity >= 0.5
  are neutral). Unweighted average recall (UAR, over the classes present in the truth), weighted accuracy
  (share of clips right) and the confusion matrix.
- False cues: the share of truth-neutral clips whose readout is an emotion (any intensity >= 0.5), overall
  and per emotion, with a 95% Wilson interval. On unlabeled ordinary speech every clip counts as neutral.

Most cells are 0, so an all-zeros predictor scores a high accuracy and a low MAE while detecting nothing:
every report carries the same metrics for it (`zeros`) beside the model's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge_emo.emotions import MAX_INTENSITY, PRESENT

NEUTRAL = "neutral"
Z95 = 1.959964


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 0, 3)


def device_output(y_pred: np.ndarray) -> np.ndarray:
    """What the device shows for a prediction: clipped to 0..3."""
    return np.clip(np.asarray(y_pred, dtype=np.float64), 0.0, MAX_INTENSITY)


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 per column with present = intensity >= 0.5. A column with no positives on either side scores 0:
    detecting nothing is not rewarded."""
    t, p = y_true >= PRESENT, y_pred >= PRESENT
    tp = (t & p).sum(0)
    denom = t.sum(0) + p.sum(0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def categories(x: np.ndarray) -> np.ndarray:
    """The categorical readout of intensities (N, E): 0 for neutral (no intensity >= 0.5), else 1 + the index
    of the strongest emotion. The same rule gives the truth category of labels."""
    x = np.asarray(x, dtype=np.float64)
    top = np.argmax(x, axis=1)
    return np.where(x[np.arange(len(x)), top] >= PRESENT, top + 1, 0)


def class_names(emotions: Sequence[str]) -> tuple[str, ...]:
    """Names of the categories of `categories`: neutral first, then the emotions."""
    return (NEUTRAL, *emotions)


def confusion(truth: np.ndarray, readout: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: rows are the truth, columns the readout."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(truth), np.asarray(readout)), 1)
    return out


def unweighted_average_recall(conf: np.ndarray) -> float:
    """Mean recall over the classes present in the truth (rows with clips); a class no clip has is not
    averaged in (it has no recall)."""
    n = conf.sum(1)
    present = n > 0
    if not present.any():
        raise ValueError("no clips to score")
    return float(np.mean(np.diag(conf)[present] / n[present]))


def weighted_accuracy(conf: np.ndarray) -> float:
    """The share of clips whose readout is their truth category."""
    return float(np.trace(conf) / conf.sum())


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (n >= 1): stays inside 0..1 and is honest at k = 0 or n,
    where the plain normal interval collapses to a point."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"a proportion needs 0 <= k <= n and n >= 1, got {k}/{n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 (k = n) the bound is exactly 0 (1); rounding would leave a hair off it.
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def proportion(k: int, n: int) -> dict:
    """k of n with the rate and its 95% Wilson interval (rate and interval None when n is 0)."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci95": None}
    return {"k": k, "n": n, "rate": k / n, "ci95": list(wilson_interval(k, n))}


def cue_rates(y_pred: np.ndarray, emotions: Sequence[str]) -> dict:
    """How often clips (all assumed neutral) carry a cue: any emotion >= 0.5, and each emotion >= 0.5."""
    cue = device_output(y_pred).reshape(-1, len(emotions)) >= PRESENT
    return {
        "any": proportion(cue.any(1).sum(), len(cue)),
        "per_emotion": {e: proportion(cue[:, i].sum(), len(cue)) for i, e in enumerate(emotions)},
    }


def labeled(y_true: np.ndarray) -> np.ndarray:
    """Per emotion column: does any clip label it present (>= 0.5)?"""
    return (np.asarray(y_true) >= PRESENT).any(0)


def scores(y_true: np.ndarray, y_pred: np.ndarray, emotions: Sequence[str]) -> dict:
    """All metrics of one predictor (clipped to 0..3 first): overall values, the categorical readout and a
    per-emotion breakdown. `false_cue_neutral` is None when no clip is neutral."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or y_true.shape[1] != len(emotions):
        raise ValueError(
            f"truth {y_true.shape} and predictions {y_pred.shape} must both be (N, {len(emotions)})"
        )
    if not np.all(np.isfinite(y_pred)):
        raise ValueError("predictions contain NaN or inf")
    y_pred = device_output(y_pred)
    hit = round_half_up(y_true) == round_half_up(y_pred)
    err = np.abs(y_true - y_pred)
    f1 = f1_scores(y_true, y_pred)
    # With no emotion labeled at all (only neutral clips) every F1 is 0 and all six stay in.
    scored = labeled(y_true) if labeled(y_true).any() else np.ones(len(emotions), bool)
    truth, readout = categories(y_true), categories(y_pred)
    conf = confusion(truth, readout, len(emotions) + 1)
    neutral = cue_rates(y_pred[truth == 0], emotions)
    return {
        "acc4": float(hit.mean()),
        "mae": float(err.mean()),
        "macro_f1": float(f1[scored].mean()),
        "left_out": [e for e, s in zip(emotions, scored) if not s],
        "uar": unweighted_average_recall(conf),
        "wa": weighted_accuracy(conf),
        "false_cue_neutral": neutral["any"]["rate"],
        "categorical": {
            "classes": list(class_names(emotions)),
            "confusion": conf.tolist(),  # rows: truth, columns: readout
            "false_cues_on_neutral": neutral,
        },
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


def report(
    y_true: np.ndarray, y_pred: np.ndarray, emotions: Sequence[str], corpora: Sequence[str] | None = None
) -> dict:
    """The model's metrics beside the all-zeros reference, on the same clips; with `corpora` (one name per
    clip) naming more than one corpus, the same again per corpus."""
    y_true = np.asarray(y_true)
    rep = {
        "n_clips": len(y_true),
        "predictions": f"clipped to 0..{MAX_INTENSITY:g}, as the device emits them",
        "model": scores(y_true, y_pred, emotions),
        "zeros": scores(y_true, np.zeros_like(y_true, dtype=np.float64), emotions),
    }
    names = sorted(set(corpora or []))
    if len(names) > 1:
        which = np.asarray(corpora)
        rep["per_corpus"] = {
            c: report(y_true[which == c], np.asarray(y_pred)[which == c], emotions) for c in names
        }
    return rep


def cue_report(
    clip_pred: np.ndarray, emotions: Sequence[str], utterance_pred: np.ndarray | None = None
) -> dict:
    """False cues on unlabeled speech taken as neutral: per clip and, when given, per utterance as the live
    detector cuts them. The all-zeros reference gives no cue at all."""
    rep = {
        "n_clips": len(clip_pred),
        "predictions": f"clipped to 0..{MAX_INTENSITY:g}, as the device emits them",
        "clips": cue_rates(clip_pred, emotions),
        "zeros": cue_rates(np.zeros_like(clip_pred), emotions),
        "utterances": None,
    }
    if utterance_pred is not None:
        rep["n_utterances"] = len(utterance_pred)
        rep["utterances"] = cue_rates(utterance_pred, emotions)
    return rep


# ---------------------------------------------------------------------------------------------- formatting


def format_rate(p: dict | None) -> str:
    """'12.5% (3/24, 95% CI 4.3-31.0%)', or 'no neutral clips' when there were none."""
    if p is None or p["n"] == 0:
        return "no neutral clips"
    lo, hi = p["ci95"]
    return f"{p['rate']:.1%} ({p['k']}/{p['n']}, 95% CI {lo:.1%}-{hi:.1%})"


def format_report(rep: dict) -> str:
    """Markdown tables: every metric, model beside all-zeros; the confusion matrix; per-corpus rows."""
    m, z = rep["model"], rep["zeros"]
    lines = [
        f"{rep['n_clips']} clips; predictions {rep['predictions']}; F1: an emotion is present when its "
        f"intensity is >= {PRESENT}; readout: the strongest emotion if >= {PRESENT}, else {NEUTRAL}",
    ]
    if m["left_out"]:
        lines.append(f"left out of macro-F1 (no clip labels them): {', '.join(m['left_out'])}")
    lines += [
        "",
        "| metric | model | all-zeros |",
        "|---|---|---|",
        f"| macro-F1 | {m['macro_f1']:.3f} | {z['macro_f1']:.3f} |",
        f"| 4-class accuracy | {m['acc4']:.3f} | {z['acc4']:.3f} |",
        f"| MAE | {m['mae']:.3f} | {z['mae']:.3f} |",
        f"| readout UAR | {m['uar']:.3f} | {z['uar']:.3f} |",
        f"| readout weighted accuracy | {m['wa']:.3f} | {z['wa']:.3f} |",
    ]
    mc, zc = m["categorical"]["false_cues_on_neutral"], z["categorical"]["false_cues_on_neutral"]
    lines.append(f"| false cues on neutral clips | {format_rate(mc['any'])} | {format_rate(zc['any'])} |")
    if mc["any"]["n"]:
        for e, p in mc["per_emotion"].items():
            lines.append(f"| false cue {e} | {format_rate(p)} | {format_rate(zc['per_emotion'][e])} |")
    for e, pe in m["per_emotion"].items():
        ze = z["per_emotion"][e]
        lines.append(
            f"| {e}: F1 / acc4 / MAE | {pe['f1']:.3f} / {pe['acc4']:.3f} / {pe['mae']:.3f} "
            f"| {ze['f1']:.3f} / {ze['acc4']:.3f} / {ze['mae']:.3f} |"
        )
    lines += ["", *format_confusion(m["categorical"])]
    if "per_corpus" in rep:
        lines += ["", *format_corpora(rep["per_corpus"])]
    return "\n".join(lines)


def format_confusion(cat: dict) -> list[str]:
    classes = cat["classes"]
    lines = [
        "Confusion of the model's readout (rows: truth, columns: readout)",
        "",
        "| truth \\ readout | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 1) + "|",
    ]
    for name, row in zip(classes, cat["confusion"]):
        if sum(row):
            lines.append(f"| {name} | " + " | ".join(map(str, row)) + " |")
    return lines


def format_corpora(per_corpus: dict) -> list[str]:
    lines = [
        "Per corpus (model / all-zeros)",
        "",
        "| corpus | clips | macro-F1 | readout UAR | weighted accuracy | false cues on neutral clips "
        "| left out of macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in per_corpus.items():
        m, z = r["model"], r["zeros"]
        cues = format_rate(m["categorical"]["false_cues_on_neutral"]["any"])
        lines.append(
            f"| {name} | {r['n_clips']} | {m['macro_f1']:.3f} / {z['macro_f1']:.3f} | {m['uar']:.3f} / "
            f"{z['uar']:.3f} | {m['wa']:.3f} / {z['wa']:.3f} | {cues} | {', '.join(m['left_out']) or '-'} |"
        )
    return lines


def format_cue_report(rep: dict) -> str:
    """Markdown table of false cues on unlabeled speech: per clip, per utterance, all-zeros beside."""
    utt = rep["utterances"]
    head = f"{rep['n_clips']} unlabeled clips taken as neutral"
    head += f", {rep['n_utterances']} utterances" if utt else ""
    lines = [
        f"{head}; predictions {rep['predictions']}; a false cue: an intensity >= {PRESENT}",
        "",
        "| false cues | clips | " + ("utterances | " if utt else "") + "all-zeros |",
        "|---|---|" + ("---|" if utt else "") + "---|",
    ]
    rows = [("any emotion", lambda r: r["any"])]
    rows += [(e, lambda r, e=e: r["per_emotion"][e]) for e in rep["clips"]["per_emotion"]]
    for name, pick in rows:
        cells = [format_rate(pick(rep["clips"]))]
        if utt:
            cells.append(format_rate(pick(utt)))
        cells.append(format_rate(pick(rep["zeros"])))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

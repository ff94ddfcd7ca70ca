"""The categorical readout, false cues and the device's clipping, on small arrays computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from edge_emo.metrics import (
    categories,
    confusion,
    cue_report,
    format_cue_report,
    format_report,
    report,
    scores,
    unweighted_average_recall,
    weighted_accuracy,
    wilson_interval,
)

HAPPY, SAD, ANGER, FEAR = (EMOTIONS.index(e) for e in ("happiness", "sadness", "anger", "fear"))


def rows(*cells: dict) -> np.ndarray:
    """One (6,) row per dict {emotion index: intensity}."""
    out = np.zeros((len(cells), 6))
    for i, c in enumerate(cells):
        for k, v in c.items():
            out[i, k] = v
    return out


def test_readout_is_the_strongest_emotion_from_half_on_else_neutral():
    x = rows({}, {SAD: 0.49}, {HAPPY: 0.6, FEAR: 1.2}, {ANGER: 0.5}, {HAPPY: 2.0, SAD: 2.0})
    # 0 is neutral, 1 + i the emotion i; a tie goes to the first emotion
    assert categories(x).tolist() == [0, 0, 1 + FEAR, 1 + ANGER, 1 + HAPPY]


def test_uar_and_weighted_accuracy_over_the_classes_in_the_truth():
    truth = np.array([0, 0, 0, 1, 1, 3])
    readout = np.array([0, 1, 0, 1, 0, 3])
    conf = confusion(truth, readout, 7)
    assert conf[0].tolist() == [2, 1, 0, 0, 0, 0, 0] and conf[1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert conf.sum() == 6 and conf[2].sum() == 0  # rows: truth
    # recalls: neutral 2/3, happiness 1/2, anger 1/1; classes no clip has are not averaged in
    assert unweighted_average_recall(conf) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert weighted_accuracy(conf) == pytest.approx(4 / 6)


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(3, 0)


def test_predictions_are_clipped_to_what_the_device_shows():
    truth = rows({HAPPY: 3.0}, {})
    s = scores(truth, rows({HAPPY: 4.2, SAD: -0.7}, {ANGER: -2.0}), EMOTIONS)
    assert s["mae"] == 0.0 and s["acc4"] == 1.0  # 4.2 -> 3 and negatives -> 0: exactly the truth


def test_emotions_a_corpus_never_labels_are_left_out_of_macro_f1():
    # labels: happiness and anger only (like a corpus without the others); the model finds both,
    # and also says sadness on a neutral clip
    truth = rows({HAPPY: 2}, {ANGER: 2}, {}, {})
    pred = rows({HAPPY: 2}, {ANGER: 2}, {SAD: 1}, {})
    s = scores(truth, pred, EMOTIONS)
    assert s["left_out"] == ["sadness", "surprise", "disgust", "fear"]
    assert s["macro_f1"] == 1.0  # mean F1 of happiness and anger; sadness' false alarm shows as a false cue
    assert s["false_cue_neutral"] == 0.5
    cues = s["categorical"]["false_cues_on_neutral"]
    assert cues["any"]["k"] == 1 and cues["any"]["n"] == 2
    assert cues["per_emotion"]["sadness"]["rate"] == 0.5 and cues["per_emotion"]["happiness"]["rate"] == 0.0
    assert "left out of macro-F1 (no clip labels them): sadness, surprise, disgust, fear" in format_report(
        report(truth, pred, EMOTIONS)
    )


def test_all_zeros_reads_neutral_everywhere():
    truth = rows({HAPPY: 2}, {ANGER: 2}, {}, {FEAR: 1})  # 4 classes in the truth
    rep = report(truth, rows({HAPPY: 1}, {}, {}, {}), EMOTIONS)
    z = rep["zeros"]
    assert z["uar"] == pytest.approx(1 / 4) and z["wa"] == pytest.approx(1 / 4)
    assert z["false_cue_neutral"] == 0.0
    assert rep["model"]["uar"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert rep["model"]["categorical"]["classes"][0] == "neutral"


def test_no_neutral_clips_says_so_instead_of_a_rate():
    truth = rows({HAPPY: 2}, {ANGER: 2})
    rep = report(truth, truth, EMOTIONS)
    assert rep["model"]["false_cue_neutral"] is None
    assert "| false cues on neutral clips | no neutral clips | no neutral clips |" in format_report(rep)


def test_mixed_corpora_get_their_own_rows():
    truth = rows({HAPPY: 2}, {}, {ANGER: 2}, {})
    pred = rows({HAPPY: 2}, {FEAR: 1}, {}, {})
    rep = report(truth, pred, EMOTIONS, ["ravdess", "ravdess", "wild", "wild"])
    assert set(rep["per_corpus"]) == {"ravdess", "wild"}
    assert rep["per_corpus"]["ravdess"]["model"]["false_cue_neutral"] == 1.0
    assert rep["per_corpus"]["wild"]["model"]["false_cue_neutral"] == 0.0
    assert rep["per_corpus"]["wild"]["model"]["left_out"] == [e for e in EMOTIONS if e != "anger"]
    assert "| wild | 2 |" in format_report(rep)
    assert "per_corpus" not in report(truth, pred, EMOTIONS, ["one"] * 4)


def test_cue_report_on_unlabeled_speech():
    clips = rows({}, {SAD: 2.7, FEAR: 1.5}, {ANGER: 0.49}, {ANGER: 0.51})
    rep = cue_report(clips, EMOTIONS, utterance_pred=rows({SAD: 1}, {}))
    assert rep["clips"]["any"]["rate"] == 0.5 and rep["clips"]["per_emotion"]["fear"]["k"] == 1
    assert rep["utterances"]["any"]["k"] == 1 and rep["n_utterances"] == 2
    assert rep["zeros"]["any"]["rate"] == 0.0
    text = format_cue_report(rep)
    assert "| any emotion | 50.0% (2/4, 95% CI" in text and "utterances" in text

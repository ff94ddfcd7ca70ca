import numpy as np
import pytest

from edge_emo.data.splits import speaker_split
from edge_emo.metrics import f1_scores, format_report, report, round_half_up, scores

EMO = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")


def test_speaker_split_is_disjoint_seeded_and_covers_everything():
    speakers = [f"s{i % 16}" for i in range(320)]
    train, val = speaker_split(speakers, "train", 3), speaker_split(speakers, "val", 3)
    assert not {speakers[i] for i in train} & {speakers[i] for i in val}
    assert sorted([*train, *val]) == list(range(320))
    assert len({speakers[i] for i in val}) == 3  # 20% of 16 speakers
    assert np.array_equal(val, speaker_split(speakers, "val", 3))
    assert not np.array_equal(val, speaker_split(speakers, "val", 4))
    assert len(speaker_split(speakers, "all")) == 320
    with pytest.raises(ValueError, match="at least 2 speakers"):
        speaker_split(["a", "a"], "train")


def test_round_half_up_is_the_papers():
    assert round_half_up(np.array([0.49, 0.5, 1.5, 2.5, 2.51, 3.7, -0.2])).tolist() == [0, 1, 2, 3, 3, 3, 0]


def test_f1_binarises_at_half_and_does_not_reward_silence():
    t = np.array([[0.0], [2.0], [3.0], [0.0]])
    assert f1_scores(t, np.array([[0.0], [0.6], [0.4], [0.0]]))[0] == pytest.approx(2 * 1 / (2 + 1))
    assert f1_scores(np.zeros((3, 1)), np.zeros((3, 1)))[0] == 0.0


def test_all_zeros_reference_beats_regressor_on_accuracy_but_not_f1():
    rng = np.random.default_rng(0)
    y = np.zeros((200, 6))
    y[np.arange(200), rng.integers(0, 6, 200)] = rng.choice([2.0, 3.0], 200)
    pred = np.full_like(y, y.mean()) + (y > 0) * 0.6 + rng.normal(0, 0.3, y.shape)
    rep = report(y, pred, EMO)
    assert rep["zeros"]["acc4"] > rep["model"]["acc4"]
    assert rep["zeros"]["macro_f1"] == 0.0 < rep["model"]["macro_f1"]
    assert set(rep["model"]["per_emotion"]) == set(EMO)
    table = format_report(rep)
    assert "all-zeros" in table and "macro-F1" in table and "fear" in table


def test_scores_reject_bad_shapes_and_nan():
    with pytest.raises(ValueError, match="must both be"):
        scores(np.zeros((3, 6)), np.zeros((3, 5)), EMO)
    with pytest.raises(ValueError, match="NaN"):
        scores(np.zeros((1, 6)), np.full((1, 6), np.nan), EMO)

"""Normalisation statistics: fitted on training frames, stored with the model, applied on device."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_emo.features import NormStats
from edge_emo.features.normalization import CLIP


def test_fit_over_clips_equals_fit_over_all_frames():
    rng = np.random.default_rng(0)
    clips = [rng.normal(5, 3, size=(n, 4)).astype(np.float32) for n in (10, 200, 37)]
    stats = NormStats.fit(clips)
    frames = np.concatenate(clips).astype(np.float64)
    np.testing.assert_allclose(stats.mean, frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, frames.std(0), rtol=1e-5)
    assert stats.mean.dtype == stats.std.dtype == np.float32


def test_nan_and_inf_are_left_out_of_the_statistics_and_zeroed_when_applied():
    x = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.inf], [-np.inf, 30.0]], np.float32)
    stats = NormStats.fit([x])
    np.testing.assert_allclose(stats.mean, [2.0, 20.0])
    np.testing.assert_allclose(stats.std, [1.0, np.sqrt(200 / 3)], rtol=1e-6)
    z = stats.apply(x)
    assert np.all(np.isfinite(z))
    assert z[1, 0] == 0 and z[2, 1] == 0 and z[3, 0] == 0
    np.testing.assert_allclose(z[0], [-1.0, -10 / np.sqrt(200 / 3)], rtol=1e-6)


def test_constant_column_is_centred_not_blown_up():
    x = np.stack([np.full(50, 7.0), np.arange(50.0)], axis=1)
    stats = NormStats.fit([x])
    assert stats.std[0] == 1.0
    z = stats.apply(x)
    assert np.all(z[:, 0] == 0)


def test_outliers_are_clipped():
    stats = NormStats(np.zeros(2, np.float32), np.ones(2, np.float32))
    assert np.array_equal(stats.apply(np.array([[1e6, -1e6]])), [[CLIP, -CLIP]])


def test_round_trip_through_json():
    rng = np.random.default_rng(1)
    stats = NormStats.fit([rng.normal(size=(100, 25))])
    again = NormStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert np.array_equal(again.mean, stats.mean) and np.array_equal(again.std, stats.std)


@pytest.mark.parametrize(
    "bad",
    [
        {"mean": [0.0, 1.0], "std": [1.0]},
        {"mean": [0.0], "std": [0.0]},
        {"mean": [float("nan")], "std": [1.0]},
        {"mean": [[0.0]], "std": [[1.0]]},
    ],
)
def test_invalid_stored_statistics_are_refused(bad):
    with pytest.raises(ValueError, match="invalid normalisation statistics"):
        NormStats.from_dict(bad)


def test_fit_needs_data():
    with pytest.raises(ValueError, match="no clips"):
        NormStats.fit([])
    with pytest.raises(ValueError, match="no finite value"):
        NormStats.fit([np.array([[1.0, np.nan], [2.0, np.inf]])])

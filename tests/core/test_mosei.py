"""The CMU-MOSEI .csd reader on files written here with h5py in the SDK's exact layout."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from edge_emo.data.corpus import load_corpus
from edge_emo.data.labels import CorpusError
from edge_emo.data.mosei import COVAREP_COLUMNS, COVAREP_FILE, LABELS_FILE, covarep_spec, load_mosei
from edge_emo.features import FeatureMismatchError, spec_for


def write_csd(path: Path, root: str, videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        for vid, (features, intervals) in videos.items():
            v = g.create_group(f"data/{vid}")
            v["features"], v["intervals"] = features, intervals
        meta = g.create_group("metadata")
        for key, value in {"root name": root, "dimension names": list(COVAREP_COLUMNS)}.items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)


def make_mosei(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    covarep, labels = {}, {}
    for k, vid in enumerate(["vidA", "vidB", "vidC"]):
        n = 500
        frames = rng.normal(size=(n, 74)).astype(np.float32)
        frames[5, 0] = np.nan
        frames[9, 3] = -np.inf
        times = np.stack([np.arange(n) * 0.01, np.arange(n) * 0.01 + 0.01], 1)
        covarep[vid] = (frames, times)
        seg = np.array([[0.0, 1.5], [1.5, 4.0], [10.0, 12.0]])  # the last has no COVAREP rows
        lab = np.zeros((3, 7), np.float32)
        lab[:, 0] = -1.0  # sentiment, ignored
        lab[:, 1 + k] = [0.333, 1.667, 3.0]
        labels[vid] = (lab, seg)
    labels["vidNoAudio"] = (np.ones((1, 7), np.float32), np.array([[0.0, 1.0]]))
    write_csd(folder / COVAREP_FILE, "COVAREP", covarep)
    write_csd(folder / LABELS_FILE, "All Labels", labels)
    return folder


def test_segments_become_labeled_clips(tmp_path, caplog):
    clips = load_mosei(*[make_mosei(tmp_path) / f for f in (COVAREP_FILE, LABELS_FILE)])
    assert len(clips) == 6  # 3 videos x 2 segments with frames
    assert [len(f) for f in clips.features[:2]] == [150, 250]
    assert clips.spec == covarep_spec(0.01) and clips.spec.dim == 74
    np.testing.assert_allclose(clips.labels[1], [1.667, 0, 0, 0, 0, 0], atol=1e-6)
    assert np.isnan(clips.features[0][5, 0]) and np.isneginf(clips.features[0][9, 3])
    assert "dropped 4 labeled segments" in caplog.text
    assert set(clips.speakers) == {"vidA", "vidB", "vidC"}


def test_a_data_dir_with_both_files_is_a_corpus_and_splits_by_video(tmp_path):
    folder = make_mosei(tmp_path)
    train, val = load_corpus(folder, covarep_spec(), "train"), load_corpus(folder, covarep_spec(), "val")
    assert len(train) + len(val) == 6 and not set(train.speakers) & set(val.speakers)
    with pytest.raises(FeatureMismatchError, match="covarep"):
        load_corpus(folder, spec_for("egemaps"))


def test_csd_without_the_expected_group(tmp_path):
    with h5py.File(tmp_path / COVAREP_FILE, "w") as f:
        f.create_group("COVAREP/metadata")
    make = tmp_path / "labels_ok"
    make.mkdir()
    make_mosei(make)
    with pytest.raises(CorpusError, match="expected one top-level group holding 'data'"):
        load_mosei(tmp_path / COVAREP_FILE, make / LABELS_FILE)
    (tmp_path / "junk.csd").write_bytes(b"not hdf5")
    with pytest.raises(CorpusError, match="not a readable HDF5"):
        load_mosei(tmp_path / "junk.csd", make / LABELS_FILE)

import shutil

import numpy as np
import pytest

from edge_emo.data import corpus as corpus_module
from edge_emo.data.corpus import cache_dir, load_corpus
from edge_emo.data.labels import CorpusError
from edge_emo.features import AudioInputError, extract_file, spec_for
from tests.core.conftest import make_corpus

SPEC = spec_for("egemaps")


def test_corpus_features_match_the_extractor_and_are_cached(corpus):
    first = load_corpus(corpus, SPEC)
    assert len(first) == 20 and first.labels.shape == (20, 6) and first.spec == SPEC
    np.testing.assert_array_equal(first.features[3], extract_file(corpus / first.names[3], SPEC))
    shards = list((cache_dir() / f"{corpus.name}-egemaps").glob("*.frames.npy"))
    assert len(shards) == 1  # 20 clips fit in one shard
    mtime = shards[0].stat().st_mtime_ns
    again = load_corpus(corpus, SPEC)
    assert shards[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    np.testing.assert_array_equal(again.features[7], first.features[7])


def shard_times(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.frames.npy")}


def test_only_shards_whose_audio_changed_are_extracted_again(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "SHARD_CLIPS", 3)
    # A corpus name no other test uses: the feature cache is shared by the whole test session.
    root = make_corpus(tmp_path / "resharded", n_speakers=2, per_speaker=4)  # 8 clips: shards of 3, 3 and 2
    folder = cache_dir() / "resharded-egemaps"
    before = load_corpus(root, SPEC, workers=1)
    first = shard_times(folder)
    assert len(first) == 3
    shutil.copy(root / "spk1/clip3.wav", root / "spk0/clip0.wav")  # clip 0 (first shard) now equals clip 7
    after = load_corpus(root, SPEC, workers=2)
    np.testing.assert_array_equal(after.features[0], before.features[7])
    np.testing.assert_array_equal(after.features[5], before.features[5])
    second = shard_times(folder)
    assert len(set(second) - set(first)) == 1  # one new shard; the other two were reused as they were
    assert all(second[name] == t for name, t in first.items())


def test_interrupted_extraction_resumes_with_the_missing_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "SHARD_CLIPS", 3)
    root = make_corpus(tmp_path / "r", n_speakers=2, per_speaker=4)
    folder = cache_dir() / "r-egemaps"
    full = load_corpus(root, SPEC, workers=1)
    lost = sorted(folder.glob("*.frames.npy"))[0]
    lost.unlink()  # as if extraction had stopped before this shard was written
    kept = shard_times(folder)
    again = load_corpus(root, SPEC, workers=1)
    assert {n: t for n, t in shard_times(folder).items() if n in kept} == kept and lost.is_file()
    for a, b in zip(again.features, full.features):
        np.testing.assert_array_equal(a, b)


def test_splits_are_speaker_disjoint(corpus):
    train, val = load_corpus(corpus, SPEC, "train"), load_corpus(corpus, SPEC, "val")
    assert len(train) + len(val) == 20
    assert not set(train.speakers) & set(val.speakers)


def test_missing_corrupt_and_silent_audio_are_named(tmp_path):
    root = make_corpus(tmp_path / "bad", n_speakers=2, per_speaker=1)
    (root / "spk1/clip0.wav").unlink()
    with pytest.raises(CorpusError, match=r"spk1/clip0\.wav: audio file not found"):
        load_corpus(root, SPEC)
    (root / "spk1/clip0.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioInputError, match=r"clip0\.wav"):
        load_corpus(root, SPEC, workers=1)
    import soundfile

    soundfile.write(root / "spk1/clip0.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(CorpusError, match=r"clip0\.wav: the clip is silent"):
        load_corpus(root, SPEC, workers=1)


def test_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no labels.csv, manifest.csv or CMU-MOSEI"):
        load_corpus(tmp_path, SPEC)
    with pytest.raises(CorpusError, match="nowhere does not exist"):
        load_corpus(tmp_path / "nowhere", SPEC)
    (tmp_path / "file.wav").write_bytes(b"")
    with pytest.raises(CorpusError, match="file.wav: not a folder"):
        load_corpus(tmp_path / "file.wav", SPEC)

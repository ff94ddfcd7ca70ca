import shutil

import numpy as np
import pytest

from edge_emo.data.corpus import cache_dir, load_corpus
from edge_emo.data.labels import CorpusError
from edge_emo.features import AudioInputError, extract_file, spec_for
from tests.core.conftest import make_corpus

SPEC = spec_for("egemaps")


def test_corpus_features_match_the_extractor_and_are_cached(corpus):
    first = load_corpus(corpus, SPEC)
    assert len(first) == 20 and first.labels.shape == (20, 6) and first.spec == SPEC
    np.testing.assert_array_equal(first.features[3], extract_file(corpus / first.names[3], SPEC))
    caches = list(cache_dir().glob(f"{corpus.name}-egemaps-*.npz"))
    assert len(caches) == 1
    mtime = caches[0].stat().st_mtime_ns
    again = load_corpus(corpus, SPEC)
    assert caches[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    np.testing.assert_array_equal(again.features[7], first.features[7])


def test_cache_is_rebuilt_when_audio_changes(tmp_path):
    root = make_corpus(tmp_path / "c", n_speakers=2, per_speaker=2)
    before = load_corpus(root, SPEC, workers=1)
    shutil.copy(root / "spk1/clip1.wav", root / "spk0/clip0.wav")
    after = load_corpus(root, SPEC, workers=1)
    np.testing.assert_array_equal(after.features[0], before.features[3])
    assert len(list(cache_dir().glob("c-egemaps-*.npz"))) == 2


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
    with pytest.raises(CorpusError, match="not a folder"):
        load_corpus(tmp_path / "nowhere", SPEC)

"""Feature logs (`edge-emo listen --log-features`) as pretraining corpora: mixed with audio corpora of the same
features, alone (their feature set is the default), and refused with one line naming the folder when their
features differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_emo.data.corpus import load_corpus
from edge_emo.features import FeatureSpec, extract, spec_for
from edge_emo.features.log_format import FeatureLogError
from edge_emo.runtime.log_writer import FeatureLogger
from edge_emo.train.checkpoint import load_checkpoint
from tests.cli import edge_emo
from tests.fixtures import synth_speech


def write_log(folder: Path, spec: FeatureSpec, segments: int = 4, extract_as: str | None = None) -> Path:
    """A feature log of `segments` speech segments of 1-2 s (frames of `extract_as`, default spec's set)."""
    log = FeatureLogger(folder, spec, "test-model", shard_s=2.0, say=lambda m: None)
    log.start_stream("synthetic")
    for k in range(segments):
        frames = extract(synth_speech(1.0 + 0.3 * k, seed=50 + k), 16000, spec_for(extract_as or spec.name))
        log.start_segment(300 * k)
        for row in frames:
            log.add_frame(row)
        log.end_segment()
    log.close()
    return folder


@pytest.fixture(scope="module")
def egemaps_log(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("egemaps_log"), spec_for("egemaps"))


def test_a_feature_log_is_a_corpus_of_its_segments(egemaps_log):
    clips = load_corpus(egemaps_log, spec_for("egemaps"), split="train")  # unlabeled: always whole
    assert len(clips) >= 4 and clips.labels is None and clips.spec == spec_for("egemaps")
    assert sum(len(f) for f in clips.features) == clips.n_frames > 400


def test_pretrain_on_a_feature_log_mixed_with_an_audio_corpus(egemaps_log, corpus, tmp_path):
    out = tmp_path / "pre.safetensors"
    run = edge_emo(
        "pretrain", egemaps_log, corpus, "--epochs", "1", "--hidden", "8", "--out", out, check=True
    )
    n_log = len(load_corpus(egemaps_log, spec_for("egemaps")))
    assert f"pretrained on {n_log + 20} clips" in run.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.spec == spec_for("egemaps")
    assert ckpt.provenance["data"] == [str(egemaps_log), str(corpus)]


def test_a_log_alone_names_its_feature_set(tmp_path):
    log = write_log(tmp_path / "compare_log", spec_for("compare"), segments=2)
    out = tmp_path / "pre.safetensors"
    edge_emo("pretrain", log, "--epochs", "1", "--hidden", "8", "--out", out, check=True)
    assert load_checkpoint(out).spec.name == "compare"


def test_a_log_of_other_features_is_one_line_naming_the_folder(egemaps_log, corpus, tmp_path):
    compare_log = write_log(tmp_path / "compare_log", spec_for("compare"), segments=1)
    renamed = FeatureSpec("egemaps", tuple(f"x{i}" for i in range(25)))  # same name, other columns
    odd_log = write_log(tmp_path / "odd_log", renamed, segments=1, extract_as="egemaps")
    for args, folder in [
        ((egemaps_log, compare_log), compare_log),
        ((compare_log, corpus, "--feature-set", "egemaps"), compare_log),
        ((corpus, odd_log), odd_log),
    ]:
        run = edge_emo(
            "pretrain", *args, "--epochs", "1", "--hidden", "8", "--out", tmp_path / "x.st", check=False
        )
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and f"{folder}: a feature log of" in run.stderr
        assert not (tmp_path / "x.st").exists()
    with pytest.raises(FeatureLogError, match="cannot be used with 'egemaps'"):
        load_corpus(compare_log, spec_for("egemaps"))

"""`edge-emo personalize --unlabeled LOG`: the input normalisation from the partner's logged speech (no
labels), written atomically with the head untouched and undone by --rollback; the guard keeps the current
bundle when the held-out check says the new one is not better; the measured candidates' maths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_emo.data.labels import read_labels
from edge_emo.data.log_corpus import load_feature_log
from edge_emo.features import extract, extract_file, spec_for
from edge_emo.features.normalization import NormStats
from edge_emo.personalize.adapt import speaker_norm
from edge_emo.personalize.guard import accept
from edge_emo.personalize.method import HeadFit, Method, fit
from edge_emo.personalize.wearer import read_head
from edge_emo.runtime.bundle import load_bundle
from edge_emo.runtime.log_writer import FeatureLogger
from tests.cli import edge_emo
from tests.fixtures import synth_speech
from tests.personalize.conftest import write_wearer


def write_log(folder, seconds: float, spec_name: str = "egemaps", gain: float = 0.5):
    """A feature log of about `seconds` of synthetic speech segments (2 s each), as `listen` writes it."""
    spec = spec_for(spec_name)
    log = FeatureLogger(folder, spec, "test-model", shard_s=20.0, say=lambda m: None)
    log.start_stream("synthetic")
    for k in range(int(np.ceil(seconds / 2.0))):
        frames = extract(synth_speech(2.0, seed=700 + k) * gain, 16000, spec)
        log.start_segment(400 * k)
        for row in frames:
            log.add_frame(row)
        log.end_segment()
    log.close()
    return folder


@pytest.fixture(scope="module")
def partner_log(tmp_path_factory):
    return write_log(tmp_path_factory.mktemp("log"), 64.0)


def test_unlabeled_adaptation_writes_the_partners_normalisation_and_rolls_back(
    bundles, partner_log, tmp_path
):
    shipped = bundles["int8"]
    out = tmp_path / "personal.bundle"
    shutil.copytree(shipped.path, out)
    run = edge_emo("personalize", "--model", str(out), "--unlabeled", str(partner_log), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    new = load_bundle(out)
    assert result["version"] == new.version != shipped.version and not result["kept"]
    assert result["unlabeled_s"] >= 60 and result["before"] is None
    frames = load_feature_log(partner_log, shipped.spec).features
    expected = speaker_norm(shipped.norm, frames, Method().norm)
    own = NormStats.fit(frames)
    np.testing.assert_allclose(new.norm.mean, expected.mean)
    np.testing.assert_allclose(new.norm.std, expected.std)
    assert not np.allclose(new.norm.mean, shipped.norm.mean) and np.allclose(expected.mean, own.mean)
    # Only the normalisation changed: the head is the shipped one, the manifest carries the new statistics.
    for a, b in zip(read_head(new), read_head(shipped)):
        np.testing.assert_array_equal(a, b)
    assert new.provenance["personalization"]["unlabeled_s"] == result["unlabeled_s"]
    assert new.base_version == shipped.version
    run = edge_emo("personalize", "--rollback", "--model", str(out))
    assert run.returncode == 0, run.stderr
    assert load_bundle(out).version == shipped.version


@pytest.mark.parametrize("problem", ["short", "not-a-log", "other-features"])
def test_bad_unlabeled_input_is_one_line_and_writes_nothing(bundles, tmp_path, problem):
    out = tmp_path / "personal.bundle"
    if problem == "short":
        log, expected = write_log(tmp_path / "log", 20.0), "adapting needs at least 60 s"
    elif problem == "not-a-log":
        (tmp_path / "log").mkdir()
        log, expected = tmp_path / "log", "not a feature log"
    else:
        log, expected = write_log(tmp_path / "log", 4.0, "compare"), "cannot be used with"
    run = edge_emo(
        "personalize", "--model", str(bundles["int8"].path), "--unlabeled", str(log), "--out", str(out)
    )
    assert run.returncode == 2 and run.stderr.startswith("error: ") and expected in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_guard_keeps_the_current_bundle_when_held_out_clips_get_worse(bundles, tmp_path):
    """Labels the current bundle already predicts (its own outputs): a refit can only add error on held-out
    clips. The check says so, nothing is written and the output says the current bundle was kept."""
    shipped = bundles["int8"]
    labels = write_wearer(tmp_path / "me", n=8)
    records = read_labels(labels)
    features = [extract_file(r.path, shipped.spec) for r in records]
    own = np.clip(shipped.predict_utterances(features), 0, 3)
    rows = labels.read_text().splitlines()
    for i, values in enumerate(own, 1):
        rows[i] = ",".join(rows[i].split(",")[:4] + [f"{v:.6f}" for v in values])
    labels.write_text("\n".join(rows) + "\n")
    *_, held = fit(Method(), shipped.embed_utterances(features), own, *read_head(shipped))
    assert not accept(own, shipped.predict_utterances(features), held, shipped.emotions)
    out = tmp_path / "personal.bundle"
    run = edge_emo("personalize", "--model", str(shipped.path), "--labels", str(labels), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "kept the current bundle" in run.stdout and "nothing written" in run.stdout and not out.exists()


def test_exact_leave_one_out_of_the_bias_fit_equals_refits():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.uniform(0, 3, size=(6, 3))
    w0, b0 = rng.normal(size=(4, 3)), rng.normal(size=3)
    method = Method(head=HeadFit.bias, strength=2.0)
    _, _, held = fit(method, x, y, w0, b0)
    for i in range(6):
        rest = np.arange(6) != i
        w, b, _ = fit(method, x[rest], y[rest], w0, b0)
        np.testing.assert_allclose(held[i], x[i] @ w + b, atol=1e-5)

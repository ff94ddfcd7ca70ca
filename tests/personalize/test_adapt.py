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
from edge_emo.features import extract, spec_for
from edge_emo.features.normalization import NormStats, RunningNorm
from edge_emo.personalize.adapt import speaker_norm
from edge_emo.personalize.guard import accept
from edge_emo.personalize.method import DEFAULT, HeadFit, Method, fit
from edge_emo.personalize.ridge import predict
from edge_emo.personalize.wearer import read_head
from edge_emo.runtime.bundle import load_bundle
from edge_emo.runtime.log_writer import FeatureLogger
from tests.cli import edge_emo
from tests.fixtures import synth_speech
from tests.personalize.conftest import speech_of, write_happy_wearer, write_wearer


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
    """Labels the current bundle already predicts (its own outputs, plus its cue margin, which keeps them
    in 0..3): a refit can only add error on held-out clips. The check says so, nothing is written and the
    output says the current bundle was kept."""
    labels = write_wearer(tmp_path / "me", n=8)
    records = read_labels(labels)
    features = [speech_of(r.path, bundles["int8"].spec) for r in records]
    outputs = bundles["int8"].predict_utterances(features)
    shipped = with_cue_margin(bundles["int8"], max(0.0, -float(outputs.min())) + 0.01, tmp_path / "m.bundle")
    own = outputs + shipped.cue_margin
    assert own.min() >= 0 and own.max() <= 3
    rows = labels.read_text().splitlines()
    for i, values in enumerate(own, 1):
        rows[i] = ",".join(rows[i].split(",")[:4] + [f"{v:.6f}" for v in values])
    labels.write_text("\n".join(rows) + "\n")
    *_, held = fit(Method(), shipped.embed_utterances(features), own, *read_head(shipped), shipped.cue_margin)
    assert not accept(own, outputs, held, shipped.emotions, shipped.cue_margin)
    out = tmp_path / "personal.bundle"
    run = edge_emo("personalize", "--model", str(shipped.path), "--labels", str(labels), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "kept the current bundle" in run.stdout and "nothing written" in run.stdout and not out.exists()


def with_cue_margin(bundle, margin: float, out):
    """A copy of `bundle` whose manifest says its outputs were lowered by `margin` after training."""
    from edge_emo.runtime.bundle import GRU_GRAPH, write_bundle

    manifest = {k: v for k, v in bundle.manifest.items() if k != "manifest_sha256"}
    more = {GRU_GRAPH: (bundle.path / GRU_GRAPH).read_bytes()} if (bundle.path / GRU_GRAPH).exists() else {}
    graph = (bundle.path / "model.onnx").read_bytes()
    return write_bundle(out, graph, {**manifest, "cue_margin": margin}, more_graphs=more)


@pytest.mark.parametrize("head", [HeadFit.bias, HeadFit.calib])
def test_exact_leave_one_out_of_the_bias_and_calibration_fits_equals_refits(head):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.uniform(0, 3, size=(6, 3))
    w0, b0 = rng.normal(size=(4, 3)), rng.normal(size=3)
    method = Method(head=head, strength=2.0)
    _, _, held = fit(method, x, y, w0, b0)
    for i in range(6):
        rest = np.arange(6) != i
        w, b, _ = fit(method, x[rest], y[rest], w0, b0)
        np.testing.assert_allclose(held[i], x[i] @ w + b, atol=1e-5)


def heard_by_device(bundle, features, heard) -> np.ndarray:
    """Embeddings of `features` by the device's own path: a stream whose statistics are the running estimate
    after hearing the clips and the logged speech (no forgetting within these few minutes)."""
    running = RunningNorm(bundle.norm, bundle.adaptation, bundle.spec.hop_s)
    for frames in [*features, *heard]:
        running.add(frames)
    stream = bundle.stream()
    stream.norm = running.stats()
    out = []
    for frames in features:
        stream.reset()
        for start in range(0, len(frames), bundle.chunk_frames):
            stream.run_chunk(frames[start : start + bundle.chunk_frames])
        out.append(stream.utterance_embedding())
    return np.array(out)


@pytest.mark.parametrize("with_log", [False, True])
def test_an_adapting_bundle_is_personalized_on_the_clips_as_the_device_hears_them(
    adapting_bundle, partner_log, tmp_path, with_log
):
    """The head is fitted on the labeled clips standardised by the partner's estimate (from the clips and,
    with --unlabeled, the logged speech), not by the bundle's prior; the normalisation and the
    speaker_adaptation field stay: the device keeps estimating as it listens."""
    adapting = adapting_bundle
    labels = write_happy_wearer(tmp_path / "me")
    out = tmp_path / "personal.bundle"
    args = ["--unlabeled", str(partner_log)] if with_log else []
    run = edge_emo("personalize", "--model", adapting.path, "--labels", labels, "--out", out, "--json", *args)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert not result["kept"] and result["method"]["norm"] == "global"
    features = [speech_of(r.path, adapting.spec) for r in read_labels(labels)]
    y = np.array([r.intensities for r in read_labels(labels)])
    heard = load_feature_log(partner_log, adapting.spec).features if with_log else []
    x = heard_by_device(adapting, features, heard)
    cold = adapting.embed_utterances(features)  # the prior alone: what the old code fitted on
    assert np.abs(x - cold).max() > 1e-2
    if with_log:
        assert np.abs(x - heard_by_device(adapting, features, [])).max() > 1e-3
    fit_weight, fit_bias, _ = fit(DEFAULT, x, y, *read_head(adapting))
    new = load_bundle(out)
    weight, bias = read_head(new)
    # Two float32 routes to the same standardised frames (re-expressed clips vs the stream's estimate)
    # differ in the last bits; the fit on the prior alone differs by far more.
    np.testing.assert_allclose(weight, fit_weight, atol=2e-3)
    np.testing.assert_allclose(bias, fit_bias, atol=2e-3)
    assert np.abs(fit(DEFAULT, cold, y, *read_head(adapting))[0] - weight).max() > 2e-2
    assert new.adaptation == adapting.adaptation
    np.testing.assert_array_equal(new.norm.mean, adapting.norm.mean)
    np.testing.assert_array_equal(new.norm.std, adapting.norm.std)
    if not with_log:  # the runtime's own offline path (one partner) gives the fitted head's outputs
        got = new.predict_utterances(features, speakers=["partner"] * len(features))
        np.testing.assert_allclose(got, predict(x, weight, bias), atol=1e-3)


def test_unlabeled_alone_on_an_adapting_bundle_is_a_clear_error(adapting_bundle, partner_log, tmp_path):
    out = tmp_path / "personal.bundle"
    run = edge_emo("personalize", "--model", adapting_bundle.path, "--unlabeled", partner_log, "--out", out)
    assert run.returncode == 2 and "adapts to its partner's speech on its own" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_guard_refuses_a_head_that_cues_on_more_neutral_clips_even_if_it_scores_better():
    emotions = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
    y = np.zeros((6, 6))
    y[:4, 2] = 2.0  # four angry clips, two neutral ones
    current = np.zeros((6, 6))  # misses every anger, cues nothing
    better = y.copy()
    better[4, 1] = 0.6  # finds every anger, but cues sadness on a neutral clip
    assert not accept(y, current, better, emotions)
    better[4, 1] = 0.4  # the same without the false cue: accepted
    assert accept(y, current, better, emotions)
    angry_only = y[:4]  # no neutral clips: nothing to check, error and F1 decide
    assert accept(angry_only, current[:4], y[:4], emotions)

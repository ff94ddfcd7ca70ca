"""The bundle: manifest, verification, tamper detection, atomic replacement, utterance predictions against
the torch model, head rewriting, torch-free loading and the `edge-emo export` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_emo.export import export_bundle
from edge_emo.features import FeatureMismatchError, FeatureSpec
from edge_emo.runtime.bundle import (
    BundleError,
    load_bundle,
    manifest_digest,
    write_bundle,
    write_bundle_with_head,
)
from edge_emo.train.checkpoint import load_checkpoint
from edge_emo.train.finetune import embed, predict
from tests.cli import edge_emo, python


def raw_clips(n: int, seed: int, lengths=(37, 120, 301, 10, 1)) -> list[np.ndarray]:
    """Raw (unstandardised) frames around the checkpoint's normalisation statistics, 25 per frame."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((lengths[i % len(lengths)], 25)) * 3 + 5).astype(np.float32) for i in range(n)
    ]


def copy_bundle(bundle, tmp_path) -> Path:
    return Path(shutil.copytree(bundle.path, tmp_path / bundle.path.name))


def rewrite_manifest(path: Path, change) -> None:
    """Edit a manifest and re-sign it, as a newer or buggy writer would."""
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_carries_the_model_facts(bundles, checkpoint_path):
    ckpt = load_checkpoint(checkpoint_path)
    for precision, bundle in bundles.items():
        again = load_bundle(bundle.path)
        assert again.precision == precision
        assert again.spec == ckpt.spec
        assert np.array_equal(again.norm.mean, ckpt.norm.mean) and np.array_equal(
            again.norm.std, ckpt.norm.std
        )
        assert again.emotions == ckpt.emotions
        assert again.state_shape == (2, 1, 256)
        assert again.chunk_frames == 8  # 80 ms of 10 ms frames: one live update
        assert precision in again.version
        prov = again.provenance
        assert (prov["data"], prov["label_budget"], prov["seed"]) == (["tests"], 50, 3)
        assert prov["git_commit"] and prov["command"].startswith("edge-emo")
        assert prov["export"]["checkpoint_sha256"]
        assert again.manifest["graph"]["opset"] == 17


def test_predictions_match_the_torch_model(bundles, checkpoint_path):
    ckpt = load_checkpoint(checkpoint_path)
    clips = raw_clips(5, seed=5)
    expected = predict(ckpt, clips)
    assert np.abs(bundles["fp32"].predict_utterances(clips) - expected).max() <= 1e-4
    assert np.abs(bundles["int8"].predict_utterances(clips) - expected).max() <= 0.02
    expected_embedding = embed(ckpt.model, ckpt.norm, clips)
    assert np.abs(bundles["fp32"].embed_utterances(clips) - expected_embedding).max() <= 1e-4


def test_stream_in_chunks_of_chunk_frames_equals_offline_exactly(bundles):
    bundle = bundles["int8"]
    clip = raw_clips(1, seed=6, lengths=(95,))[0]
    stream = bundle.stream()
    per_frame = [
        stream.run_chunk(clip[s : s + bundle.chunk_frames]) for s in range(0, 95, bundle.chunk_frames)
    ]
    assert stream.frames == 95
    assert np.concatenate(per_frame).shape == (95, 6)
    assert np.array_equal(stream.utterance_intensities(), bundle.predict_utterances([clip])[0])
    assert np.array_equal(stream.utterance_embedding(), bundle.embed_utterances([clip])[0])
    stream.reset()
    assert stream.frames == 0 and not stream.state.any()
    with pytest.raises(ValueError, match="25 egemaps values"):
        stream.run_chunk(np.zeros((10, 65), np.float32))


def test_tampered_graph_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles["int8"], tmp_path)
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(path)


def test_edited_manifest_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles["fp32"], tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["normalization"]["mean"][0] = 99.0
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest sha256 mismatch"):
        load_bundle(path)


def test_unknown_format_version_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles["fp32"], tmp_path)
    rewrite_manifest(path, lambda m: m.update(format_version=2))
    with pytest.raises(BundleError, match="format version 2"):
        load_bundle(path)


@pytest.mark.parametrize("field", ["emotions", "normalization", "chunk_frames"])
def test_missing_field_is_named(bundles, tmp_path, field):
    path = copy_bundle(bundles["fp32"], tmp_path)
    rewrite_manifest(path, lambda m: m.pop(field))
    with pytest.raises(BundleError, match=f"lacks {field}"):
        load_bundle(path)


def as_compare(m):
    m["feature_spec"]["name"], m["feature_spec"]["columns"] = "compare", [f"c{i}" for i in range(65)]
    m["normalization"] = {"mean": [0.0] * 65, "std": [1.0] * 65}


def fewer_columns(m):
    m["feature_spec"]["columns"] = m["feature_spec"]["columns"][:24]
    m["normalization"] = {k: v[:24] for k, v in m["normalization"].items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (as_compare, "graph says edge_emo.feature_set = 'egemaps'"),
        (fewer_columns, "do not fit the manifest"),
        (lambda m: m.update(precision="int8"), "edge_emo.precision"),
        (lambda m: m["emotions"].reverse(), "edge_emo.emotions"),
    ],
)
def test_manifest_that_does_not_fit_the_graph_is_refused(bundles, tmp_path, change, message):
    path = copy_bundle(bundles["fp32"], tmp_path)
    rewrite_manifest(path, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_features_of_another_set_are_refused(bundles):
    compare = FeatureSpec("compare", tuple(f"c{i}" for i in range(65)))
    with pytest.raises(FeatureMismatchError, match="egemaps"):
        bundles["int8"].spec.check_compatible(compare, "bundle")
    with pytest.raises(ValueError, match="clip 1"):
        bundles["int8"].predict_utterances([np.zeros((5, 25)), np.zeros((5, 65))])


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="missing.bundle does not exist"):
        load_bundle(tmp_path / "missing.bundle")
    checkpoint = tmp_path / "ft.safetensors"  # a checkpoint where the device needs its export
    checkpoint.write_bytes(b"\x00")
    with pytest.raises(BundleError, match=r"not a model bundle .*`edge-emo export .*ft.safetensors --out"):
        load_bundle(checkpoint)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(tmp_path)


def test_reexport_replaces_atomically_and_keeps_the_previous(checkpoint_path, tmp_path):
    out = tmp_path / "m.bundle"
    first = export_bundle(checkpoint_path, out, precision="fp32")
    second = export_bundle(checkpoint_path, out, precision="int8")
    assert load_bundle(out).version == second.version
    assert load_bundle(tmp_path / "m.bundle.prev").version == first.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bundle", "m.bundle.prev"]


def test_a_bundle_that_would_not_load_is_never_put_in_place(bundles, tmp_path):
    out = copy_bundle(bundles["fp32"], tmp_path)
    manifest = {k: v for k, v in bundles["fp32"].manifest.items() if k != "manifest_sha256"}
    manifest["emotions"] = ["joy"]  # does not fit the graph's 6 outputs
    with pytest.raises(BundleError):
        write_bundle(out, bundles["fp32"].graph_path.read_bytes(), manifest)
    assert load_bundle(out).version == bundles["fp32"].version
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_new_head_is_written_into_a_new_bundle(bundles, tmp_path, precision):
    bundle = load_bundle(copy_bundle(bundles[precision], tmp_path))
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((256, 6)).astype(np.float32) * 0.1
    bias = np.arange(6, dtype=np.float32)
    clips = raw_clips(4, seed=8)
    new = write_bundle_with_head(bundle, weight, bias, bundle.path, provenance={"labels": 12})
    assert new.version != bundle.version and new.precision == precision
    record = {"from_version": bundle.version, "base_version": bundle.version, "labels": 12}
    assert new.provenance["personalization"] == record
    expected = bundle.embed_utterances(clips) @ weight + bias
    assert np.abs(new.predict_utterances(clips) - expected).max() <= 1e-4
    assert load_bundle(bundle.path.with_name(bundle.path.name + ".prev")).version == bundle.version
    with pytest.raises(ValueError, match=r"weight \(256, 6\)"):
        write_bundle_with_head(new, weight.T, bias, tmp_path / "x.bundle")


def test_loading_and_running_a_bundle_never_imports_torch_or_onnx(bundles):
    """onnxruntime alone checks and runs a bundle (importing onnx would cost a device about 12 MB)."""
    code = (
        "import sys, numpy as np\n"
        "from edge_emo.runtime.bundle import load_bundle\n"
        f"b = load_bundle({str(bundles['int8'].path)!r})\n"
        "y = b.predict_utterances([np.ones((23, 25), np.float32)])\n"
        "assert y.shape == (1, 6), y.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'onnx' not in sys.modules, 'onnx was imported'\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr


def test_export_command(checkpoint_path, tmp_path):
    out = tmp_path / "cli.bundle"
    result = edge_emo("export", checkpoint_path, "--out", out, "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    assert "fp32" in result.stdout and load_bundle(out).precision == "fp32"
    bad = edge_emo("export", tmp_path / "missing.safetensors", "--out", out, "--precision", "fp32")
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "missing.safetensors" in bad.stderr


def test_the_cue_margin_travels_in_the_bundle(bundles, checkpoint_path, tmp_path):
    """A checkpoint trained with a cue margin (and a fold kept at a further one) exports the total, which
    the runtime reads; a bundle without it has none; a margin outside the 0..3 scale is refused."""
    from edge_emo.train.checkpoint import save_checkpoint

    ckpt = load_checkpoint(checkpoint_path)
    ckpt.provenance = {**ckpt.provenance, "finetune": {**ckpt.provenance["finetune"], "cue_margin": 0.25}}
    ckpt.provenance["cue_margin_applied"] = 0.125
    save_checkpoint(ckpt, tmp_path / "margin.safetensors")
    bundle = export_bundle(tmp_path / "margin.safetensors", tmp_path / "margin.bundle", precision="fp32")
    assert bundle.cue_margin == 0.375 and bundle.manifest["cue_margin"] == 0.375
    assert bundles["fp32"].cue_margin == 0.0 and "cue_margin" not in bundles["fp32"].manifest
    for bad in (3.0, -0.1, "high"):
        path = copy_bundle(bundle, tmp_path / f"bad{bad}")
        rewrite_manifest(path, lambda m, bad=bad: m.update(cue_margin=bad))
        with pytest.raises(BundleError, match="cue_margin"):
            load_bundle(path)


def test_the_export_function_is_not_shadowed_by_its_submodule():
    """Importing a submodule sets the package attribute of its name: the module that defines export_bundle
    is named otherwise, so the package's export_bundle stays the function whatever was imported first."""
    import edge_emo.export
    import edge_emo.export.bundle_export

    assert callable(edge_emo.export.export_bundle) and callable(edge_emo.export.quantize_int8)

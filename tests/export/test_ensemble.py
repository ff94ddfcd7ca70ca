"""Models of one recipe merged into one GRU (edge_emo/train/ensemble.py): its outputs are the mean of theirs,
offline and through an exported bundle, and it carries the mean of their cue margins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_emo.features import FeatureSpec, NormStats
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.runtime.bundle import load_bundle
from edge_emo.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    provenance,
    save_checkpoint,
)
from edge_emo.train.ensemble import average_models
from tests.cli import edge_emo
from tests.export.test_bundle import raw_clips

EMOTIONS = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
SPEC = FeatureSpec("egemaps", tuple(f"lld{i}" for i in range(25)))
NORM = NormStats(np.full(25, 5.0, np.float32), np.full(25, 3.0, np.float32))


def member(seed: int, margin: float, hidden: int = 16, speakers=("a", "b")) -> Checkpoint:
    torch.manual_seed(seed)
    model = EmotionGRU(ModelConfig(25, hidden=hidden))
    with torch.no_grad():
        model.head.bias.normal_()
    facts = provenance(
        stage="finetuned", finetune={"cue_margin": margin, "speakers": list(speakers), "seed": seed}
    )
    return Checkpoint(model, SPEC, NORM, EMOTIONS, facts)


def test_the_merged_network_outputs_the_mean_of_its_members():
    members = [member(1, 0.2), member(2, 0.4, speakers=("c",)), member(3, 0.6)]
    merged = average_models(members)
    assert merged.model.config.hidden == 48 and merged.model.config.layers == 2
    x = torch.randn(3, 40, 25)
    lengths = torch.tensor([40, 17, 5])
    with torch.no_grad():
        expected = torch.stack([m.model(x, lengths) for m in members]).mean(0)
        np.testing.assert_allclose(merged.model(x, lengths), expected, atol=1e-5)
        embeddings = torch.cat([m.model.embed(x, lengths) for m in members], 1)
        np.testing.assert_allclose(merged.model.embed(x, lengths), embeddings, atol=1e-5)
    assert merged.provenance["finetune"]["cue_margin"] == pytest.approx(0.4)
    assert merged.provenance["finetune"]["speakers"] == ["a", "b", "c"]
    assert len(merged.provenance["members"]) == 3


def test_models_of_another_recipe_are_refused():
    with pytest.raises(CheckpointError, match="at least two"):
        average_models([member(1, 0.0)])
    with pytest.raises(CheckpointError, match="not of the first one's recipe"):
        average_models([member(1, 0.0), member(2, 0.0, hidden=8)])


def test_the_command_writes_a_checkpoint_that_exports_like_any_other(tmp_path):
    members = [member(4, 0.3), member(5, 0.5)]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_checkpoint(m, paths[-1])
    out = tmp_path / "both.safetensors"
    run = edge_emo("ensemble", *map(str, paths), "--out", str(out))
    assert run.returncode == 0, run.stderr
    run = edge_emo("export", str(out), "--out", str(tmp_path / "both.bundle"), "--precision", "fp32")
    assert run.returncode == 0, run.stderr
    bundle = load_bundle(tmp_path / "both.bundle")
    assert bundle.cue_margin == pytest.approx(0.4) and bundle.hidden == 32
    clips = raw_clips(4, seed=9)
    from edge_emo.train.finetune import predict

    expected = np.mean([predict(load_checkpoint(p), clips) for p in paths], 0)
    np.testing.assert_allclose(bundle.predict_utterances(clips), expected, atol=1e-4)
    # One checkpoint is not an ensemble: a one-line error, nothing written.
    run = edge_emo("ensemble", str(paths[0]), "--out", str(tmp_path / "one.safetensors"))
    assert (
        run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "one.safetensors").exists()


def test_the_gru_op_graph_of_an_ensemble_runs_each_member_alone(tmp_path):
    """The int8 bundle of three members merged: its fp32 GRU-op graph has one GRU op per member and layer,
    each on its own slice of the state (none of the merged layer's zero blocks), and outputs the mean of
    the members, as its int8 graph does within int8's error."""
    import onnx

    members = [member(s, 0.2, hidden=8) for s in (1, 2, 3)]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_checkpoint(m, paths[-1])
    save_checkpoint(average_models([load_checkpoint(p) for p in paths]), tmp_path / "three.safetensors")
    run = edge_emo("export", str(tmp_path / "three.safetensors"), "--out", str(tmp_path / "three.bundle"))
    assert run.returncode == 0, run.stderr
    bundle = load_bundle(tmp_path / "three.bundle")
    gru = bundle.with_graph("fp32-gru")
    ops = [n for n in onnx.load(str(gru.graph_path)).graph.node if n.op_type == "GRU"]
    assert len(ops) == 3 * 2 and {a.i for n in ops for a in n.attribute if a.name == "hidden_size"} == {8}
    from edge_emo.train.finetune import predict

    clips = raw_clips(4, seed=3)
    expected = np.mean([predict(load_checkpoint(p), clips) for p in paths], 0)
    np.testing.assert_allclose(gru.predict_utterances(clips), expected, atol=1e-4)
    # the streamed state is the merged one: chunk by chunk as in one call
    stream = gru.stream()
    for chunk in np.array_split(clips[0], 5):
        stream.run_chunk(chunk)
    np.testing.assert_allclose(
        stream.utterance_intensities(), gru.predict_utterances(clips[:1])[0], atol=1e-5
    )

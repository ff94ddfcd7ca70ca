"""Shared fixtures. `bundles` / `bundle`: small real bundles (openSMILE eGeMAPS frames of speech-like audio,
real pretraining and few-shot fine-tuning of a 32-unit GRU, real export to int8 and fp32, plus a bundle of a
different feature set), built once per session, no shared data; the runtime and personalize tests use them.
tests/export overrides `bundles` with production-shape bundles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge_emo.features import extract, spec_for
from edge_emo.runtime.bundle import Bundle, load_bundle
from tests.fixtures import synth_speech

# One math thread per process: tests and the subprocesses they start share two cores, and oversubscribed
# torch/BLAS threads slow small models down by an order of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def private_feature_cache(tmp_path_factory):
    """The whole test run uses its own feature cache and data folder (subprocesses inherit them), never a
    developer's cache or personalized model."""
    os.environ["EDGE_EMO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data"))
    # The graph choice file (a measurement of this machine) is the run's own, and every bundle that has an
    # int8 graph runs it, as `predict_utterances` does: exact comparisons cannot depend on a measurement.
    # tests/runtime/test_graph_choice.py lifts this to test the choice itself.
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ["EDGE_EMO_GRAPH"] = "int8"


def build_bundles(root: Path) -> dict[str, Bundle]:
    import torch

    from edge_emo.data.clips import ClipSet
    from edge_emo.export import export_bundle
    from edge_emo.features import FeatureSpec, NormStats
    from edge_emo.model import EmotionGRU, ModelConfig
    from edge_emo.train.checkpoint import Checkpoint, save_checkpoint
    from edge_emo.train.finetune import FinetuneConfig, finetune_head
    from edge_emo.train.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(1)
    spec = spec_for("egemaps")
    n = 18
    features = [
        extract(synth_speech(1.0 + 0.1 * i, seed=100 + i) * (0.2 + 0.1 * (i % 4)), 16000, spec)
        for i in range(n)
    ]
    labels = np.zeros((n, 6), np.float32)
    labels[np.arange(n), np.arange(n) % 6] = 1 + np.arange(n) % 3
    clips = ClipSet(spec, features, [f"s{i % 3}" for i in range(n)], [f"c{i}" for i in range(n)], labels)
    pre = pretrain([clips], PretrainConfig(epochs=2, batch_size=6), hidden=32)
    ckpt = finetune_head(pre, clips, FinetuneConfig(epochs=20, lr=1e-2, batch_size=6))
    save_checkpoint(ckpt, root / "finetuned.safetensors")
    out = {
        p: export_bundle(root / "finetuned.safetensors", root / f"{p}.bundle", precision=p)
        for p in ("int8", "fp32")
    }
    # A bundle trained on other frames than this openSMILE makes ("egemaps" with other columns).
    other = FeatureSpec("egemaps", tuple(f"other{i}" for i in range(spec.dim)))
    ones = NormStats(np.zeros(spec.dim, np.float32), np.ones(spec.dim, np.float32))
    model = EmotionGRU(ModelConfig(spec.dim, hidden=8))
    save_checkpoint(Checkpoint(model, other, ones, ckpt.emotions, {}), root / "other.safetensors")
    out["mismatch"] = export_bundle(root / "other.safetensors", root / "mismatch.bundle", precision="fp32")
    return out


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Bundle]:
    # A board has no torch: benchmarks/aarch64 builds these bundles on the host and points here at them.
    prebuilt = os.environ.get("EDGE_EMO_TEST_BUNDLES")
    if prebuilt:
        return {name: load_bundle(Path(prebuilt) / f"{name}.bundle") for name in ("int8", "fp32", "mismatch")}
    return build_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session")
def bundle(bundles) -> Bundle:
    return bundles["int8"]


@pytest.fixture(scope="session")
def adapting_bundle(bundles, tmp_path_factory) -> Bundle:
    """The fp32 test bundle, marked as trained on speaker-standardised frames (manifest `speaker_adaptation`,
    a prior worth 1 s of speech, so that a speaker's speech moves the estimate far)."""
    from edge_emo.runtime.bundle import write_bundle

    shipped = bundles["fp32"]
    manifest = {k: v for k, v in shipped.manifest.items() if k != "manifest_sha256"}
    manifest["speaker_adaptation"] = {"prior_s": 1.0, "memory_s": 600.0}
    out = tmp_path_factory.mktemp("adapting") / "adapting.bundle"
    write_bundle(out, shipped.graph_path.read_bytes(), manifest)
    return load_bundle(out)

"""A real checkpoint with the production shape (2 x 256 GRU, 25 eGeMAPS values, 6 emotions) and its
bundles, built once per session. Weights are torch's seeded initialisation with a non-zero head bias; no
shared data is needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_emo.export import export_bundle
from edge_emo.features import FeatureSpec, NormStats
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.train.checkpoint import Checkpoint, provenance, save_checkpoint

EMOTIONS = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
N_FEATURES = 25


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = EmotionGRU(ModelConfig(N_FEATURES))
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(0.1, 0.6, len(EMOTIONS)))
    spec = FeatureSpec("egemaps", tuple(f"lld{i}" for i in range(N_FEATURES)))
    norm = NormStats(np.full(N_FEATURES, 5.0, np.float32), np.full(N_FEATURES, 3.0, np.float32))
    prov = provenance(
        stage="finetuned", data=["tests"], finetune={"labeled_clips": 50, "seed": 3, "epochs": 30}
    )
    path = tmp_path_factory.mktemp("ckpt") / "finetuned.safetensors"
    save_checkpoint(Checkpoint(model, spec, norm, EMOTIONS, prov), path)
    return str(path)


@pytest.fixture(scope="session")
def bundles(checkpoint_path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bundles")
    return {p: export_bundle(checkpoint_path, out / f"{p}.bundle", precision=p) for p in ("fp32", "int8")}

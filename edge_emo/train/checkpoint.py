"""Checkpoints as safetensors (no pickle): weights, normalisation statistics and, in the metadata, the model
config, feature spec, emotion order and how the model was made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge_emo.features import FeatureSpec, NormStats
from edge_emo.model import EmotionGRU, ModelConfig

FORMAT = "edge-emo-checkpoint/1"


class CheckpointError(ValueError):
    """A file is not an edge-emo checkpoint, or not one usable here."""


@dataclass
class Checkpoint:
    model: EmotionGRU
    spec: FeatureSpec
    norm: NormStats
    emotions: tuple[str, ...]
    provenance: dict  # what data, which command, which commit; grows as the model passes through stages


def provenance(**fields) -> dict:
    """Facts about how a model is being made: the command, the code commit, the time, plus `fields`."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "command": " ".join(["edge-emo", *sys.argv[1:]]),
        "git_commit": commit or "unknown",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **fields,
    }


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> None:
    """Write atomically, so an interrupted save never leaves a half checkpoint under the final name."""
    path = Path(path)
    tensors = {k: v.detach().contiguous() for k, v in ckpt.model.state_dict().items()}
    tensors["norm.mean"] = torch.from_numpy(ckpt.norm.mean)
    tensors["norm.std"] = torch.from_numpy(ckpt.norm.std)
    metadata = {
        "format": FORMAT,
        "config": json.dumps(ckpt.model.config_dict()),
        "feature_spec": json.dumps(ckpt.spec.to_dict()),
        "emotions": json.dumps(list(ckpt.emotions)),
        "provenance": json.dumps(ckpt.provenance),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edge-emo checkpoint (format {metadata.get('format')!r})")
    norm = NormStats(tensors.pop("norm.mean").numpy(), tensors.pop("norm.std").numpy())
    model = EmotionGRU(ModelConfig(**json.loads(metadata["config"])))
    model.load_state_dict(tensors)
    return Checkpoint(
        model=model,
        spec=FeatureSpec.from_dict(json.loads(metadata["feature_spec"])),
        norm=norm,
        emotions=tuple(json.loads(metadata["emotions"])),
        provenance=json.loads(metadata["provenance"]),
    )

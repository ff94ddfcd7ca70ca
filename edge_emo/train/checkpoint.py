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
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge_emo.features import FeatureSpec, NormStats
from edge_emo.features.normalization import SpeakerAdaptation
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
    # Set when the model was trained on speaker-standardised frames (features/normalization.py): `norm` is
    # then the prior the device starts from.
    adaptation: SpeakerAdaptation | None = None


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
    if ckpt.adaptation is not None:
        metadata["speaker_adaptation"] = json.dumps(ckpt.adaptation.to_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def _read(path: Path, fmt: str, what: str) -> tuple[dict, dict]:
    """Tensors and metadata of a safetensors file of format `fmt`, or a CheckpointError naming the file."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if (path / "manifest.json").is_file():
        raise CheckpointError(
            f"{path} is a model bundle (made by `edge-emo export`), not a {what}: give the .safetensors "
            "it was exported from (`edge-emo pretrain` or `edge-emo finetune` writes one)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path} is a folder, not a {what} (.safetensors)")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors {what} ({e})") from e
    if metadata.get("format") != fmt:
        raise CheckpointError(f"{path}: not an edge-emo {what} (format {metadata.get('format')!r})")
    return tensors, metadata


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    tensors, metadata = _read(path, FORMAT, "checkpoint")
    norm = NormStats(tensors.pop("norm.mean").numpy(), tensors.pop("norm.std").numpy())
    model = EmotionGRU(ModelConfig(**json.loads(metadata["config"])))
    model.load_state_dict(tensors)
    return Checkpoint(
        model=model,
        spec=FeatureSpec.from_dict(json.loads(metadata["feature_spec"])),
        norm=norm,
        emotions=tuple(json.loads(metadata["emotions"])),
        provenance=json.loads(metadata["provenance"]),
        adaptation=(
            SpeakerAdaptation.from_dict(json.loads(metadata["speaker_adaptation"]))
            if "speaker_adaptation" in metadata
            else None
        ),
    )


STATE_FORMAT = "edge-emo-training-state/1"


def state_path(out: str | Path) -> Path:
    """Where a run that writes the checkpoint `out` keeps its training state while it is unfinished."""
    out = Path(out)
    return out.with_name(out.stem + ".state.safetensors")


def save_training_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: dict, run: dict
) -> None:
    """Everything needed to continue a run exactly, as safetensors (no pickle): the weights, the optimizer's
    per-parameter tensors (Adam: step, exp_avg, exp_avg_sq) and, as JSON metadata, where the run stands
    (`progress`) and what it is (`run`: config and data, which a resume must match). Written atomically."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{i}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {"format": STATE_FORMAT, "progress": json.dumps(progress), "run": json.dumps(run)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_training_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: dict
) -> dict:
    """Load a training state into `model` and `optimizer` (built as for a fresh run) and return its progress.
    Refuses a state of another run: any difference in `run` except the number of epochs."""
    path = Path(path)
    tensors, metadata = _read(path, STATE_FORMAT, "training state")
    saved, run = json.loads(metadata["run"]), json.loads(json.dumps(run))
    differs = sorted(k for k in set(saved) | set(run) if k != "epochs" and saved.get(k) != run.get(k))
    if differs:
        raise CheckpointError(
            f"{path}: the training state is of another run (differs in {', '.join(differs)}); "
            "run with the same data and options, or delete it to start afresh"
        )
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    as_saved = optimizer.state_dict()
    as_saved["state"] = state
    optimizer.load_state_dict(as_saved)
    return json.loads(metadata["progress"])


def applied_cue_margin(provenance: dict[str, Any]) -> float:
    """What a checkpoint's outputs were lowered by: the margin it was trained with plus any applied later
    (a cross-validation fold kept at another margin, benchmarks/quality_cv.py). Export writes it into the
    bundle, so that a head fitted on the device keeps it."""
    finetune = provenance.get("finetune") or {}
    return float(finetune.get("cue_margin") or 0.0) + float(provenance.get("cue_margin_applied") or 0.0)

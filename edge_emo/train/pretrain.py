"""Self-supervised pretraining (paper §Model): reconstruct clips in which one span of frames was masked.

Frames are standardised with statistics of the pretraining data; in every clip (or window of a long clip)
one span of `span` consecutive frames, at a random valid start, is set to `mask_value` (-30, far outside the
clipped standardised range). The network sees the masked clip and predicts the original frames. The loss is
the MSE over the masked frames only (`loss_on="masked"`) or over all frames (`"all"`, the paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from edge_emo.data.corpus import ClipSet
from edge_emo.data.labels import EMOTIONS
from edge_emo.features import NormStats
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.progress import progress
from edge_emo.train.batches import length_batches, pad
from edge_emo.train.checkpoint import Checkpoint, provenance


@dataclass
class PretrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    span: int = 30
    mask_value: float = -30.0
    loss_on: str = "masked"  # "masked" or "all"
    window: int = 400  # long clips are cut into windows of at most this many frames (4 s)
    min_frames: int = 20  # shorter windows carry too little context to learn from
    seed: int = 0


def mask_span(length: int, span: int, rng: np.random.Generator) -> slice:
    """One span at a random valid start. A clip shorter than 4 spans gets a span of a quarter of its length,
    so some context always remains on at least one side."""
    n = min(span, max(1, length // 4))
    start = int(rng.integers(0, length - n + 1))
    return slice(start, start + n)


def windows(clips: list[np.ndarray], window: int, min_frames: int) -> list[np.ndarray]:
    out = []
    for c in clips:
        out.extend(
            c[i : i + window] for i in range(0, len(c), window) if len(c[i : i + window]) >= min_frames
        )
    return out


def pretrain(
    corpora: list[ClipSet], config: PretrainConfig, hidden: int = 256, layers: int = 2
) -> Checkpoint:
    """Pretrain a fresh network on all clips of `corpora` (labels, if any, are ignored)."""
    spec = corpora[0].spec
    for c in corpora[1:]:
        spec.check_compatible(c.spec, "pretraining corpus")
    raw = [f for c in corpora for f in c.features]
    norm = NormStats.fit(raw)
    data = windows([norm.apply(f) for f in raw], config.window, config.min_frames)
    if not data:
        raise ValueError(f"no clip has at least {config.min_frames} frames to pretrain on")

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = EmotionGRU(ModelConfig(spec.dim, hidden, layers, len(EMOTIONS)))
    opt = torch.optim.Adam([*model.gru.parameters(), *model.recon.parameters()], lr=config.lr)
    lengths = [len(w) for w in data]
    history = []
    for _ in progress(range(config.epochs), "pretraining (epochs)"):
        total, count = 0.0, 0
        for idx in length_batches(lengths, config.batch_size, rng):
            target, lens = pad([data[i] for i in idx])
            valid = torch.arange(target.shape[1])[None, :] < lens[:, None]
            masked_x = target.clone()
            masked = torch.zeros_like(valid)
            for b, i in enumerate(idx):
                s = mask_span(lengths[i], config.span, rng)
                masked_x[b, s] = config.mask_value
                masked[b, s] = True
            weight = (masked if config.loss_on == "masked" else valid).float()
            err = ((model.reconstruct(masked_x) - target) ** 2).mean(-1)
            loss = (err * weight).sum() / weight.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.append(round(total / count, 5))
    return Checkpoint(
        model,
        spec,
        norm,
        EMOTIONS,
        provenance(
            stage="pretrained",
            pretrain={**asdict(config), "clips": len(raw), "windows": len(data), "loss_history": history},
        ),
    )

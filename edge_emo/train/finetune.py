"""Few-shot fine-tuning (paper §Few-shot): N labeled clips, MSE on the six intensities, Adam 1e-3, 30 epochs
(optionally with the present cells weighted up: `pos_weight`).

- `finetune_head`: the pretrained backbone is frozen and only the 6-unit head learns. A frozen backbone
  gives every clip a fixed embedding, so embeddings are computed once and the head trains on them.
- `train_baseline`: the same architecture from scratch, every weight trained on the same clips.
- `finetune_all`: every weight trained too, but starting from the pretrained network (and its normalisation).

`fit_head` trains a head on precomputed embeddings, so that an experiment embeds every clip once and reuses
the embeddings across label draws.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edge_emo.data.corpus import ClipSet
from edge_emo.features import NormStats
from edge_emo.metrics import PRESENT
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.progress import stage
from edge_emo.train.batches import length_batches, pad
from edge_emo.train.checkpoint import Checkpoint, provenance


@dataclass
class FinetuneConfig:
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    # Weight of the squared error on cells where the emotion is present (truth >= 0.5). Each emotion is
    # present in about one clip in nine: with weight 1 the loss is won by predicting near 0 everywhere.
    pos_weight: float = 1.0


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Mean squared error with the cells where an emotion is present weighted by `pos_weight`."""
    weight = 1.0 + (pos_weight - 1.0) * (target >= PRESENT).to(pred.dtype)
    return (weight * (pred - target) ** 2).mean()


def sample_labeled(clips: ClipSet, n: int | None, seed: int) -> ClipSet:
    """`n` labeled clips drawn at random with `seed` (all of them when n is None)."""
    if clips.labels is None:
        raise ValueError("fine-tuning needs a labeled corpus (labels.csv)")
    return clips if n is None else clips.subset(label_draw(len(clips), n, seed))


def label_draw(n_clips: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of `n` of `n_clips` clips, drawn at random with `seed`."""
    if not 1 <= n <= n_clips:
        raise ValueError(f"asked for {n} labeled clips but the corpus split has {n_clips}")
    return np.sort(np.random.default_rng(seed).choice(n_clips, n, replace=False))


@torch.inference_mode()
def embed(
    model: EmotionGRU, norm: NormStats, features: Sequence[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Utterance embeddings (N, H) of clips given as raw feature frames."""
    model.eval()
    out = np.zeros((len(features), model.config.hidden), dtype=np.float32)
    with stage("embedding clips", len(features), "clips") as advance:
        for idx in length_batches([len(f) for f in features], batch_size, None):
            x, lengths = pad([norm.apply(features[i]) for i in idx])
            out[idx] = model.embed(x, lengths).numpy()
            advance(len(idx))
    return out


def predict(ckpt: Checkpoint, features: Sequence[np.ndarray]) -> np.ndarray:
    """Utterance-level intensities (N, 6) of clips given as raw feature frames, as the streaming runtime
    emits them at the end of each clip."""
    with torch.inference_mode():
        return ckpt.model.head(torch.from_numpy(embed(ckpt.model, ckpt.norm, features))).numpy()


def fit_head(
    head: nn.Linear, embeddings: np.ndarray, labels: np.ndarray, config: FinetuneConfig
) -> nn.Linear:
    """Train `head` in place on utterance embeddings (N, H) and intensities (N, 6); returns it."""
    x, y = torch.from_numpy(embeddings), torch.from_numpy(np.asarray(labels, dtype=np.float32))
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        for idx in np.array_split(rng.permutation(len(x)), max(1, -(-len(x) // config.batch_size))):
            loss = weighted_mse(head(x[idx]), y[idx], config.pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


def finetune_head(init: Checkpoint, clips: ClipSet, config: FinetuneConfig) -> Checkpoint:
    init.spec.check_compatible(clips.spec, "the pretrained checkpoint")
    model = copy.deepcopy(init.model)
    fit_head(model.head, embed(model, init.norm, clips.features), clips.labels, config)
    return _finetuned(model, init, clips, config, stage="finetuned")


def train_baseline(
    clips: ClipSet,
    config: FinetuneConfig,
    hidden: int = 256,
    layers: int = 2,
    renditions: Sequence[ClipSet] = (),
) -> Checkpoint:
    torch.manual_seed(config.seed)
    model = EmotionGRU(ModelConfig(clips.spec.dim, hidden, layers, clips.labels.shape[1]))
    init = Checkpoint(model, clips.spec, NormStats.fit(clips.features), clips.emotions, {})
    _fit_all(model, init.norm, clips, config, "baseline training", renditions)
    return _finetuned(model, init, clips, config, stage="baseline", renditions=renditions)


def finetune_all(
    init: Checkpoint, clips: ClipSet, config: FinetuneConfig, renditions: Sequence[ClipSet] = ()
) -> Checkpoint:
    """Every weight trained on the labeled clips, starting from the pretrained network."""
    init.spec.check_compatible(clips.spec, "the pretrained checkpoint")
    model = copy.deepcopy(init.model)
    _fit_all(model, init.norm, clips, config, "fine-tuning the whole network", renditions)
    return _finetuned(model, init, clips, config, stage="finetuned_all", renditions=renditions)


def _fit_all(
    model: EmotionGRU,
    norm: NormStats,
    clips: ClipSet,
    config: FinetuneConfig,
    label: str,
    renditions: Sequence[ClipSet] = (),
) -> None:
    """Train every weight. `renditions` are the same clips in the same order heard otherwise (e.g. through
    other microphone gains): every epoch, each clip comes from one of its versions at random, so
    augmentation costs no extra time per epoch."""
    for r in renditions:
        if len(r) != len(clips) or r.names != clips.names:
            raise ValueError("renditions must hold the same clips as the training clips, in the same order")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    versions = [[norm.apply(f) for f in c.features] for c in (clips, *renditions)]
    y = torch.from_numpy(clips.labels)
    opt = torch.optim.Adam([*model.gru.parameters(), *model.head.parameters()], lr=config.lr)
    model.train()
    steps = -(-len(clips) // config.batch_size)  # batches per epoch
    with stage(label, config.epochs * steps, "steps") as advance:
        for epoch in range(config.epochs):
            data = versions[0]
            if renditions:
                pick = rng.integers(0, len(versions), len(clips))
                data = [versions[v][i] for i, v in enumerate(pick)]
            for idx in length_batches([len(d) for d in data], config.batch_size, rng):
                x, lengths = pad([data[i] for i in idx])
                loss = weighted_mse(model(x, lengths), y[idx], config.pos_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                advance(1, f"{label}, epoch {epoch + 1}/{config.epochs}")


def _finetuned(
    model,
    init: Checkpoint,
    clips: ClipSet,
    config: FinetuneConfig,
    stage: str,
    renditions: Sequence[ClipSet] = (),
) -> Checkpoint:
    return Checkpoint(
        model,
        init.spec,
        init.norm,
        clips.emotions,
        provenance(
            stage=stage,
            finetune={
                **asdict(config),
                "frozen_backbone": stage == "finetuned",
                "labeled_clips": len(clips),
                "speakers": sorted(set(clips.speakers)),  # evaluate warns when scored on these
                **({"renditions": len(renditions)} if renditions else {}),
            },
            pretrained_from=init.provenance or None,
        ),
    )

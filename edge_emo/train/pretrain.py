"""Self-supervised pretraining (paper §Model): reconstruct clips in which one span of frames was masked.

Frames are standardised with statistics of the pretraining data; in every clip (or window of a long clip)
one span of `span` consecutive frames, at a random valid start, is set to `mask_value` (-30, far outside the
clipped standardised range). The network sees the masked clip and predicts the original frames. The loss is
the MSE over the masked frames only (`loss_on="masked"`) or over all frames (`"all"`, the paper).

One loop serves one process and a torchrun job of N (see distributed.py). Each step takes one global batch of
`batch_size` windows, the same in every process (batch order from (seed, epoch), masks from (seed, epoch,
step)); process r trains on windows r, r+N, r+2N, ... of it. The loss of a step is the sum of the squared
errors over the global batch divided by the number of frames the loss covers in the global batch; each
process computes its part of that sum and DDP averages the gradients, so N processes take the same steps as
one process on the whole batch (up to float rounding). A step never depends on the process count, so a run
may be resumed with a different number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edge_emo.data.clips import ClipSet
from edge_emo.emotions import EMOTIONS
from edge_emo.features import NormStats
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.progress import stage
from edge_emo.train import distributed
from edge_emo.train.batches import epoch_batches, pad
from edge_emo.train.checkpoint import Checkpoint, load_training_state, provenance, save_training_state


@dataclass
class PretrainConfig:
    epochs: int = 20
    batch_size: int = 32  # windows per global batch, split over the processes
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


def windows(lengths: Sequence[int], window: int, min_frames: int) -> list[tuple[int, int, int]]:
    """(clip, start, stop) of the windows of at most `window` frames that clips of `lengths` are cut into."""
    return [
        (c, i, min(i + window, n))
        for c, n in enumerate(lengths)
        for i in range(0, n, window)
        if min(i + window, n) - i >= min_frames
    ]


class _Reconstruction(nn.Module):
    """The network as pretraining calls it, so that DDP sees the call and exchanges the gradients."""

    def __init__(self, model: EmotionGRU):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(x)


def _masked_batch(
    clips: list[np.ndarray], masks: list[slice], config: PretrainConfig, n_features: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked input, target, weight of each frame in the loss) of this process's part of a batch."""
    if not clips:  # a share of a short last batch can be empty; the process still joins the gradient exchange
        return torch.zeros(0, 1, n_features), torch.zeros(0, 1, n_features), torch.zeros(0, 1)
    target, lengths = pad(clips)
    valid = torch.arange(target.shape[1])[None, :] < lengths[:, None]
    masked_x = target.clone()
    masked = torch.zeros_like(valid)
    for b, s in enumerate(masks):
        masked_x[b, s] = config.mask_value
        masked[b, s] = True
    return masked_x, target, (masked if config.loss_on == "masked" else valid).float()


def pretrain(
    corpora: list[ClipSet],
    config: PretrainConfig,
    hidden: int = 256,
    layers: int = 2,
    state_file: Path | None = None,
    save_every_steps: int = 0,
    resume: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Checkpoint:
    """Pretrain a fresh network on all clips of `corpora` (labels, if any, are ignored).

    With `state_file`, the training state is saved there at the end of every epoch (and every
    `save_every_steps` steps); `resume` continues from such a state. `log` receives a line per epoch.
    In a distributed run, call it in every process; rank 0 alone logs and writes."""
    dist = distributed.current()
    spec = corpora[0].spec
    for c in corpora[1:]:
        spec.check_compatible(c.spec, "pretraining corpus")
    raw = [f for c in corpora for f in c.features]
    if not raw:
        raise ValueError("cannot pretrain on no clips")
    if config.batch_size < dist.world_size:
        raise ValueError(f"a batch of {config.batch_size} windows cannot feed {dist.world_size} processes")
    # Each process sums the statistics of its share of the clips: the corpus is read once, not N times.
    mine = raw[dist.rank :: dist.world_size]
    norm = NormStats.from_sums(dist.sum(torch.from_numpy(NormStats.frame_sums(mine, spec.dim))).numpy())
    spans = windows([len(f) for f in raw], config.window, config.min_frames)
    if not spans:
        raise ValueError(f"no clip has at least {config.min_frames} frames to pretrain on")
    lengths = [stop - start for _, start, stop in spans]

    torch.manual_seed(config.seed)
    model = EmotionGRU(ModelConfig(spec.dim, hidden, layers, len(EMOTIONS))).to(dist.device)
    model.head.requires_grad_(False)  # not part of pretraining: DDP must not wait for its gradients
    opt = torch.optim.Adam([*model.gru.parameters(), *model.recon.parameters()], lr=config.lr)
    run = {**asdict(config), "hidden": hidden, "layers": layers, "clips": len(raw), "windows": len(spans)}
    at = {"epoch": 0, "step": 0, "history": [], "loss_sum": 0.0, "clips": 0}
    if resume is not None:
        at = load_training_state(resume, model, opt, run)
    # Every process must read the same training state (on several machines: from a shared filesystem).
    dist.check_same([at["epoch"], at["step"]], "the epoch and step to start from")
    net = _Reconstruction(model)
    if dist.world_size > 1:
        net = DistributedDataParallel(
            net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )

    def save(at: dict) -> None:
        if state_file is not None and dist.is_main:
            save_training_state(state_file, model, opt, at, run)
        dist.barrier()

    per_epoch = -(-len(lengths) // config.batch_size)  # steps (batches) per epoch
    steps = (config.epochs - at["epoch"]) * per_epoch - at["step"]
    shown = stage("pretraining", steps, "steps") if dist.is_main else nullcontext(lambda *_: None)
    with shown as advance:
        for epoch in range(at["epoch"], config.epochs):
            batches = epoch_batches(lengths, config.batch_size, config.seed, epoch)
            started, frames = time.perf_counter(), 0
            for step in range(at["step"], len(batches)):
                idx = batches[step]
                rng = np.random.default_rng([config.seed, epoch, step])
                masks = [mask_span(lengths[i], config.span, rng) for i in idx]
                counted = (
                    sum(s.stop - s.start for s in masks)
                    if config.loss_on == "masked"
                    else sum(lengths[i] for i in idx)
                )
                share = range(dist.rank, len(idx), dist.world_size)
                clips = [norm.apply(raw[c][a:b]) for c, a, b in (spans[idx[k]] for k in share)]
                batch = _masked_batch(clips, [masks[k] for k in share], config, spec.dim)
                x, target, weight = (t.to(dist.device) for t in batch)
                part = ((((net(x) - target) ** 2).mean(-1)) * weight).sum()
                # DDP averages the gradients over the N processes: scaled by N, they add up to the gradient of
                # (sum of the errors over the global batch) / (frames counted in the global batch).
                loss = part * (dist.world_size / counted)
                opt.zero_grad()
                loss.backward()
                opt.step()
                at["loss_sum"] += float(dist.sum(part)) / counted * len(idx)
                at["clips"] += len(idx)
                at["step"] = step + 1
                frames += sum(lengths[i] for i in idx)
                advance(1, f"pretraining, epoch {epoch + 1}/{config.epochs}")
                if save_every_steps and at["step"] % save_every_steps == 0 and at["step"] < len(batches):
                    save(at)
            history = [*at["history"], round(at["loss_sum"] / at["clips"], 5)]
            at = {"epoch": epoch + 1, "step": 0, "history": history, "loss_sum": 0.0, "clips": 0}
            save(at)
            if log is not None and dist.is_main:
                rate = frames / (time.perf_counter() - started)
                log(
                    f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]}, {rate:.0f} frames/s in {dist.world_size} process(es)"
                )
    model.head.requires_grad_(True)
    return Checkpoint(
        model.cpu(),
        spec,
        norm,
        EMOTIONS,
        provenance(
            stage="pretrained",
            pretrain={**run, "loss_history": at["history"]},
        ),
    )


@dataclass
class PretrainData:
    """The corpora of `edge-emo pretrain` (see its --help)."""

    dirs: list[Path]
    mosei_covarep: Path | None = None
    mosei_labels: Path | None = None
    feature_set: str | None = None  # default: a feature log's own, covarep for MOSEI, else egemaps
    split: str = "all"
    split_seed: int = 0


def pretrain_to_file(
    data: PretrainData,
    config: PretrainConfig,
    out: Path,
    hidden: int,
    layers: int,
    save_every_steps: int = 0,
    resume: Path | None = None,
    say: Callable[[str], None] = print,
    log: Callable[[str], None] | None = None,
) -> None:
    """Pretrain on `data` and write the checkpoint `out`, alone or in every process of a torchrun job. The
    training state beside `out` (state_path) is saved as configured and continued from when a run was
    interrupted (or from `resume`); it is removed once `out` is written."""
    from edge_emo.data.log_corpus import log_spec
    from edge_emo.data.sources import default_feature_set, feature_spec, load_corpora
    from edge_emo.train.checkpoint import save_checkpoint, state_path

    logged = [
        spec for spec in map(log_spec, data.dirs) if spec is not None
    ]  # feature logs name their features
    fs = data.feature_set or (
        logged[0].name if logged else default_feature_set(data.dirs, data.mosei_covarep is not None)
    )
    dist = distributed.start()
    try:
        # The first process of each machine extracts missing features into the cache; the others then read it.
        if dist.local_rank != 0:
            dist.barrier()
        corpora = load_corpora(
            data.dirs, data.mosei_covarep, data.mosei_labels, feature_spec(fs), data.split, data.split_seed
        )
        if dist.local_rank == 0:
            dist.barrier()
        state = state_path(out)
        if resume is None and state.is_file():
            resume = state
        if resume is not None and dist.is_main:
            say(f"continuing from the training state {resume}")
        ckpt = pretrain(corpora, config, hidden, layers, state, save_every_steps, resume, log)
        if dist.is_main:
            mosei = [str(data.mosei_covarep)] if data.mosei_covarep else []
            ckpt.provenance["data"] = [str(d) for d in data.dirs] + mosei
            ckpt.provenance["split"] = {"split": data.split, "seed": data.split_seed}
            save_checkpoint(ckpt, out)
            state.unlink(missing_ok=True)  # the run is complete: a rerun starts afresh
            history = ckpt.provenance["pretrain"]["loss_history"]
            print(
                f"pretrained on {sum(len(c) for c in corpora)} clips in {dist.world_size} process(es); "
                f"loss {history[0]} -> {history[-1]}; wrote {out}"
            )
        dist.barrier()
    finally:
        distributed.stop()

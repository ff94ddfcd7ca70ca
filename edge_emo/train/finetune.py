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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_emo.data.clips import ClipSet
from edge_emo.data.corpus import SpeechCut, load_corpus
from edge_emo.data.gain import Gain
from edge_emo.data.mosei import load_mosei
from edge_emo.emotions import PRESENT
from edge_emo.features import FeatureSpec, NormStats
from edge_emo.features.normalization import SpeakerAdaptation, speaker_adapted
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.progress import stage
from edge_emo.train.batches import length_batches, pad
from edge_emo.train.checkpoint import Checkpoint, applied_cue_margin, provenance


@dataclass
class FinetuneConfig:
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    # Weight of the squared error on cells where the emotion is present (truth >= 0.5). Each emotion is
    # present in about one clip in nine: with weight 1 the loss is won by predicting near 0 everywhere.
    pos_weight: float = 1.0
    # Whole-network training sees a random stretch of at most this many seconds of each longer clip per
    # epoch: the label describes the whole utterance, and the mean over any long stretch of it estimates the
    # same thing, so crops are cheap augmentation and bound the cost of long clips. None: whole clips.
    crop_s: float | None = None
    # Subtracted from every output once training is done (from the head's bias, so the device pays nothing):
    # an emotion then needs this much more evidence to reach the 0.5 at which the device names it. Trades a
    # little recall for fewer false cues on calm speech (docs/QUALITY.md chose it on held-out speakers).
    cue_margin: float = 0.0
    # Train on frames standardised by each speaker's own statistics (features/normalization.py); the
    # device then estimates its partner's as it listens. None: one set of statistics for everyone.
    speaker_adaptation: SpeakerAdaptation | None = None
    # With speaker adaptation: the share of clips per epoch standardised by the prior alone, as the device
    # hears a stranger's first words, so that the model does not rely on an estimate it may not have yet.
    cold_start: float = 0.0
    # Whole-network training only, against learning the few training speakers by heart: dropout between
    # the GRU layers and on the utterance embedding; per clip and epoch, `mask_features` feature columns and
    # one span of up to `mask_span_s` seconds set to the training mean (0 once standardised); the learning
    # rate annealed to 0 along a cosine, so the weights that ship are not those of one noisy late step.
    dropout: float = 0.0
    mask_features: int = 0
    mask_span_s: float = 0.0
    lr_decay: bool = False
    # Weight of a cross-entropy on the categorical readout the device shows (the strongest emotion if it
    # reaches PRESENT, else neutral), added to the MSE: the six outputs and a neutral score fixed at PRESENT
    # are the logits, so the loss pushes the right emotion above the others and above the threshold.
    readout_weight: float = 0.0
    # With teachers (networks of the same recipe trained on the same clips, e.g. the members of an ensemble),
    # the target of every clip is this share of the teachers' mean output on the clip as the student hears
    # it (the same crop, rendition and masking) and the rest its labels: one network learns what several
    # say, at the device cost of one (knowledge distillation).
    distill_weight: float = 0.0


# Logit units per intensity point in the readout loss: an output 1 point above another is e^2 : 1 odds.
READOUT_SCALE = 2.0


def readout_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the categorical readout of `pred` against that of `target` (both (B, E))."""
    top = target.max(1)
    truth = torch.where(top.values >= PRESENT, top.indices + 1, 0)
    logits = torch.cat([torch.full_like(pred[:, :1], PRESENT), pred], 1) * READOUT_SCALE
    return nn.functional.cross_entropy(logits, truth)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Mean squared error with the cells where an emotion is present weighted by `pos_weight`."""
    weight = 1.0 + (pos_weight - 1.0) * (target >= PRESENT).to(pred.dtype)
    return (weight * (pred - target) ** 2).mean()


@dataclass
class TrainingData:
    """What a fine-tuning run learns from: labeled corpora (and CMU-MOSEI), ordinary speech as 'no emotion',
    the speaker split, how much of each clip, and microphone gains to hear every clip through."""

    labeled: list[Path] = field(default_factory=list)
    neutral: list[Path] = field(default_factory=list)
    mosei: tuple[Path, Path] | None = None
    split: str = "all"
    split_seed: int = 0
    cut: str = (
        "whole"  # a SpeechCut: 'whole' clips or their 'speech'; neutral speech is always cut in utterances
    )
    gains: list = field(default_factory=list)  # Gain renditions for whole-network training
    cut_at_gain: bool = False  # cut each labeled rendition as the detector hears it at its gain

    def load(self, spec: FeatureSpec, gain: Gain | None = None) -> tuple[ClipSet, ClipSet | None]:
        """(labeled clips, neutral utterances or None), heard through `gain`; the same clips in the same
        order for every gain."""
        sets = [
            load_corpus(
                d,
                spec,
                self.split,
                self.split_seed,
                gain=gain,
                cut=self.cut,
                cut_at_gain=self.cut_at_gain and gain is not None,
            )
            for d in self.labeled
        ]
        if self.mosei is not None:
            if gain is not None:
                raise ValueError("--train-gains needs audio corpora; CMU-MOSEI comes as precomputed frames")
            sets.append(load_mosei(*self.mosei, spec).split(self.split, self.split_seed))
        if not sets:
            raise ValueError("no labeled corpus given: name a DATA_DIR or --mosei-covarep/--mosei-labels")
        for d, c in zip(self.labeled, sets):
            if c.labels is None:
                raise ValueError(f"{d}: fine-tuning needs a labeled corpus (labels.csv)")
        neutral = [load_corpus(d, spec, gain=gain, cut=SpeechCut.utterances) for d in self.neutral]
        for d, c in zip(self.neutral, neutral):
            if c.labels is not None:
                raise ValueError(
                    f"{d}: --neutral takes unlabeled ordinary speech (manifest.csv), not labels.csv"
                )
            if not len(c):
                raise ValueError(f"{d}: the voice detector found no utterance to use as neutral speech")
        return ClipSet.concat(sets), (ClipSet.concat(neutral).as_neutral() if neutral else None)


def train(
    data: TrainingData,
    spec: FeatureSpec,
    config: FinetuneConfig,
    init: Checkpoint | None = None,
    full: bool = False,
    labels: int | None = None,
    hidden: int = 256,
    layers: int = 2,
    teachers: Sequence[Checkpoint] = (),
) -> tuple[Checkpoint, str]:
    """Fine-tune (the head on `init`'s frozen backbone, or every weight with `full`) or train the baseline
    (no `init`) on `labels` clips drawn from the labeled corpora plus all neutral utterances. Returns the
    checkpoint and a description of what it learned from."""
    if full and init is None:
        raise ValueError("--full fine-tunes a pretrained network: give it with --init")
    if data.gains and init is not None and not full:
        raise ValueError("--train-gains needs whole-network training (--full or no --init)")
    if config.crop_s is not None and init is not None and not full:
        raise ValueError("--crop-s needs whole-network training (--full or no --init)")
    if teachers and init is not None:
        raise ValueError("--distill-from trains a network from scratch: not with --init")

    def clips_heard(gain: Gain | None) -> tuple[ClipSet, int | None]:
        labeled, neutral = data.load(spec, gain)
        chosen = sample_labeled(labeled, labels, config.seed)
        return (chosen, None) if neutral is None else (ClipSet.concat([chosen, neutral]), len(neutral))

    clips, neutral_count = clips_heard(None)
    renditions = [clips_heard(g)[0] for g in data.gains]
    if init is None:
        ckpt = train_baseline(clips, config, hidden, layers, renditions, teachers)
    elif full:
        ckpt = finetune_all(init, clips, config, renditions)
    else:
        ckpt = finetune_head(init, clips, config)
    ckpt.provenance["data"] = [str(d) for d in data.labeled] + ([str(data.mosei[0])] if data.mosei else [])
    ckpt.provenance["split"] = {"split": data.split, "seed": data.split_seed}
    ckpt.provenance["finetune"]["cut"] = data.cut
    if data.cut_at_gain:
        ckpt.provenance["finetune"]["cut_at_gain"] = True
    if data.neutral:
        ckpt.provenance["finetune"]["neutral"] = [str(d) for d in data.neutral]
    n_labeled = len(clips) - (0 if neutral_count is None else neutral_count)
    learned = f"{n_labeled} labeled clips" + (
        f" and {neutral_count} neutral utterances" if neutral_count else ""
    )
    return ckpt, learned


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


def predict(
    ckpt: Checkpoint, features: Sequence[np.ndarray], speakers: Sequence[str] | None = None
) -> np.ndarray:
    """Utterance-level intensities (N, 6) of clips given as raw feature frames, as the streaming runtime
    emits them at the end of each clip. A speaker-adapting model standardises each clip by its speaker's
    estimate when `speakers` is given, else by the prior (the device before it has heard anyone)."""
    if ckpt.adaptation is not None and speakers is not None:
        features = speaker_adapted(features, speakers, ckpt.norm, ckpt.adaptation, ckpt.spec.hop_s)
    with torch.inference_mode():
        return ckpt.model.head(torch.from_numpy(embed(ckpt.model, ckpt.norm, features))).numpy()


def adapted(clips: ClipSet, norm: NormStats, adaptation: SpeakerAdaptation | None) -> list[np.ndarray]:
    """The clips' frames as a model with `adaptation` sees them through `norm` (unchanged without one)."""
    if adaptation is None:
        return clips.features
    return speaker_adapted(clips.features, clips.speakers, norm, adaptation, clips.spec.hop_s)


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
    features = adapted(clips, init.norm, config.speaker_adaptation)
    fit_head(model.head, embed(model, init.norm, features), clips.labels, config)
    return _finetuned(model, init, clips, config, stage="finetuned")


def train_baseline(
    clips: ClipSet,
    config: FinetuneConfig,
    hidden: int = 256,
    layers: int = 2,
    renditions: Sequence[ClipSet] = (),
    teachers: Sequence[Checkpoint] = (),
) -> Checkpoint:
    torch.manual_seed(config.seed)
    model = EmotionGRU(ModelConfig(clips.spec.dim, hidden, layers, clips.labels.shape[1]))
    init = Checkpoint(model, clips.spec, NormStats.fit(clips.features), clips.emotions, {})
    _fit_all(model, init.norm, clips, config, "baseline training", renditions, teachers)
    ckpt = _finetuned(model, init, clips, config, stage="baseline", renditions=renditions)
    if teachers:
        ckpt.provenance["finetune"]["teachers"] = [
            t.provenance.get("finetune", {}).get("seed") for t in teachers
        ]
    return ckpt


def teacher_models(
    teachers: Sequence[Checkpoint], norm: NormStats, clips: ClipSet, config: FinetuneConfig
) -> list[tuple[EmotionGRU, float]]:
    """Each teacher's network (in eval mode) and its cue margin, to be added back: the student learns the
    outputs before any margin and has its own lowered at the end, as any model. A teacher must hear what the
    student hears: the same frames, emotions and standardisation (networks trained on the same clips)."""
    out = []
    for t in teachers:
        t.spec.check_compatible(clips.spec, "a teacher")
        if tuple(t.emotions) != tuple(clips.emotions):
            raise ValueError(f"a teacher predicts {', '.join(t.emotions)}, not {', '.join(clips.emotions)}")
        same_norm = np.allclose(t.norm.mean, norm.mean, rtol=1e-5) and np.allclose(
            t.norm.std, norm.std, rtol=1e-5
        )
        if not same_norm or (t.adaptation is None) != (config.speaker_adaptation is None):
            raise ValueError(
                "a teacher standardises its frames otherwise: distil from networks trained on the same clips"
            )
        out.append((copy.deepcopy(t.model).eval(), applied_cue_margin(t.provenance)))
    return out


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
    teachers: Sequence[Checkpoint] = (),
) -> None:
    """Train every weight. `renditions` are the same clips in the same order heard otherwise (e.g. through
    other microphone gains): every epoch, each clip comes from one of its versions at random, so
    augmentation costs no extra time per epoch. `teachers`: see FinetuneConfig.distill_weight."""
    for r in renditions:
        if len(r) != len(clips) or r.names != clips.names:
            raise ValueError("renditions must hold the same clips as the training clips, in the same order")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    # Each rendition's speaker estimates are its own: a gain moves a speaker's statistics with their frames.
    heard = [clips, *renditions]
    versions = [[norm.apply(f) for f in adapted(c, norm, config.speaker_adaptation)] for c in heard]
    cold_start = config.cold_start if config.speaker_adaptation is not None else 0.0
    cold = [[norm.apply(f) for f in c.features] for c in heard] if cold_start else []
    y = torch.from_numpy(clips.labels)
    if bool(teachers) != bool(config.distill_weight):
        raise ValueError("distillation needs both teachers and a distill weight above 0")
    taught = teacher_models(teachers, norm, clips, config)
    opt = torch.optim.Adam([*model.gru.parameters(), *model.head.parameters()], lr=config.lr)
    model.train()
    model.gru.dropout = config.dropout  # nn.GRU applies it between layers in training mode only
    crop = None if config.crop_s is None else max(1, round(config.crop_s / clips.spec.hop_s))
    span = round(config.mask_span_s / clips.spec.hop_s)
    steps = -(-len(clips) // config.batch_size)  # batches per epoch
    decay = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * steps) if config.lr_decay else None
    )
    with stage(label, config.epochs * steps, "steps") as advance:
        for epoch in range(config.epochs):
            data = versions[0]
            if renditions or cold:
                pick = rng.integers(0, len(versions), len(clips))
                data = [versions[v][i] for i, v in enumerate(pick)]
            if cold:
                stranger = rng.random(len(clips)) < cold_start
                data = [cold[v][i] if s else d for i, (d, s, v) in enumerate(zip(data, stranger, pick))]
            if crop is not None:
                starts = [int(rng.integers(0, len(d) - crop + 1)) if len(d) > crop else 0 for d in data]
                data = [d[s : s + crop] for d, s in zip(data, starts)]
            for idx in length_batches([len(d) for d in data], config.batch_size, rng):
                x, lengths = pad([masked(data[i], config.mask_features, span, rng) for i in idx])
                embedding = nn.functional.dropout(model.embed(x, lengths), config.dropout, training=True)
                pred = model.head(embedding)
                target = y[idx]
                if taught:
                    with torch.no_grad():
                        said = torch.stack([t.head(t.embed(x, lengths)) + m for t, m in taught]).mean(0)
                    target = (1.0 - config.distill_weight) * target + config.distill_weight * said
                loss = weighted_mse(pred, target, config.pos_weight)
                if config.readout_weight:
                    loss = loss + config.readout_weight * readout_loss(pred, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if decay is not None:
                    decay.step()
                advance(1, f"{label}, epoch {epoch + 1}/{config.epochs}")


def masked(frames: np.ndarray, n_features: int, span: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of standardised `frames` (T, F) with `n_features` random columns and one random span of up to
    `span` frames set to 0 (the training mean); `frames` itself when there is nothing to mask."""
    if not n_features and not span:
        return frames
    out = frames.copy()
    out[:, rng.choice(frames.shape[1], min(n_features, frames.shape[1]), replace=False)] = 0.0
    if span and len(out) > 1:
        width = int(rng.integers(0, min(span, len(out) - 1) + 1))
        start = int(rng.integers(0, len(out) - width + 1))
        out[start : start + width] = 0.0
    return out


def lower_outputs(model: EmotionGRU, margin: float) -> None:
    """Every output lowered by `margin` (the cue margin): the head is linear, so its bias carries it."""
    if margin:
        with torch.no_grad():
            model.head.bias -= margin


def _finetuned(
    model,
    init: Checkpoint,
    clips: ClipSet,
    config: FinetuneConfig,
    stage: str,
    renditions: Sequence[ClipSet] = (),
) -> Checkpoint:
    lower_outputs(model, config.cue_margin)
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
        adaptation=config.speaker_adaptation,
    )


def finetune_to_file(
    data: TrainingData,
    config: FinetuneConfig,
    out: Path,
    init: Path | None = None,
    feature_set: str | None = None,
    full: bool = False,
    budget: int | None = None,
    hidden: int = 256,
    layers: int = 2,
    train_gains: str | None = None,
    hop_ms: int | None = None,
    teachers: Sequence[Path] = (),
) -> str:
    """`edge-emo finetune`: `train` from the pretrained checkpoint `init` (its features), or the baseline on
    `feature_set` (default: the corpora's) at `hop_ms`, and write the checkpoint `out`. Returns what was
    trained, in words."""
    from edge_emo.data.sources import training_spec
    from edge_emo.train.checkpoint import load_checkpoint, save_checkpoint

    pre = load_checkpoint(init) if init else None
    spec = training_spec(pre.spec if pre else None, feature_set, data.labeled, data.mosei is not None, hop_ms)
    taught = [load_checkpoint(t) for t in teachers]
    ckpt, learned = train(data, spec, config, pre, full, budget, hidden, layers, taught)
    if train_gains:
        ckpt.provenance["finetune"]["train_gains"] = train_gains
    save_checkpoint(ckpt, out)
    kind = "whole pretrained network" if full else "head on the frozen pretrained backbone" if pre else None
    kind = kind or "baseline from scratch"
    return f"trained the {kind} on {learned}; wrote {out}"

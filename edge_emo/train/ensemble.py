"""Several trained models of one recipe as one network whose outputs are the mean of theirs.

K GRUs of hidden size H side by side are one GRU of hidden size K*H in which every weight that would connect
model i to model j is zero: the first layer's input weights are stacked (every model reads the same frames),
every other weight matrix is block-diagonal. PyTorch keeps a GRU layer's gates as row blocks [r; z; n] of H
rows each, so each gate's block of the merged layer is assembled from the K models' blocks of that gate.
Nothing crosses between the blocks, so hidden block i evolves exactly as model i's hidden state; the head is
the K heads side by side, each divided by K, so it outputs the mean of the K models' outputs; the utterance
embedding is the K embeddings side by side. Export, runtime and personalization need nothing new. Measured
on the shipped recipe (docs/QUALITY.md, session 8): two seeds averaged gain 0.026 RAVDESS macro-F1 over a
single model and cue on fewer neutral clips; the model step is that of a dense 2 x 256 GRU (27 us per frame
here against the 2 x 128's 9, docs/QUALITY.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.train.checkpoint import Checkpoint, CheckpointError, applied_cue_margin, provenance


def _check_members(members: Sequence[Checkpoint]) -> None:
    if len(members) < 2:
        raise CheckpointError("an ensemble needs at least two checkpoints")
    first = members[0]
    for i, other in enumerate(members[1:], 2):
        same = (
            other.model.config.n_features == first.model.config.n_features
            and other.model.config.layers == first.model.config.layers
            and other.model.config.hidden == first.model.config.hidden
            and other.spec == first.spec
            and other.emotions == first.emotions
            and other.adaptation == first.adaptation
            and np.array_equal(other.norm.mean, first.norm.mean)
            and np.array_equal(other.norm.std, first.norm.std)
        )
        if not same:
            raise CheckpointError(
                f"checkpoint {i} is not of the first one's recipe (feature set, normalisation, emotions, "
                "speaker adaptation and network size must be the same)"
            )


def average_models(members: Sequence[Checkpoint]) -> Checkpoint:
    """One checkpoint whose outputs are the mean of `members`' outputs (see the module docstring)."""
    _check_members(members)
    k, config = len(members), members[0].model.config
    h, layers = config.hidden, config.layers
    merged = EmotionGRU(ModelConfig(config.n_features, k * h, layers, config.n_emotions))
    with torch.no_grad():
        for layer in range(layers):
            names = [f"weight_ih_l{layer}", f"weight_hh_l{layer}", f"bias_ih_l{layer}", f"bias_hh_l{layer}"]
            w_ih, w_hh, b_ih, b_hh = (getattr(merged.gru, n) for n in names)
            for param in (w_ih, w_hh, b_ih, b_hh):
                param.zero_()
            for i, member in enumerate(members):
                src_ih, src_hh, src_bih, src_bhh = (getattr(member.model.gru, n) for n in names)
                own = slice(i * h, (i + 1) * h)  # model i's block of the merged hidden state
                for gate in range(3):
                    rows, src = (
                        slice(gate * k * h + i * h, gate * k * h + (i + 1) * h),
                        slice(gate * h, (gate + 1) * h),
                    )
                    if layer == 0:
                        w_ih[rows] = src_ih[src]
                    else:
                        w_ih[rows, own] = src_ih[src]
                    w_hh[rows, own] = src_hh[src]
                    b_ih[rows], b_hh[rows] = src_bih[src], src_bhh[src]
        merged.head.weight.copy_(torch.cat([m.model.head.weight for m in members], 1) / k)
        merged.head.bias.copy_(torch.stack([m.model.head.bias for m in members]).mean(0))
        merged.recon.weight.copy_(torch.cat([m.model.recon.weight for m in members], 1) / k)
        merged.recon.bias.copy_(torch.stack([m.model.recon.bias for m in members]).mean(0))
    speakers = sorted(
        {s for m in members for s in (m.provenance.get("finetune") or {}).get("speakers") or []}
    )
    first = members[0].provenance
    facts = provenance(
        stage="ensemble",
        data=first.get("data"),
        # What a reader (export, evaluate, the benchmarks) looks up in a trained checkpoint: the mean of the
        # members' cue margins (the head is their mean), every speaker any member was trained on.
        finetune={
            "cue_margin": float(np.mean([applied_cue_margin(m.provenance) for m in members])),
            "speakers": speakers,
            "labeled_clips": (first.get("finetune") or {}).get("labeled_clips"),
            "seed": [(m.provenance.get("finetune") or {}).get("seed") for m in members],
        },
        members=[m.provenance for m in members],
    )
    first_member = members[0]
    return Checkpoint(
        merged, first_member.spec, first_member.norm, first_member.emotions, facts, first_member.adaptation
    )

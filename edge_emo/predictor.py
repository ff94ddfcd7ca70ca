"""Any model edge-emo can score, loaded the same way: a training checkpoint (.safetensors, needs the `train`
extra) or an exported bundle folder ('shipped': the bundled one). Used by `edge-emo evaluate` and the
benchmarks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from edge_emo.features import FeatureSpec
from edge_emo.runtime.shipped import model_bundle


class Predictor(NamedTuple):
    spec: FeatureSpec
    emotions: tuple[str, ...]
    predict: Callable[[list[np.ndarray]], np.ndarray]  # raw feature arrays -> (N, emotions) intensities
    provenance: dict[str, Any]  # how the model was made
    adapts_to_speakers: bool  # standardises each speaker's frames by an estimate of that speaker's statistics


def load_predictor(path: Path) -> Predictor:
    """The checkpoint or bundle at `path`, ready to predict; a clear ValueError when it is neither."""
    if str(path) == "shipped" or path.is_dir():
        bundle = model_bundle(path)
        adapts = bundle.adaptation is not None
        return Predictor(
            bundle.spec, bundle.emotions, bundle.predict_utterances, bundle.provenance or {}, adapts
        )
    if not path.is_file():
        raise ValueError(f"{path} does not exist: no such checkpoint (.safetensors) or bundle folder")
    try:
        from edge_emo.train.checkpoint import load_checkpoint
        from edge_emo.train.finetune import predict
    except ImportError as e:  # a device install: bundles only
        raise ValueError(
            f"{path} is not a bundle folder, and reading a checkpoint needs the training extra "
            f"(pip install 'edge-emo[train]'; {e})"
        ) from None
    ckpt = load_checkpoint(path)
    adapts = ckpt.adaptation is not None
    return Predictor(ckpt.spec, ckpt.emotions, functools.partial(predict, ckpt), ckpt.provenance, adapts)

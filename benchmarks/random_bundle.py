"""A bundle of another model size with random weights, for speed and memory only (`edge-emo bench --model`):
the time of a step does not depend on the weights' values. Needs the `train` extra (torch).

    PYTHONPATH=. python benchmarks/random_bundle.py --hidden 128 --out build/2x128-random.bundle
    PYTHONPATH=. python -m edge_emo bench --model build/2x128-random.bundle --out 2x128.json
    PYTHONPATH=. python benchmarks/random_bundle.py --hidden 128 --feature-set egemaps-lite --out build/lite.bundle
    PYTHONPATH=. python benchmarks/random_bundle.py --hidden 128 --hop-ms 20 --out build/h20.bundle

The feature spec, normalisation and emotions are the shipped model's (or, with --feature-set or --hop-ms,
another front end's spec), so the runtime treats it like the real thing; the export is the one export path (edge_emo/export/bundle_export.py), int8 by default.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge_emo.export import export_bundle
from edge_emo.features import NormStats, extractable_sets, spec_for
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.runtime.bundle import Bundle, load_bundle
from edge_emo.train.checkpoint import Checkpoint, provenance, save_checkpoint

SHIPPED = Path(__file__).resolve().parent.parent / "edge_emo" / "models" / "default.bundle"


def random_bundle(
    out: str | Path,
    hidden: int,
    layers: int = 2,
    precision: str = "int8",
    seed: int = 0,
    feature_set: str | None = None,
    hop_ms: int | None = None,
) -> Bundle:
    shipped = load_bundle(SHIPPED)
    spec, norm = shipped.spec, shipped.norm
    if hop_ms is not None:  # the same columns a frame every hop_ms: the same statistics serve
        spec = spec_for(spec.name, hop_ms / 1000)
    if feature_set is not None and feature_set != spec.name:
        # another front end: the shipped statistics of the columns it shares with the shipped set, 0 and 1
        # for the others (random weights: the values only need to be in a sane range)
        spec = spec_for(feature_set, spec.hop_s)
        shared = {c: i for i, c in enumerate(shipped.spec.columns)}
        mean = [shipped.norm.mean[shared[c]] if c in shared else 0.0 for c in spec.columns]
        std = [shipped.norm.std[shared[c]] if c in shared else 1.0 for c in spec.columns]
        norm = NormStats(np.asarray(mean, np.float32), np.asarray(std, np.float32))
    torch.manual_seed(seed)
    model = EmotionGRU(ModelConfig(spec.dim, hidden=hidden, layers=layers, n_emotions=len(shipped.emotions)))
    prov = provenance(
        stage=f"random-{layers}x{hidden}", data=["none: random weights, for speed and memory only"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "random.safetensors"
        save_checkpoint(Checkpoint(model, spec, norm, shipped.emotions, prov), checkpoint)
        return export_bundle(checkpoint, out, precision=precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument(
        "--feature-set",
        choices=[f.value for f in extractable_sets()],
        help="front end (default: the shipped one)",
    )
    parser.add_argument(
        "--hop-ms", type=int, help="milliseconds between frames (default: the shipped model's)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bundle = random_bundle(
        args.out, args.hidden, args.layers, args.precision, feature_set=args.feature_set, hop_ms=args.hop_ms
    )
    print(f"{bundle.path}: {bundle.version}")


if __name__ == "__main__":
    main()

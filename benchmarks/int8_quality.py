"""What int8 costs in accuracy: a checkpoint in torch, its fp32 bundle and its int8 bundle on the same clips.

Usage (needs the `train` extra):
    python -m benchmarks.int8_quality CHECKPOINT DATA_DIR [--split val] [--out int8_quality.json]
Prints a Markdown table (MAE, macro-F1, 4-class accuracy per model) and the int8 - fp32 differences.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from edge_emo.data.corpus import load_corpus
from edge_emo.export import export_bundle
from edge_emo.metrics import report
from edge_emo.train.checkpoint import load_checkpoint
from edge_emo.train.finetune import predict


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    ckpt = load_checkpoint(args.checkpoint)
    clips = load_corpus(args.data_dir, ckpt.spec, args.split)
    preds = {"torch": predict(ckpt, clips.features)}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "int8"):
            bundle = export_bundle(args.checkpoint, Path(tmp) / f"{precision}.bundle", precision)
            preds[precision] = bundle.predict_utterances(clips.features)
    scores = {name: report(clips.labels, p, clips.emotions)["model"] for name, p in preds.items()}
    result = {
        "checkpoint": str(args.checkpoint),
        "clips": len(clips),
        "split": args.split,
        **{name: {k: s[k] for k in ("mae", "macro_f1", "acc4")} for name, s in scores.items()},
        "fp32_vs_torch_max_abs": float(np.abs(preds["fp32"] - preds["torch"]).max()),
        "int8_vs_fp32_mean_abs": float(np.abs(preds["int8"] - preds["fp32"]).mean()),
        "int8_vs_fp32_max_abs": float(np.abs(preds["int8"] - preds["fp32"]).max()),
    }
    print(f"{len(clips)} clips ({args.split} split of {args.data_dir})\n")
    print("| model | MAE | macro-F1 | 4-class accuracy |\n|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s['mae']:.4f} | {s['macro_f1']:.4f} | {s['acc4']:.4f} |")
    print(
        f"\nint8 - fp32: MAE {scores['int8']['mae'] - scores['fp32']['mae']:+.4f}, macro-F1 "
        f"{scores['int8']['macro_f1'] - scores['fp32']['macro_f1']:+.4f}; per-clip outputs differ by "
        f"{result['int8_vs_fp32_mean_abs']:.4f} on average, {result['int8_vs_fp32_max_abs']:.4f} at most; "
        f"fp32 bundle vs torch: max {result['fp32_vs_torch_max_abs']:.1e}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Choose the cue margin from a cross-validation run's held-out outputs, without training again.

The margin is subtracted from the head's bias once training is done (`FinetuneConfig.cue_margin`), so a
model with margin m' predicts exactly what the trained one predicts plus (m - m'). `benchmarks.quality_cv`
keeps every fold's unclipped held-out outputs (fold*-predictions.npz); this scores them at each margin:
RAVDESS-style macro-F1, categorical UAR and false cues on neutral clips per labeled corpus, and false cues on
ordinary speech, mean over folds. A margin chosen here is chosen on the folds it is scored on (say so).

`--apply M --to DIR` writes the run as if trained with margin M: DIR/fold*.json, summary.json and
summary.md in quality_cv's format (and the same for RUN/cold when the run has it).

Usage:
    python -m benchmarks.cue_margin RUN [--margins 0,0.1,0.2,0.3,0.4] [--out table.md] [--apply M --to DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_emo.emotions import EMOTIONS
from edge_emo.metrics import cue_rates, scores


def sweep(run: Path, margins: list[float]) -> list[dict]:
    """Per margin: corpus -> mean over folds of each headline number."""
    trained = float(json.loads((run / "args.json").read_text()).get("cue_margin", 0.0))
    folds = [dict(np.load(p)) for p in sorted(run.glob("fold*-predictions.npz"))]
    if not folds:
        raise SystemExit(f"{run}: no fold*-predictions.npz (made by benchmarks.quality_cv)")
    rows = []
    for margin in margins:
        row: dict = {"margin": margin}
        for key in sorted(k for k in folds[0] if k.endswith("/pred")):
            name = key[: -len("/pred")]
            per_fold = []
            for f in folds:
                pred = f[key] + (trained - margin)
                if f"{name}/labels" in f and f[f"{name}/labels"].any():
                    s = scores(f[f"{name}/labels"], pred, EMOTIONS)
                    per_fold.append((s["macro_f1"], s["uar"], s["false_cue_neutral"]))
                else:
                    per_fold.append((None, None, cue_rates(pred, EMOTIONS)["any"]["rate"]))
            row[name] = [_mean(v) for v in zip(*per_fold)]
        rows.append(row)
    return rows


def apply(run: Path, margin: float, to: Path) -> None:
    """RUN's folds rescored as if trained with `margin`, written to `to` in quality_cv's format."""
    from benchmarks.quality_cv import markdown as summary_markdown
    from benchmarks.quality_cv import summarize

    args = json.loads((run / "args.json").read_text())
    shift = float(args.get("cue_margin", 0.0)) - margin
    to.mkdir(parents=True, exist_ok=True)
    (to / "args.json").write_text(json.dumps({**args, "cue_margin": str(margin)}, indent=1))
    results = []
    for path in sorted(run.glob("fold*-predictions.npz")):
        outputs = dict(np.load(path))
        result = json.loads((run / path.name.replace("-predictions.npz", ".json")).read_text())
        for name in result["corpora"]:
            labels, pred = outputs[f"{name}/labels"], outputs[f"{name}/pred"] + shift
            result["corpora"][name]["model"] = scores(labels, pred, EMOTIONS)
        for name, entry in result["ordinary"].items():  # its rates anew; its held-out speakers kept
            result["ordinary"][name] = {**entry, **cue_rates(outputs[f"{name}/pred"] + shift, EMOTIONS)}
        result["cue_margin"] = margin
        (to / path.name.replace("-predictions.npz", ".json")).write_text(json.dumps(result, indent=1))
        results.append(result)
    summary = summarize(results)
    (to / "summary.json").write_text(json.dumps(summary, indent=1))
    (to / "summary.md").write_text(summary_markdown(summary))
    if (run / "cold").is_dir():
        apply(run / "cold", margin, to / "cold")


def _mean(values: tuple) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def markdown(rows: list[dict]) -> str:
    names = [k for k in rows[0] if k != "margin"]
    head = "| margin | " + " | ".join(
        f"{n} macro-F1 | {n} UAR | {n} false cues" if rows[0][n][0] is not None else f"{n} false cues"
        for n in names
    )
    lines = [head + " |", "|" + "---|" * (1 + sum(3 if rows[0][n][0] is not None else 1 for n in names))]
    for r in rows:
        cells = []
        for n in names:
            f1, uar, cues = r[n]
            cells += ([] if f1 is None else [f"{f1:.3f}", f"{uar:.3f}"]) + [f"{cues:.3f}"]
        lines.append(f"| {r['margin']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--margins", default="0,0.1,0.2,0.3,0.4")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--apply", type=float, help="rescore the run at this margin ...")
    ap.add_argument("--to", type=Path, help="... into this folder")
    args = ap.parse_args()
    if (args.apply is None) != (args.to is None):
        ap.error("--apply and --to go together")
    table = markdown(sweep(args.run, [float(m) for m in args.margins.split(",")]))
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.apply is not None:
        apply(args.run, args.apply, args.to)
        print(f"wrote the run at margin {args.apply:g} to {args.to}")


if __name__ == "__main__":
    main()

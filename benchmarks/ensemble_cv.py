"""The ensemble of several cross-validation runs of one recipe (other seeds), scored without training again.

An ensemble's outputs are the mean of its members' (edge_emo/train/ensemble.py merges them into one network
that computes exactly that), so each fold's held-out outputs are the mean of the runs' held-out outputs for
that fold: averaged, rescored and written in `benchmarks.quality_cv`'s format (and its `cold/` part), with
each fold's kept models (`--keep-models`) merged into the fold's ensemble model. `benchmarks.cue_margin` and
`benchmarks.heldout` then run on the result as on any run.

Usage:
    python -m benchmarks.ensemble_cv RUN_A RUN_B [RUN_C ...] --out RUN
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# What may differ between the runs of one recipe: the draw, where it was written and what else it kept.
PER_RUN = {"seed", "out", "only", "keep_models", "extract_only"}


# An option added to quality_cv after a run was made is missing from its args.json: that run had it unset.
UNSET = {None, "None", "False", "0", "0.0"}


def _same(a: dict, b: dict, key: str) -> bool:
    if key in a and key in b:
        return a[key] == b[key]
    return a.get(key, b.get(key)) in UNSET


def ensemble_runs(runs: list[Path], out: Path) -> list[int]:
    """Write the ensemble of `runs` to `out`; returns the folds it covers (those every run has)."""
    from benchmarks.cue_margin import apply

    args = [json.loads((run / "args.json").read_text()) for run in runs]
    differ = sorted({k for a in args[1:] for k in a.keys() | args[0].keys() if not _same(a, args[0], k)})
    if set(differ) - PER_RUN:
        raise SystemExit(f"the runs are not of one recipe: they differ in {', '.join(set(differ) - PER_RUN)}")
    names = [{p.name for p in run.glob("fold*-predictions.npz")} for run in runs]
    shared = sorted(set.intersection(*names))
    if not shared:
        raise SystemExit("the runs share no finished fold (fold*-predictions.npz)")
    parts = [""] + (["cold"] if all((run / "cold").is_dir() for run in runs) else [])
    for part in parts:
        (out / part).mkdir(parents=True, exist_ok=True)
        for name in shared:
            outputs = [dict(np.load(run / part / name)) for run in runs]
            for key in outputs[0]:
                if key.endswith("/labels") and any(
                    not np.array_equal(o[key], outputs[0][key]) for o in outputs
                ):
                    raise SystemExit(f"{name}: the runs held out different clips ({key})")
            mean = {
                k: np.mean([o[k] for o in outputs], 0) if k.endswith("/pred") else v
                for k, v in outputs[0].items()
            }
            np.savez_compressed(out / part / name, **mean)
            fold = json.loads((runs[0] / part / name.replace("-predictions.npz", ".json")).read_text())
            fold["members"] = [str(run) for run in runs]
            (out / part / name.replace("-predictions.npz", ".json")).write_text(json.dumps(fold, indent=1))
    seeds = ",".join(str(a.get("seed", 0)) for a in args)
    (out / "args.json").write_text(json.dumps({**args[0], "seed": seeds, "out": str(out)}, indent=1))
    if "cold" in parts:
        (out / "cold" / "args.json").write_text((out / "args.json").read_text())
    margin = float(args[0].get("cue_margin", 0.0))
    apply(out, margin, out)  # every fold rescored from the averaged outputs, and the summaries
    folds = [int(name[len("fold") : -len("-predictions.npz")]) for name in shared]
    _merge_kept_models(runs, out, folds)
    return folds


def _merge_kept_models(runs: list[Path], out: Path, folds: list[int]) -> None:
    """Each fold's ensemble model, where every run kept its model of that fold."""
    from edge_emo.train.checkpoint import load_checkpoint, save_checkpoint
    from edge_emo.train.ensemble import average_models

    for k in folds:
        paths = [run / f"fold{k}.safetensors" for run in runs]
        if all(p.is_file() for p in paths):
            save_checkpoint(average_models([load_checkpoint(p) for p in paths]), out / f"fold{k}.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="quality_cv runs of one recipe (other seeds)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if len(args.runs) < 2:
        ap.error("an ensemble needs at least two runs")
    for run in args.runs:
        if not (run / "args.json").is_file():
            ap.error(f"{run}: not a benchmarks.quality_cv run (no args.json)")
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty: --out must be a new folder (nothing of yours is overwritten)")
    folds = ensemble_runs(args.runs, args.out)
    print((args.out / "summary.md").read_text() if (args.out / "summary.md").exists() else "")
    print(f"wrote the ensemble of {len(args.runs)} runs over folds {folds} to {args.out}")


if __name__ == "__main__":
    main()

"""The checks that need a model, run on each cross-validation fold's model and only its held-out speakers:
microphone gain (voice detector included) and live false cues. The shipped model cannot answer these
honestly: it was trained on every speaker we have.

Input: a `benchmarks.quality_cv` run made with `--keep-models MARGIN` (foldK.safetensors beside foldK.json,
which names each corpus's held-out speakers) and the corpus folders it was run on (matched by folder name).
- **Gain** (`benchmarks.gain_robustness` on each fold's held-out clips of every labeled corpus, `--cut
  speech`, with the speaker's estimate and as a stranger's first words): macro-F1 at -20 dB, +12 dB, a
  random gain and in a noisy room minus macro-F1 at 0 dB, mean and t interval over folds.
- **Live cues** (`benchmarks.live_cues` on each fold's model exported as an int8 bundle, every held-out
  neutral/calm clip and ordinary utterance, shown after `--cue-after` seconds): utterances whose final
  result names an emotion and those in which any update does, pooled over folds (each utterance is held out
  once) with 95% Wilson intervals.

Usage:
    python -m benchmarks.heldout RUN DATA_DIR... [--cue-after 1.5] [--skip-gain] [--skip-live] --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import gain_robustness, live_cues
from edge_emo.experiment.stats import describe_folds
from edge_emo.files import sha256_hex
from edge_emo.metrics import proportion

GAINS = [-20.0, 0.0, 12.0]


def fold_models(run: Path) -> list[tuple[int, Path, dict]]:
    """(fold, model file, fold result) for every fold of RUN that kept its model."""
    out = []
    for model in sorted(run.glob("fold*.safetensors")):
        k = int(model.stem[len("fold") :])
        out.append((k, model, json.loads((run / f"fold{k}.json").read_text())))
    if not out:
        raise SystemExit(f"{run}: no fold models (run benchmarks.quality_cv with --keep-models MARGIN)")
    return out


def gain_changes(folds: list[tuple[int, Path, dict]], dirs: dict[str, Path]) -> dict:
    """corpus -> 'estimate' / 'first_words' -> gain -> per-fold macro-F1 change vs 0 dB, and its summary."""
    out: dict = {}
    for name in folds[0][2]["corpora"]:
        out[name] = {}
        for who, cold in (("estimate", False), ("first_words", True)):
            per_gain: dict[str, list[float]] = {}
            for _, model, result in folds:
                speakers = set(result["corpora"][name]["speakers"])
                r = gain_robustness.measure(model, dirs[name], GAINS, speakers, "speech", cold)
                f1 = {g: e["metrics"]["model"]["macro_f1"] for g, e in r["gains"].items()}
                for g, value in f1.items():
                    if g != "gain+0dB":
                        per_gain.setdefault(g, []).append(value - f1["gain+0dB"])
            out[name][who] = {g: {"per_fold": v, **describe_folds(v)} for g, v in per_gain.items()}
    return out


def live_rates(folds: list[tuple[int, Path, dict]], dirs: dict[str, Path], cue_after: float) -> dict:
    """corpus -> pooled final / any-update false-cue rates of the held-out neutral speech."""
    from edge_emo.export import export_bundle
    from edge_emo.runtime.bundle import load_bundle

    counts: dict[str, dict[str, list[int]]] = {}
    for _, model, result in folds:
        path = model.with_suffix(".bundle")
        bundle = load_bundle(path) if path.is_dir() else None
        if bundle is None or bundle.provenance.get("export", {}).get("checkpoint_sha256") != sha256_hex(
            model.read_bytes()
        ):  # none yet, or exported from an earlier run's model of this fold
            bundle = export_bundle(model, path, precision="int8")
        held = {**result["corpora"], **result["ordinary"]}
        for name, entry in held.items():
            files = live_cues.neutral_files(dirs[name], None, set(entry["speakers"]))
            if not files:
                continue
            row = live_cues.measure(bundle, files, [cue_after])[0]
            c = counts.setdefault(name, {"final": [0, 0], "any_update": [0, 0]})
            for key in ("final", "any_update"):
                c[key][0] += row[key]["k"]
                c[key][1] += row[key]["n"]
    return {name: {key: proportion(*kn) for key, kn in c.items()} for name, c in counts.items()}


def markdown(report: dict) -> str:
    lines = [
        f"Fold models of {report['run']} ({report['folds']} folds), each on its held-out speakers only.",
        "",
    ]
    if "gain" in report:
        lines += [
            "Macro-F1 change against 0 dB, voice detector included (mean [95% t interval] over folds):",
            "",
            "| corpus | gain | with the speaker's estimate | a stranger's first words |",
            "|---|---|---|---|",
        ]
        for name, by_who in report["gain"].items():
            for g in by_who["estimate"]:
                cells = []
                for who in ("estimate", "first_words"):
                    d = by_who[who][g]
                    cells.append(f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
                lines.append(f"| {name} | {g} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if "live" in report:
        lines += [
            f"Live false cues on held-out neutral and calm clips and ordinary utterances, estimate shown after "
            f"{report['cue_after_s']:g} s of speech (pooled over folds, 95% Wilson interval):",
            "",
            "| corpus | utterances | final result names an emotion | some update names one |",
            "|---|---|---|---|",
        ]
        for name, r in report["live"].items():
            cells = [
                f"{100 * p['rate']:.1f}% [{100 * p['ci95'][0]:.1f}%, {100 * p['ci95'][1]:.1f}%] ({p['k']})"
                for p in (r["final"], r["any_update"])
            ]
            lines.append(f"| {name} | {r['final']['n']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("data", type=Path, nargs="+", help="the corpus folders the run was made on")
    ap.add_argument("--cue-after", type=float, default=1.5)
    ap.add_argument("--skip-gain", action="store_true")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    folds = fold_models(args.run)
    dirs = {d.name: d for d in args.data}
    needed = set(folds[0][2]["corpora"]) | set(folds[0][2]["ordinary"])
    if needed - set(dirs):
        raise SystemExit(
            f"the run was made on {sorted(needed)}: give their folders ({sorted(needed - set(dirs))})"
        )
    report: dict = {"run": str(args.run), "folds": len(folds)}
    if not args.skip_gain:
        report["gain"] = gain_changes(folds, dirs)
    if not args.skip_live:
        report["cue_after_s"] = args.cue_after
        report["live"] = live_rates(folds, dirs, args.cue_after)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heldout.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "heldout.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

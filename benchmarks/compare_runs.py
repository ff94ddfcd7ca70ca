"""Two recipes on the same folds: the paired change per fold of every headline number, with its 95% interval.

Both runs are quality_cv folders (fold*.json; `benchmarks.cue_margin --apply M --to DIR` writes one at any
cue margin), of the same folds. A fold's difference is taken within the fold (same held-out speakers,
places and readers), so the spread between folds, larger than most changes, cancels.

    python -m benchmarks.compare_runs NEW_RUN OLD_RUN [--out table.md]

Rows: per labeled corpus macro-F1, categorical UAR and false cues on its neutral (and calm) clips, per
ordinary corpus its false cues; and the same for RUN/cold (a stranger's first words) when both runs have it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_emo.experiment.stats import t_interval

LABELED = (("macro_f1", "macro-F1"), ("uar", "UAR"), ("false_cue_neutral", "neutral+calm false cues"))


def fold_numbers(run: Path) -> dict[int, dict[str, float]]:
    """fold -> 'corpus metric' -> value, from RUN/fold*.json."""
    out: dict[int, dict[str, float]] = {}
    for path in sorted(run.glob("fold*.json")):
        result = json.loads(path.read_text())
        row = {}
        for corpus, c in result["corpora"].items():
            for key, label in LABELED:
                row[f"{corpus} {label}"] = float(c["model"][key])
        for corpus, o in result.get("ordinary", {}).items():
            row[f"{corpus} false cues"] = float(o["any"]["rate"])
        out[int(result["fold"])] = row
    if not out:
        raise SystemExit(f"{run}: no fold*.json (made by benchmarks.quality_cv or cue_margin --apply)")
    return out


def compare(new: Path, old: Path) -> list[dict]:
    """One row per number both runs have: the means over their common folds and the paired change."""
    a, b = fold_numbers(new), fold_numbers(old)
    folds = sorted(set(a) & set(b))
    if not folds:
        raise SystemExit(f"{new} and {old} share no fold")
    rows = []
    for name in (n for n in a[folds[0]] if n in b[folds[0]]):
        delta = [a[k][name] - b[k][name] for k in folds]
        rows.append(
            {
                "number": name,
                "new": float(np.mean([a[k][name] for k in folds])),
                "old": float(np.mean([b[k][name] for k in folds])),
                "change": float(np.mean(delta)),
                "ci95": list(t_interval(delta)) if len(delta) > 1 else None,
                "per_fold": {str(k): round(d, 4) for k, d in zip(folds, delta)},
            }
        )
    return rows


def markdown(rows: list[dict], folds: list[str]) -> str:
    lines = [
        f"| number | new | old | change [95% t interval over folds {', '.join(folds)}] | per fold |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "" if r["ci95"] is None else f" [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
        per = ", ".join(f"{d:+.3f}" for d in r["per_fold"].values())
        lines.append(f"| {r['number']} | {r['new']:.3f} | {r['old']:.3f} | {r['change']:+.3f}{ci} | {per} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("new", type=Path)
    ap.add_argument("old", type=Path)
    ap.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = ap.parse_args()
    parts = []
    for sub, title in (("", "With the speaker's estimate"), ("cold", "A stranger's first words")):
        new, old = args.new / sub, args.old / sub
        if sub and not (new.is_dir() and old.is_dir()):
            continue
        rows = compare(new, old)
        folds = list(rows[0]["per_fold"]) if rows else []
        parts.append(f"## {title}: {args.new} minus {args.old}\n\n{markdown(rows, folds)}")
    text = "\n".join(parts)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

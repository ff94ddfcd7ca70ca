"""Does personalization help? For each held-out speaker: personalize the head on n of their clips, evaluate
on the rest of their clips, against the shipped head on the same clips.

    PYTHONPATH=. python benchmarks/personalize_demo.py build/default-model/split.bundle \
        /work/shared/data/emo_speech_dev --out benchmarks/personalize_demo.json

The bundle must not have seen the demo speakers: build/default-model/split.bundle is trained on the train
split (seed 0) and the demo uses the val split's speakers. The fit is the one `edge-emo personalize` runs
(edge_emo.personalize.ridge.fit_head on the bundle's utterance embeddings); the embeddings are computed once
per clip with the bundle's graph, and the head is linear, so head(embedding) is the bundle's prediction.

Reported per clip budget n: the mean change (personalized - shipped) of macro-F1 and MAE on the speaker's
remaining clips, with a 95% bootstrap interval resampling speakers and then draws (hierarchical: with a few
speakers, the interval is wide, as it should be), and per speaker with draws resampled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_emo.data.corpus import load_corpus
from edge_emo.metrics import scores
from edge_emo.personalize.ridge import fit_head, predict
from edge_emo.personalize.wearer import read_head
from edge_emo.runtime.bundle import load_bundle

BUDGETS = (5, 10, 20)
METRICS = ("macro_f1", "mae", "acc4")


def bootstrap(deltas: dict[str, np.ndarray], rng: np.random.Generator, n_boot: int = 2000) -> list[float]:
    """95% interval of the mean over speakers of each speaker's mean delta; speakers then draws resampled."""
    speakers = list(deltas)
    means = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.choice(len(speakers), len(speakers))
        means[b] = np.mean([rng.choice(deltas[speakers[s]], len(deltas[speakers[s]])).mean() for s in chosen])
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def draws_interval(deltas: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> list[float]:
    """95% interval of the mean of one speaker's deltas, draws resampled."""
    means = rng.choice(deltas, (n_boot, len(deltas))).mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="val", help="Speakers the bundle did not see (its split's val).")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=30, help="Random draws of n clips per speaker.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/personalize_demo.json"))
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    weight0, bias0 = read_head(bundle)
    clips = load_corpus(args.data, bundle.spec, args.split, args.split_seed)
    order = [clips.emotions.index(e) for e in bundle.emotions]
    y = clips.labels[:, order]
    x = bundle.embed_utterances(clips.features)
    speakers = sorted(set(clips.speakers))
    rng = np.random.default_rng(args.seed)
    results: dict = {
        "bundle": str(args.bundle),
        "bundle_version": bundle.version,
        "bundle_training_command": bundle.provenance.get("command"),
        "speakers": speakers,
        "split": {"split": args.split, "seed": args.split_seed},
        "draws": args.draws,
        "budgets": {},
    }
    for n in BUDGETS:
        deltas = {m: {} for m in METRICS}
        per_speaker = {}
        kept = 0
        for speaker in speakers:
            idx = np.flatnonzero(np.array(clips.speakers) == speaker)
            rows = {m: [] for m in METRICS}
            before_all, after_all = [], []
            for _ in range(args.draws):
                train = rng.choice(idx, n, replace=False)
                test = np.setdiff1d(idx, train)
                fit = fit_head(x[train], y[train], weight0, bias0)
                kept += fit.shipped
                before = scores(y[test], predict(x[test], weight0, bias0), bundle.emotions)
                after = scores(y[test], predict(x[test], fit.weight, fit.bias), bundle.emotions)
                before_all.append(before)
                after_all.append(after)
                for m in METRICS:
                    rows[m].append(after[m] - before[m])
            for m in METRICS:
                deltas[m][speaker] = np.array(rows[m])
            per_speaker[speaker] = {
                "clips": len(idx),
                **{
                    m: {
                        "shipped": float(np.mean([b[m] for b in before_all])),
                        "personalized": float(np.mean([a[m] for a in after_all])),
                        "delta": float(np.mean(rows[m])),
                        "delta_95": draws_interval(np.array(rows[m]), rng),
                    }
                    for m in METRICS
                },
            }
        results["budgets"][n] = {
            "shipped_head_kept": kept / (len(speakers) * args.draws),
            "per_speaker": per_speaker,
            **{
                m: {
                    "delta": float(np.mean([d.mean() for d in deltas[m].values()])),
                    "delta_95": bootstrap(deltas[m], rng),
                }
                for m in METRICS
            },
        }
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{args.bundle} ({bundle.version}); speakers {', '.join(speakers)}; {args.draws} draws each")
    print(
        "| clips | macro-F1 change [95% CI] | MAE change [95% CI] | 4-class acc change [95% CI] | shipped kept |"
    )
    print("|---|---|---|---|---|")
    for n, r in results["budgets"].items():
        cells = " | ".join(
            f"{r[m]['delta']:+.3f} [{r[m]['delta_95'][0]:+.3f}, {r[m]['delta_95'][1]:+.3f}]" for m in METRICS
        )
        print(f"| {n} | {cells} | {r['shipped_head_kept']:.0%} |")
    print()
    print(
        "| speaker | clips | macro-F1 shipped -> personalized (change [95% CI]) | MAE shipped -> personalized |"
    )
    print("|---|---|---|---|")
    for n, r in results["budgets"].items():
        for s, p in r["per_speaker"].items():
            f, e = p["macro_f1"], p["mae"]
            print(
                f"| {s} | {n} | {f['shipped']:.3f} -> {f['personalized']:.3f} ({f['delta']:+.3f} "
                f"[{f['delta_95'][0]:+.3f}, {f['delta_95'][1]:+.3f}]) | {e['shipped']:.3f} -> {e['personalized']:.3f} |"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

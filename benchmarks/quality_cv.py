"""The quality yardstick of docs/QUALITY.md: k-fold cross-validation of a training recipe over speakers of
every corpus at once, scored as the device shows it.

Folds (`--folds`, default 4), each held out once:
- every labeled corpus: its speakers dealt into folds (`speaker_folds`); a pseudo-speaker that pools many
  unknown people of one place (emo_speech_wild's `wild_unknown_<place>`) is held out whole, one place per
  fold, so the places are held out too;
- every `--neutral` corpus of ordinary speech: its speakers dealt into folds the same way; the training
  folds' utterances are learned as 'no emotion', the held-out fold's are the false-cue yardstick.

Each fold trains the recipe (`edge_emo.train.finetune.train` options: cut, crops, neutral speech, gains,
network size, optional pretrained init) on the other folds and scores the held-out fold with
`edge_emo.metrics.scores` per labeled corpus (macro-F1 over the emotions that corpus labels, categorical
UAR/WA with calm and neutral as neutral, false cues on its neutral clips; outputs clipped to 0..3) and the
false-cue rate on the held-out ordinary speech, per utterance as the voice detector cuts it. Then mean, std
and Student-t 95% interval over folds, beside the all-zeros reference. Results per fold are written as they
finish (rerun to resume).

With `--speaker-adaptation` the recipe trains on speaker-standardised frames; each held-out speaker is then
scored twice: standardised by the estimate from all of their clips (`summary.md`, the device after hearing
that much of them) and by the prior alone (`cold/summary.md`, a stranger's first words).

Usage:
    python -m benchmarks.quality_cv LABELED_DIR... --neutral DIR --out RUN [--feature-set compare]
        [--hidden 64] [--epochs 20] [--crop-s 2.5] [--cut speech] [--init PRE] [--train-gains=-20,12,random]
        [--speaker-adaptation [--cold-start 0.3]] [--folds 4] [--only 0,1] [--seed 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_emo.data.clips import ClipSet
from edge_emo.data.corpus import SpeechCut, load_corpus
from edge_emo.data.splits import speaker_folds
from edge_emo.experiment.stats import describe_folds
from edge_emo.metrics import cue_rates, scores
from edge_emo.train.finetune import FinetuneConfig, finetune_all, predict, train_baseline

POOLED = "_unknown_"  # a speaker label holding many unknown people of one place


def fold_of(speakers: list[str], k: int, seed: int = 0) -> dict[str, int]:
    """Speaker -> fold: real speakers dealt into k folds; pooled pseudo-speakers one place per fold."""
    real = sorted({s for s in speakers if POOLED not in s})
    out = (
        {s: f for f, group in enumerate(speaker_folds(real, k, seed)) for s in group}
        if len(real) >= k
        else {}
    )
    for i, s in enumerate(sorted({s for s in speakers if POOLED in s} | (set(real) - set(out)))):
        out[s] = i % k
    return out


def parts(clips: ClipSet, folds: dict[str, int], k: int) -> tuple[ClipSet, ClipSet]:
    held = [folds[s] == k for s in clips.speakers]
    return clips.subset([i for i, h in enumerate(held) if not h]), clips.subset(
        [i for i, h in enumerate(held) if h]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("labeled", type=Path, nargs="+")
    ap.add_argument("--neutral", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, help="the run folder (not needed with --extract-only)")
    ap.add_argument("--feature-set", default=None, help="openSMILE frame set (default egemaps)")
    ap.add_argument("--hop-ms", type=int, default=None, help="milliseconds between feature frames (10 or 20)")
    ap.add_argument("--hidden", type=int, default=None, help="GRU width (default 128)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pos-weight", type=float, default=1.0)
    ap.add_argument("--crop-s", type=float, default=None)
    ap.add_argument("--cue-margin", type=float, default=0.0)
    ap.add_argument(
        "--cut", choices=[c.value for c in SpeechCut if c is not SpeechCut.utterances], default="speech"
    )
    ap.add_argument("--init", type=Path, help="pretrained checkpoint: fine-tune every weight from it")
    ap.add_argument("--train-gains", default=None)
    ap.add_argument("--cut-at-gain", action="store_true", help="cut gained clips as heard at their gain")
    ap.add_argument("--speaker-adaptation", action="store_true")
    ap.add_argument("--cold-start", type=float, default=0.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--mask-features", type=int, default=0)
    ap.add_argument("--mask-span-s", type=float, default=0.0)
    ap.add_argument("--lr-decay", action="store_true")
    ap.add_argument("--readout-weight", type=float, default=0.0)
    ap.add_argument(
        "--distill-from",
        default=None,
        metavar="RUN[,RUN...]",
        help="runs of this recipe whose kept fold models (foldK.safetensors) teach fold K's network",
    )
    ap.add_argument("--distill-weight", type=float, default=0.0, help="the teachers' share of each target")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fold k trains with seed k + this (another draw of the same recipe)",
    )
    ap.add_argument("--only", default=None, help="run only these folds (comma-separated, 0-based)")
    ap.add_argument(
        "--keep-models",
        type=float,
        default=None,
        metavar="MARGIN",
        help="also write each fold's model (foldK.safetensors) with its outputs lowered to this cue margin",
    )
    ap.add_argument(
        "--extract-only",
        action="store_true",
        help="extract the features every fold needs into the cache and stop (before running folds in parallel)",
    )
    args = ap.parse_args()
    if args.cut_at_gain and not (args.train_gains and args.cut == "speech"):
        ap.error("--cut-at-gain needs --train-gains and --cut speech")
    if args.out is None and not args.extract_only:
        ap.error("--out is needed (the run folder)")
    given = [
        f"--{k.replace('_', '-')}"
        for k in ("feature_set", "hop_ms", "hidden")
        if getattr(args, k) is not None
    ]
    if args.init and given:
        ap.error(f"{', '.join(given)}: the pretrained checkpoint (--init) fixes its frames and its size")
    args.feature_set, args.hidden = args.feature_set or "egemaps", args.hidden or 128  # args.json as before

    from edge_emo.data.gain import parse_gains
    from edge_emo.data.sources import feature_spec
    from edge_emo.features.normalization import SpeakerAdaptation
    from edge_emo.train.checkpoint import load_checkpoint
    from edge_emo.train.distributed import one_thread_unless_told

    one_thread_unless_told()  # two math threads on a shared 2-core machine ran 10x slower

    init = load_checkpoint(args.init) if args.init else None
    spec = init.spec if init else feature_spec(args.feature_set, args.hop_ms)
    gains = parse_gains(args.train_gains)
    labeled = {
        d.name: [
            load_corpus(d, spec, cut=args.cut, gain=g, cut_at_gain=args.cut_at_gain and g is not None)
            for g in [None, *gains]
        ]
        for d in args.labeled
    }
    neutral = {
        d.name: [load_corpus(d, spec, cut=SpeechCut.utterances, gain=g).as_neutral() for g in [None, *gains]]
        for d in args.neutral
    }
    if args.extract_only:
        print(f"features of {len(labeled) + len(neutral)} corpora at {1 + len(gains)} gains are in the cache")
        return
    folds = {
        name: fold_of(versions[0].speakers, args.folds) for name, versions in {**labeled, **neutral}.items()
    }
    config = FinetuneConfig(
        epochs=args.epochs,
        lr=args.lr,
        pos_weight=args.pos_weight,
        crop_s=args.crop_s,
        cue_margin=args.cue_margin,
        speaker_adaptation=SpeakerAdaptation() if args.speaker_adaptation else None,
        cold_start=args.cold_start,
        dropout=args.dropout,
        mask_features=args.mask_features,
        mask_span_s=args.mask_span_s,
        lr_decay=args.lr_decay,
        readout_weight=args.readout_weight,
        distill_weight=args.distill_weight,
    )
    teacher_runs = [Path(r) for r in args.distill_from.split(",")] if args.distill_from else []
    if bool(teacher_runs) != bool(args.distill_weight) or (args.init is not None and teacher_runs):
        ap.error("--distill-from and --distill-weight go together, without --init")
    run = range(args.folds) if args.only is None else [int(k) for k in args.only.split(",")]
    missing = [
        str(r / f"fold{k}.safetensors")
        for r in teacher_runs
        for k in run
        if not (r / f"fold{k}.safetensors").is_file()
    ]
    if missing:
        ap.error(f"--distill-from: no kept fold model {missing[0]} (runs need --keep-models)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    outs = [args.out] + ([args.out / "cold"] if args.speaker_adaptation else [])
    for out in outs[1:]:
        out.mkdir(exist_ok=True)
        (out / "args.json").write_text((args.out / "args.json").read_text())
    for k in run:
        path = args.out / f"fold{k}.json"
        if path.exists():
            continue
        t0 = time.time()
        versions = [
            ClipSet.concat([parts(v[g], folds[name], k)[0] for name, v in {**labeled, **neutral}.items()])
            for g in range(1 + len(gains))
        ]
        cfg = FinetuneConfig(**{**vars(config), "seed": k + args.seed})
        if init is None:
            teachers = [load_checkpoint(r / f"fold{k}.safetensors") for r in teacher_runs]
            ckpt = train_baseline(versions[0], cfg, args.hidden, 2, versions[1:], teachers)
        else:
            ckpt = finetune_all(init, versions[0], cfg, versions[1:])
        if args.keep_models is not None:
            keep_model(ckpt, args.keep_models - args.cue_margin, args.out / f"fold{k}.safetensors")
        for out, per_speaker in zip(outs, (True, False)):
            result = {"fold": k, "train_clips": len(versions[0]), "corpora": {}, "ordinary": {}}
            outputs = {}  # unclipped, for choosing a cue margin afterwards (it only shifts the outputs)
            for name, v in labeled.items():
                held = parts(v[0], folds[name], k)[1]
                pred = predict(ckpt, held.features, held.speakers if per_speaker else None)
                outputs[f"{name}/pred"], outputs[f"{name}/labels"] = pred, held.labels
                result["corpora"][name] = {
                    "n": len(held),
                    "speakers": sorted(set(held.speakers)),
                    "model": scores(held.labels, pred, held.emotions),
                    "zeros": scores(held.labels, np.zeros_like(held.labels), held.emotions),
                }
            for name, v in neutral.items():
                held = parts(v[0], folds[name], k)[1]
                pred = predict(ckpt, held.features, held.speakers if per_speaker else None)
                outputs[f"{name}/pred"] = pred
                result["ordinary"][name] = {
                    **cue_rates(pred, held.emotions),
                    "speakers": sorted(set(held.speakers)),
                }
            result["seconds"] = round(time.time() - t0)
            (out / path.name).write_text(json.dumps(result, indent=1))
            np.savez_compressed(out / f"fold{k}-predictions.npz", **outputs)
            print(f"fold {k}{'' if out == args.out else ' (cold)'}: {summary_line(result)}", flush=True)
    for out in outs:
        done = sorted(out.glob("fold*.json"))
        if len(done) >= 2:
            summary = summarize([json.loads(p.read_text()) for p in done])
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
            (out / "summary.md").write_text(markdown(summary))
            print(markdown(summary))


def keep_model(ckpt, lower_by: float, path: Path) -> None:
    """Write a fold's model for the benchmarks that need one (gain, live cues on its held-out speakers), its
    outputs lowered by `lower_by` as `FinetuneConfig.cue_margin` lowers the shipped model's."""
    import copy

    from edge_emo.train.checkpoint import save_checkpoint
    from edge_emo.train.finetune import lower_outputs

    kept = copy.deepcopy(ckpt)
    lower_outputs(kept.model, lower_by)
    kept.provenance = {**kept.provenance, "cue_margin_applied": lower_by}
    save_checkpoint(kept, path)


def summary_line(result: dict) -> str:
    bits = [
        f"{name} macro-F1 {c['model']['macro_f1']:.3f} UAR {c['model']['uar']:.3f} "
        f"false cues on neutral {c['model']['false_cue_neutral'] or 0:.3f}"
        for name, c in result["corpora"].items()
    ]
    bits += [f"{name} false cues {o['any']['rate']:.3f}" for name, o in result["ordinary"].items()]
    return "; ".join(bits) + f" ({result['seconds']} s)"


def summarize(results: list[dict]) -> dict:
    """Mean, std and t interval over folds of every headline number."""
    out: dict = {"folds": len(results), "corpora": {}, "ordinary": {}}
    for name in results[0]["corpora"]:
        entry = {}
        for who in ("model", "zeros"):
            rows = [r["corpora"][name][who] for r in results]
            entry[who] = {
                m: describe_folds([row[m] for row in rows]) for m in ("macro_f1", "uar", "wa", "acc4", "mae")
            }
            neutral = [row["false_cue_neutral"] for row in rows if row["false_cue_neutral"] is not None]
            entry[who]["false_cue_neutral"] = describe_folds(neutral) if len(neutral) >= 2 else None
            entry[who]["f1"] = {
                e: describe_folds([row["per_emotion"][e]["f1"] for row in rows])
                for e in rows[0]["per_emotion"]
                if e not in rows[0]["left_out"]
            }
        entry["left_out"] = results[0]["corpora"][name]["model"]["left_out"]
        out["corpora"][name] = entry
    for name in results[0]["ordinary"]:
        rates = [r["ordinary"][name]["any"]["rate"] for r in results]
        k = sum(r["ordinary"][name]["any"]["k"] for r in results)
        n = sum(r["ordinary"][name]["any"]["n"] for r in results)
        out["ordinary"][name] = {"per_fold": describe_folds(rates), "pooled": {"k": k, "n": n, "rate": k / n}}
    return out


def markdown(summary: dict) -> str:
    def cell(d: dict | None) -> str:
        if d is None:
            return "n/a"
        ci = d.get("ci95")
        return f"{d['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = [f"{summary['folds']} folds; mean [95% t interval over folds]", ""]
    lines += ["| corpus | metric | model | all-zeros |", "|---|---|---|---|"]
    for name, c in summary["corpora"].items():
        for m, label in (
            ("macro_f1", "macro-F1" + (f" (without {', '.join(c['left_out'])})" if c["left_out"] else "")),
            ("uar", "categorical UAR"),
            ("wa", "categorical WA"),
            ("false_cue_neutral", "false cues on neutral clips"),
            ("acc4", "4-class accuracy"),
            ("mae", "MAE"),
        ):
            lines.append(f"| {name} | {label} | {cell(c['model'][m])} | {cell(c['zeros'][m])} |")
        for e, d in c["model"]["f1"].items():
            lines.append(f"| {name} | {e} F1 | {cell(d)} | 0.000 |")
    for name, o in summary["ordinary"].items():
        p = o["pooled"]
        lines.append(
            f"| {name} (held-out speakers) | false cues per utterance | {cell(o['per_fold'])}; pooled "
            f"{p['k']}/{p['n']} = {p['rate']:.3f} | 0.000 |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

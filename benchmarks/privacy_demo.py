"""Pretraining on feature logs instead of audio: is anything lost? (issue 12, docs/PRIVACY.md)

    PYTHONPATH=. python benchmarks/privacy_demo.py RUN_DIR \
        --unlabeled /work/shared/data/speech_unlabeled --dev /work/shared/data/emo_speech_dev

Steps (each skipped when its output exists, so a rerun resumes):

1. log: stream every file of the unlabeled corpus's manifest through `edge-emo listen --input ... --fast
   --json --log-features RUN_DIR/logs` (the shipped model; its detector picks the speech segments).
2. compare: the logged frames of every segment against the offline extractor's frames of the same file,
   rows [start_frame, start_frame + frames): max abs difference (expected: exactly 0).
3. pretrain: `edge-emo pretrain` (a) on RUN_DIR/logs + the dev corpus's training speakers, (b) on the
   unlabeled audio itself + the same dev clips; same settings and seed (and more seeds with --seeds).
4. recon: held-out masked-span reconstruction loss of each pretrained network on the dev corpus's validation
   speakers (never seen in pretraining): fixed masks, error in one common unit (frames standardised with
   the dev training speakers' statistics), so networks with different normalisation compare fairly.
5. fewshot: `edge-emo experiment DEV --init CKPT` (frozen backbone + head, --draws label draws per budget,
   no baseline, no ridge): macro-F1 on the validation speakers; paired differences (a) - (b) per draw.

Writes RUN_DIR/privacy_demo.json (and prints it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLIT_SEED = 0


def edge_emo(args: list[str], log: Path, stdout: Path | None = None) -> None:
    """Run `python -m edge_emo ARGS` (one math thread), stderr to `log`; raise if it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "a") as err, open(stdout or os.devnull, "w") as out:
        err.write(f"$ edge-emo {' '.join(args)}\n")
        err.flush()
        code = subprocess.run(
            [sys.executable, "-m", "edge_emo", *args], stdout=out, stderr=err, env=env
        ).returncode
    if code:
        raise SystemExit(f"edge-emo {args[0]} failed (exit {code}); see {log}")


def step_log(run: Path, unlabeled: Path) -> None:
    from edge_emo.data.labels import read_manifest

    if (run / "logs").is_dir():
        return
    files = [str(r.path) for r in read_manifest(unlabeled / "manifest.csv")]
    args = ["listen", *[a for f in files for a in ("--input", f)], "--fast", "--json"]
    tmp = run / "logs.partial"
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted earlier attempt: start the log afresh
    edge_emo(
        [*args, "--log-features", str(tmp), "--log-max-mb", "1000"], run / "listen.log", run / "listen.jsonl"
    )
    tmp.rename(run / "logs")


def step_compare(run: Path, unlabeled: Path) -> dict:
    from edge_emo.data.corpus import load_corpus
    from edge_emo.features.log_format import read_shard, shard_paths

    shards = [read_shard(p) for p in shard_paths(run / "logs")]
    spec = shards[0].spec
    clips = load_corpus(unlabeled, spec)  # the offline extractor (its feature cache)
    offline = {Path(name).name: frames for name, frames in zip(clips.names, clips.features)}
    worst, segments, frames, files = 0.0, 0, 0, set()
    for shard in shards:
        for seg, logged in zip(shard.header["segments"], shard.segments):
            source = shard.header["streams"][str(seg["stream"])]["source"].split(" (")[0]
            ref = offline[source][seg["start_frame"] : seg["start_frame"] + seg["frames"]]
            assert ref.shape == logged.shape, (source, seg)
            worst = max(worst, float(np.max(np.abs(ref.astype(np.float64) - logged))))
            segments, frames = segments + 1, frames + len(logged)
            files.add(source)
    finals = (run / "listen.jsonl").read_text().count('"final": true')
    return {
        "shards": len(shards),
        "shard_bytes": sum(p.stat().st_size for p in shard_paths(run / "logs")),
        "files_streamed": len(offline),
        "files_with_speech": len(files),
        "segments": segments,
        "utterances_reported_by_listen": finals,
        "logged_frames": frames,
        "offline_frames_of_all_audio": clips.n_frames,
        "max_abs_diff_logged_vs_offline": worst,
    }


def checkpoints(run: Path, seeds: list[int]) -> dict[str, Path]:
    return {
        f"{kind}_seed{s}": run / f"pre_{kind}_seed{s}.safetensors"
        for s in seeds
        for kind in ("logs", "audio")
    }


def step_pretrain(run: Path, unlabeled: Path, dev: Path, seeds: list[int], epochs: int) -> None:
    for name, out in checkpoints(run, seeds).items():
        if out.is_file():
            continue
        kind, seed = name.split("_seed")
        data = run / "logs" if kind == "logs" else unlabeled
        args = ["pretrain", str(data), str(dev), "--split", "train", "--split-seed", str(SPLIT_SEED)]
        edge_emo(
            [*args, "--epochs", str(epochs), "--seed", seed, "--out", str(out)], run / f"pretrain_{name}.log"
        )


def step_recon(run: Path, dev: Path, seeds: list[int]) -> dict:
    import torch

    from edge_emo.data.corpus import load_corpus
    from edge_emo.features import NormStats
    from edge_emo.train.checkpoint import load_checkpoint
    from edge_emo.train.pretrain import PretrainConfig, mask_span, windows

    torch.set_num_threads(1)
    config = PretrainConfig()
    out = {}
    for name, path in checkpoints(run, seeds).items():
        ckpt = load_checkpoint(path)
        train = load_corpus(dev, ckpt.spec, "train", SPLIT_SEED)
        held_out = load_corpus(dev, ckpt.spec, "val", SPLIT_SEED)
        common = NormStats.fit(train.features)
        spans = windows([len(f) for f in held_out.features], config.window, config.min_frames)
        rng = np.random.default_rng(1234)  # the same masks for every network
        errors, own = [], []
        model = ckpt.model.eval()
        with torch.no_grad():
            for c, a, b in spans:
                raw = held_out.features[c][a:b]
                mask = mask_span(len(raw), config.span, rng)
                x = ckpt.norm.apply(raw)
                x[mask] = config.mask_value
                pred = model.reconstruct(torch.from_numpy(x)[None])[0].numpy()
                own.append(float(np.mean((pred[mask] - ckpt.norm.apply(raw)[mask]) ** 2)))
                pred_raw = pred * ckpt.norm.std + ckpt.norm.mean
                errors.append(float(np.mean((common.apply(pred_raw[mask]) - common.apply(raw[mask])) ** 2)))
        out[name] = {
            "heldout_windows": len(spans),
            "heldout_masked_mse_common_units": round(float(np.mean(errors)), 5),
            "heldout_masked_mse_own_units": round(float(np.mean(own)), 5),
            "train_loss_history": ckpt.provenance["pretrain"]["loss_history"],
            "pretrain_clips": ckpt.provenance["pretrain"]["clips"],
        }
    return out


def step_fewshot(run: Path, dev: Path, seeds: list[int], budgets: str, draws: int) -> dict:
    from edge_emo.emotions import EMOTIONS

    out, summary = {}, {}
    for name, path in checkpoints(run, seeds).items():
        exp = run / f"exp_{name}"
        args = ["experiment", str(dev), "--init", str(path), "--out", str(exp), "--budgets", budgets]
        args += ["--draws", str(draws), "--baseline-draws", "0", "--no-reference", "--workers", "1"]
        args += ["--split-seed", str(SPLIT_SEED)]
        edge_emo(args, run / f"experiment_{name}.log")
        with open(exp / "results.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["model"] == "ssl"]
        out[name] = {
            b: {int(r["draw"]): float(r["macro_f1"]) for r in rows if r["budget"] == b}
            for b in {r["budget"] for r in rows}
        }
        summary[name] = {
            b: {
                "macro_f1_mean": round(float(np.mean(list(d.values()))), 4),
                "sd": round(float(np.std(list(d.values()), ddof=1)), 4),
                "draws": len(d),
                "f1_per_emotion_mean": {
                    e: round(float(np.mean([float(r[f"{e}_f1"]) for r in rows if r["budget"] == b])), 4)
                    for e in EMOTIONS
                },
            }
            for b, d in sorted(out[name].items(), key=lambda kv: int(kv[0]))
        }
        zeros = json.loads((exp / "summary.json").read_text())["zeros"]
    summary["all_zeros"] = {
        "macro_f1": zeros["macro_f1"],
        **{f"{e}_f1": zeros["per_emotion"][e]["f1"] for e in EMOTIONS},
    }
    rng = np.random.default_rng(0)
    for s in seeds:
        a, b = out[f"logs_seed{s}"], out[f"audio_seed{s}"]
        for budget in a:
            diff = np.array([a[budget][k] - b[budget][k] for k in sorted(a[budget]) if k in b[budget]])
            boot = rng.choice(diff, (4000, len(diff))).mean(1)
            summary.setdefault(f"logs_minus_audio_seed{s}", {})[budget] = {
                "mean": round(float(diff.mean()), 4),
                "ci95": [
                    round(float(np.percentile(boot, 2.5)), 4),
                    round(float(np.percentile(boot, 97.5)), 4),
                ],
            }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--unlabeled", type=Path, default=Path("/work/shared/data/speech_unlabeled"))
    parser.add_argument("--dev", type=Path, default=Path("/work/shared/data/emo_speech_dev"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0", help="Pretraining seeds, e.g. 0,1 (a pair of runs each).")
    parser.add_argument("--budgets", default="50,200")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--steps", default="log,compare,pretrain,recon,fewshot")
    args = parser.parse_args()
    run, seeds, steps = args.run, [int(s) for s in args.seeds.split(",")], args.steps.split(",")
    run.mkdir(parents=True, exist_ok=True)
    result_file = run / "privacy_demo.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    result["settings"] = {k: str(v) for k, v in vars(args).items() if k not in ("run", "steps")}
    if "log" in steps:
        step_log(run, args.unlabeled)
    if "compare" in steps:
        result["compare"] = step_compare(run, args.unlabeled)
    if "pretrain" in steps:
        step_pretrain(run, args.unlabeled, args.dev, seeds, args.epochs)
    if "recon" in steps:
        result["recon"] = step_recon(run, args.dev, seeds)
    if "fewshot" in steps:
        result["fewshot"] = step_fewshot(run, args.dev, seeds, args.budgets, args.draws)
    result_file.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

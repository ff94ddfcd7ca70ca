"""benchmarks/quality_cv.py end to end on small corpora: folds over speakers of every corpus, pooled places
held out whole, ordinary speech as neutral training data and as the false-cue yardstick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality_cv import fold_of
from tests.core.conftest import make_corpus
from tests.core.test_cli import make_ordinary_speech


def test_folds_deal_speakers_and_hold_out_each_pooled_place_whole():
    speakers = [f"s{i}" for i in range(8)] + ["wild_unknown_house"] * 5 + ["wild_unknown_misc"] * 3
    folds = fold_of(speakers, 4)
    assert sorted(folds[f"s{i}"] for i in range(8)) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert folds["wild_unknown_house"] != folds["wild_unknown_misc"]


def test_cross_validation_over_two_corpora_and_ordinary_speech(tmp_path):
    first = make_corpus(tmp_path / "first", n_speakers=4, per_speaker=3)
    second = make_corpus(tmp_path / "second", n_speakers=2, per_speaker=3)
    ordinary = make_ordinary_speech(tmp_path / "ordinary", n=4)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality_cv", str(first), str(second), "--neutral", str(ordinary),
         "--out", str(out), "--folds", "2", "--hidden", "8", "--epochs", "1", "--crop-s", "0.5",
         "--cue-margin", "0.1", "--speaker-adaptation", "--keep-models", "0.3"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    folds = [json.loads((out / f"fold{k}.json").read_text()) for k in (0, 1)]
    for f in folds:
        assert set(f["corpora"]) == {"first", "second"} and set(f["ordinary"]) == {"ordinary"}
        assert f["corpora"]["first"]["zeros"]["macro_f1"] == 0.0
    # every clip is held out exactly once
    assert sum(f["corpora"]["first"]["n"] for f in folds) == 12
    assert sum(f["corpora"]["second"]["n"] for f in folds) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 2 and summary["corpora"]["first"]["model"]["uar"]["ci95"] is not None
    # a speaker-adapting recipe is scored a second time as the device hears strangers (the prior alone)
    cold = [json.loads((out / "cold" / f"fold{k}.json").read_text()) for k in (0, 1)]
    assert [f["corpora"]["first"]["n"] for f in cold] == [f["corpora"]["first"]["n"] for f in folds]
    assert (out / "cold" / "summary.md").exists() and (out / "cold" / "args.json").exists()
    # the cue margin chosen afterwards from the kept outputs: at the trained margin, the run's own numbers
    from benchmarks.cue_margin import apply, sweep

    at_trained, lower = sweep(out, [0.1, 0.0])
    f1, uar, _ = at_trained["first"]
    assert f1 == pytest.approx(summary["corpora"]["first"]["model"]["macro_f1"]["mean"])
    assert uar == pytest.approx(summary["corpora"]["first"]["model"]["uar"]["mean"])
    assert at_trained["ordinary"][2] == pytest.approx(summary["ordinary"]["ordinary"]["per_fold"]["mean"])
    assert lower["ordinary"][2] >= at_trained["ordinary"][2]  # a lower margin never cues less
    # ... and the run rewritten at a margin: at the trained one, the same folds and summary
    apply(out, 0.1, tmp_path / "again")
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    for name in ("first", "second"):
        for metric in ("macro_f1", "uar", "mae"):
            got, want = again["corpora"][name]["model"][metric], summary["corpora"][name]["model"][metric]
            assert got["mean"] == pytest.approx(want["mean"])
    assert (tmp_path / "again" / "cold" / "summary.md").exists()
    assert summary["ordinary"]["ordinary"]["pooled"]["n"] >= 4
    text = (out / "summary.md").read_text()
    assert "| first | categorical UAR |" in text and "false cues per utterance" in text
    # each fold's model is kept at the asked margin, and its held-out speakers are named
    from edge_emo.train.checkpoint import load_checkpoint

    kept = load_checkpoint(out / "fold0.safetensors")
    assert kept.provenance["cue_margin_applied"] == pytest.approx(0.2)  # 0.3 asked, 0.1 trained
    from edge_emo.data.corpus import load_corpus
    from edge_emo.train.finetune import predict

    clips = load_corpus(first, kept.spec, cut="speech")
    held = set(folds[0]["corpora"]["first"]["speakers"])
    held_clips = clips.subset([i for i, s in enumerate(clips.speakers) if s in held])
    trained = np.load(out / "fold0-predictions.npz")["first/pred"]  # the fold's outputs, margin 0.1
    got = predict(kept, held_clips.features, held_clips.speakers)
    np.testing.assert_allclose(got, trained - 0.2, atol=1e-5)
    assert set(folds[0]["corpora"]["first"]["speakers"]).isdisjoint(folds[1]["corpora"]["first"]["speakers"])
    check_heldout(out, {"first": first, "second": second, "ordinary": ordinary}, folds)


def check_heldout(run: Path, dirs: dict[str, Path], folds: list[dict]) -> None:
    """benchmarks/heldout.py on the kept fold models: gain per held-out corpus, live cues pooled over folds."""
    from benchmarks.heldout import fold_models, gain_changes, live_rates, markdown

    models = fold_models(run)
    assert [k for k, _, _ in models] == [0, 1]
    gain = gain_changes(models, dirs)
    for name in ("first", "second"):
        for who in ("estimate", "first_words"):
            assert set(gain[name][who]) == {
                "gain-20dB",
                "gain+12dB",
                "gain-20to+12dB-seed0",
                "gain+0dB-pink5to20dB-seed1",
            }
            assert len(gain[name][who]["gain-20dB"]["per_fold"]) == 2
    live = live_rates(models, dirs, 1.5)
    assert (run / "fold0.bundle" / "manifest.json").is_file()
    # a later run's model of the fold is exported again, never scored through the earlier bundle
    from edge_emo.runtime.bundle import load_bundle

    (run / "fold0.safetensors").write_bytes((run / "fold1.safetensors").read_bytes())
    assert live_rates(fold_models(run), dirs, 1.5)["ordinary"]["final"]["n"] >= 4
    export = load_bundle(run / "fold0.bundle").provenance["export"]
    assert (
        export["checkpoint_sha256"]
        == load_bundle(run / "fold1.bundle").provenance["export"]["checkpoint_sha256"]
    )
    # every held-out ordinary file is streamed once over the folds; an update shows at least the result
    assert live["ordinary"]["final"]["n"] >= 4
    for rates in live.values():
        assert rates["any_update"]["k"] >= rates["final"]["k"]
    text = markdown({"run": str(run), "folds": 2, "gain": gain, "live": live, "cue_after_s": 1.5})
    assert "| first | gain-20dB |" in text and "| ordinary |" in text


def test_ensemble_of_two_seeds_scored_from_their_held_out_outputs(tmp_path):
    """benchmarks/ensemble_cv.py: each fold's outputs are the mean of the runs', rescored; each fold's kept
    models merged into one whose outputs on its held-out clips are that mean; runs of another recipe refused."""
    first = make_corpus(tmp_path / "first", n_speakers=4, per_speaker=3)
    ordinary = make_ordinary_speech(tmp_path / "ordinary", n=4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env)

    runs = []
    for seed, hidden in (("0", "8"), ("100", "8"), ("0", "6")):
        out = tmp_path / f"run-{seed}-{hidden}"
        proc = run("benchmarks.quality_cv", str(first), "--neutral", str(ordinary), "--out", str(out),
                   "--folds", "2", "--hidden", hidden, "--epochs", "1", "--crop-s", "0.5", "--seed", seed,
                   "--speaker-adaptation", "--keep-models", "0.2")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append(out)
    ens = tmp_path / "ensemble"
    proc = run("benchmarks.ensemble_cv", str(runs[0]), str(runs[1]), "--out", str(ens))
    assert proc.returncode == 0, proc.stderr
    assert "folds [0, 1]" in proc.stdout
    for part in ("", "cold"):
        for k in (0, 1):
            got = np.load(ens / part / f"fold{k}-predictions.npz")
            members = [np.load(r / part / f"fold{k}-predictions.npz") for r in runs[:2]]
            for key in ("first/pred", "ordinary/pred"):
                np.testing.assert_allclose(got[key], (members[0][key] + members[1][key]) / 2, atol=1e-6)
        assert (ens / part / "summary.md").exists()
    # the rescored folds are the averaged outputs' scores
    from edge_emo.emotions import EMOTIONS
    from edge_emo.metrics import scores

    fold0 = json.loads((ens / "fold0.json").read_text())
    outputs = np.load(ens / "fold0-predictions.npz")
    want = scores(outputs["first/labels"], outputs["first/pred"], EMOTIONS)
    assert fold0["corpora"]["first"]["model"]["macro_f1"] == pytest.approx(want["macro_f1"])
    # the merged fold model predicts the mean on the fold's held-out clips (both kept at margin 0.2)
    from edge_emo.data.corpus import load_corpus
    from edge_emo.train.checkpoint import load_checkpoint
    from edge_emo.train.finetune import predict

    merged = load_checkpoint(ens / "fold0.safetensors")
    clips = load_corpus(first, merged.spec, cut="speech")
    held = set(fold0["corpora"]["first"]["speakers"])
    held_clips = clips.subset([i for i, s in enumerate(clips.speakers) if s in held])
    got = predict(merged, held_clips.features, held_clips.speakers)
    np.testing.assert_allclose(got, outputs["first/pred"] - 0.2, atol=1e-4)
    # the checks that need a model run on the ensemble's folds as on any run's (held-out speakers kept)
    from benchmarks.heldout import fold_models, live_rates

    assert (
        fold0["ordinary"]["ordinary"]["speakers"]
        == json.loads((runs[0] / "fold0.json").read_text())["ordinary"]["ordinary"]["speakers"]
    )
    live = live_rates(fold_models(ens), {"first": first, "ordinary": ordinary}, 1.5)
    assert live["ordinary"]["final"]["n"] >= 4
    # a run made before an option existed (no key in its args.json) is of the recipe that leaves it unset
    import shutil

    older = shutil.copytree(runs[1], tmp_path / "older")
    args = json.loads((older / "args.json").read_text())
    assert args.pop("distill_from") == "None" and args.pop("distill_weight") == "0.0"
    (older / "args.json").write_text(json.dumps(args))
    proc = run("benchmarks.ensemble_cv", str(runs[0]), str(older), "--out", str(tmp_path / "with-older"))
    assert proc.returncode == 0, proc.stderr
    # bad input: another recipe, the output folder one of the runs
    proc = run("benchmarks.ensemble_cv", str(runs[0]), str(runs[2]), "--out", str(tmp_path / "x"))
    assert proc.returncode != 0 and "differ in hidden" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("benchmarks.ensemble_cv", str(runs[0]), str(runs[1]), "--out", str(runs[0]))
    assert proc.returncode != 0 and "must be a new folder" in proc.stderr
    proc = run("benchmarks.ensemble_cv", str(runs[0]), str(runs[1]), "--out", str(ens))  # already written
    assert proc.returncode != 0 and "not empty" in proc.stderr and (ens / "fold0.json").is_file()


def test_a_network_taught_by_the_kept_fold_models_of_two_seeds(tmp_path):
    """--distill-from: fold K's network learns, beside its labels, the mean output of the runs' kept fold K
    models (their cue margin added back); it moves toward them, and teachers of another recipe are refused."""
    first = make_corpus(tmp_path / "first", n_speakers=4, per_speaker=3)
    ordinary = make_ordinary_speech(tmp_path / "ordinary", n=4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def cv(out: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.quality_cv", str(first), "--neutral", str(ordinary), "--out",
             str(out), "--folds", "2", "--hidden", "8", "--epochs", "2", "--speaker-adaptation", *extra],
            capture_output=True, text=True, env=env,
        )  # fmt: skip

    for seed in (0, 100):
        assert cv(tmp_path / f"s{seed}", "--seed", str(seed), "--keep-models", "0.4").returncode == 0
    runs = f"{tmp_path / 's0'},{tmp_path / 's100'}"
    taught = cv(tmp_path / "student", "--distill-from", runs, "--distill-weight", "1", "--keep-models", "0")
    alone = cv(tmp_path / "alone", "--keep-models", "0")
    assert taught.returncode == 0 and alone.returncode == 0, taught.stderr + alone.stderr
    from edge_emo.data.corpus import load_corpus
    from edge_emo.train.checkpoint import load_checkpoint
    from edge_emo.train.finetune import predict

    clips = load_corpus(first, load_checkpoint(tmp_path / "s0" / "fold0.safetensors").spec, cut="speech")
    teachers = (
        np.mean(
            [
                predict(load_checkpoint(tmp_path / s / "fold0.safetensors"), clips.features)
                for s in ("s0", "s100")
            ],
            0,
        )
        + 0.4
    )  # the margin the kept models carry
    student = predict(load_checkpoint(tmp_path / "student" / "fold0.safetensors"), clips.features)
    untaught = predict(load_checkpoint(tmp_path / "alone" / "fold0.safetensors"), clips.features)
    assert np.abs(student - teachers).mean() < np.abs(untaught - teachers).mean()
    assert load_checkpoint(tmp_path / "student" / "fold0.safetensors").provenance["finetune"]["teachers"] == [
        0,
        100,
    ]
    # teachers that standardise otherwise (no speaker adaptation) are refused with one line
    other = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality_cv", str(first), "--neutral", str(ordinary), "--out",
         str(tmp_path / "bad"), "--folds", "2", "--hidden", "8", "--epochs", "1", "--distill-from", runs,
         "--distill-weight", "0.5"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert other.returncode != 0 and "distil from networks trained on the same clips" in other.stderr


def test_extract_only_fills_the_cache_and_runs_no_fold(tmp_path):
    """--extract-only (the build script runs it before folds in parallel): every rendition's features are
    cached, no fold is trained, no run folder is needed. Options a pretrained checkpoint fixes are refused
    beside --init (they were ignored), and a run without --out is refused, each in one line."""
    first = make_corpus(tmp_path / "first", n_speakers=2, per_speaker=2)
    ordinary = make_ordinary_speech(tmp_path / "ordinary", n=2)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "EDGE_EMO_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality_cv", str(first), "--neutral", str(ordinary),
         "--folds", "2", "--cut", "speech", "--train-gains=-20,noisy", "--extract-only"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "in the cache" in proc.stdout and not (tmp_path / "run").exists()
    cli = [sys.executable, "-m", "benchmarks.quality_cv", str(first)]
    fixed_by_init = [
        "--out",
        str(tmp_path / "r2"),
        "--init",
        "pre.safetensors",
        "--hop-ms",
        "20",
        "--hidden",
        "64",
    ]
    for extra, message in ((fixed_by_init, "--hop-ms, --hidden: the pretrained"), ([], "--out is needed")):
        bad = subprocess.run([*cli, *extra], capture_output=True, text=True, env=env)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    cached = {p.name for p in (cache / "features").iterdir()}
    for corpus in ("first", "ordinary"):
        assert {
            f"{corpus}-egemaps",
            f"{corpus}-egemaps-gain-20dB",
            f"{corpus}-egemaps-gain+0dB-pink5to20dB-seed0",
        } <= cached

"""`edge-emo experiment --cv speakers` end to end on a tiny synthetic corpus: every speaker is evaluated
exactly once, never trained on in its fold, and the statistics are over folds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_emo.data.splits import speaker_folds
from edge_emo.experiment.stats import t_interval
from tests.core.conftest import make_corpus
from tests.experiment.test_experiment import edge_emo

# 6 speakers x 4 clips in 3 folds of 2 speakers: 16 training and 8 evaluation clips per fold.
CV = ["--cv", "speakers", "--folds", "3", "--budgets", "4,100", "--draws", "2", "--baseline-draws", "1",
      "--full-finetune-from", "10", "--epochs", "1", "--pretrain-epochs", "1", "--hidden", "8",
      "--workers", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> tuple[Path, str]:
    corpus = make_corpus(tmp_path_factory.mktemp("cv-corpus"), n_speakers=6, per_speaker=4, seconds=0.8)
    out = tmp_path_factory.mktemp("cv") / "run"
    return out, edge_emo("experiment", corpus, "--out", out, *CV).stdout


def test_every_speaker_is_evaluated_once_and_never_trained_on(cv_run):
    out, stdout = cv_run
    summary = json.loads((out / "summary.json").read_text())
    held = [s for f in summary["folds"] for s in f["eval_speakers"]]
    assert sorted(held) == [f"spk{i}" for i in range(6)]
    assert all(f["n_train_clips"] == 16 and f["n_eval_clips"] == 8 for f in summary["folds"])
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["fold"] for r in rows} == {"cv1", "cv2", "cv3"}
    for fold in ("cv1", "cv2", "cv3"):  # per fold: 2 budgets x 2 draws x (ssl, ridge) + baseline, ssl_full
        models = sorted(r["model"] for r in rows if r["fold"] == fold)
        assert models == sorted(["ssl"] * 4 + ["ridge"] * 4 + ["baseline"] * 2 + ["ssl_full"])
        assert {int(r["n_eval"]) for r in rows if r["fold"] == fold} == {8}
    assert (out / "pretrained-cv3-masked.safetensors").is_file()  # pretrained per fold, on its own speakers
    assert "ssl, 16 labels: macro-F1" in stdout and "over 3 fold(s)" in stdout


def test_statistics_are_over_folds(cv_run):
    out, _ = cv_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unit"] == "fold" and summary["budgets"] == [4, 16]
    rows = [
        r for r in csv.DictReader((out / "results.csv").open()) if r["model"] == "ssl" and r["budget"] == "4"
    ]
    per_fold = [
        np.mean([float(r["macro_f1"]) for r in rows if r["fold"] == f]) for f in ("cv1", "cv2", "cv3")
    ]
    ssl = summary["models"]["ssl"]["4"]["macro_f1"]
    assert (
        ssl["n"] == 3
        and ssl["mean"] == pytest.approx(np.mean(per_fold))
        and ssl["ci95"] == pytest.approx(list(t_interval(per_fold)))
    )
    assert summary["models"]["ssl_full"]["16"]["acc4"]["n"] == 3
    assert summary["differences"]["ssl - ridge"]["4"]["macro_f1"]["n"] == 3
    assert summary["zeros"]["macro_f1"] == 0.0 and 0 < summary["zeros"]["acc4"] < 1
    assert "| ssl (3 folds) |" in (out / "table1.md").read_text()
    assert "Paired differences over folds" in (out / "differences.md").read_text()


def test_speaker_folds_partition_the_speakers():
    speakers = [f"s{i % 16:02d}" for i in range(100)]
    folds = speaker_folds(speakers, 4, seed=0)
    assert sorted(s for f in folds for s in f) == sorted(set(speakers))
    assert [len(f) for f in folds] == [4, 4, 4, 4]
    assert speaker_folds(speakers, 4, seed=0) == folds and speaker_folds(speakers, 4, seed=1) != folds
    assert [len(f) for f in speaker_folds(speakers, 5)] == [4, 3, 3, 3, 3]
    for k in (1, 17):
        with pytest.raises(ValueError, match="cross-validation needs 2 <= k <= 16"):
            speaker_folds(speakers, k)


def test_cv_with_eval_is_refused(tmp_path):
    corpus = make_corpus(tmp_path / "c", n_speakers=2, per_speaker=1, seconds=0.5)
    proc = edge_emo(
        "experiment", corpus, "--out", tmp_path / "r", "--cv", "speakers", "--eval", corpus, check=False
    )
    assert proc.returncode == 2 and "cannot be used with --eval" in proc.stderr


def test_t_interval_on_known_data():
    lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])  # mean 2.5, std 1.291: half width 3.182 * 1.291 / 2
    assert lo == pytest.approx(2.5 - 2.0540, abs=1e-3) and hi == pytest.approx(2.5 + 2.0540, abs=1e-3)
    x = np.random.default_rng(0).normal(size=200)  # many values: the normal-theory interval
    lo, hi = t_interval(x)
    assert hi - lo == pytest.approx(2 * 1.972 * x.std(ddof=1) / np.sqrt(200), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([1.0])

"""`edge-emo experiment` reports the categorical readout and false cues: per fold and over folds with
intervals (--cv speakers), on ordinary speech (--ordinary), and in a cross-corpus run (--eval)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from edge_emo.experiment.runner import CATEGORICAL, Results, columns
from edge_emo.experiment.stats import t_interval
from tests.core.conftest import make_corpus
from tests.experiment.test_experiment import edge_emo
from tests.fixtures import synth_speech, write_wav

SMALL = ["--draws", "2", "--baseline-draws", "1", "--epochs", "1", "--pretrain-epochs", "1", "--hidden", "8",
         "--workers", "1"]  # fmt: skip


def with_neutral(root: Path, **kwargs) -> Path:
    """make_corpus with every third clip relabeled neutral (no intensity), as RAVDESS neutral and calm."""
    make_corpus(root, **kwargs)
    lines = (root / "labels.csv").read_text().splitlines()
    for i in range(1, len(lines), 3):
        lines[i] = ",".join(lines[i].split(",")[:4] + ["0"] * 6)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def ordinary_speech(root: Path) -> Path:
    root.mkdir()
    for k in range(3):
        write_wav(root / f"o{k}.wav", synth_speech(1.0, seed=400 + k) * 0.4)
    (root / "manifest.csv").write_text("path,speaker\n" + "".join(f"o{k}.wav,r{k}\n" for k in range(3)))
    return root


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("readout-cv")
    corpus = with_neutral(tmp / "c", n_speakers=6, per_speaker=4, seconds=0.8)
    out = tmp / "run"
    stdout = edge_emo(
        "experiment", corpus, "--out", out, "--cv", "speakers", "--folds", "3", "--budgets", "100",
        "--ordinary", ordinary_speech(tmp / "ordinary"), *SMALL, timeout=900,
    ).stdout  # fmt: skip
    return out, stdout


def test_every_row_has_the_readout_and_false_cues(cv_run):
    out, _ = cv_run
    rows = rows_of(out / "results.csv")
    assert {r["model"] for r in rows} == {"ssl", "ridge", "baseline"}
    for r in rows:
        values = [float(r[k]) for k in CATEGORICAL]
        assert all(0 <= v <= 1 for v in values), r
        # 3 ordinary clips: the rate is a count of them
        assert float(r["false_cue_ordinary"]) * 3 == pytest.approx(round(float(r["false_cue_ordinary"]) * 3))


def test_per_fold_values_and_intervals_over_folds(cv_run):
    out, stdout = cv_run
    summary = json.loads((out / "summary.json").read_text())
    per_fold = summary["per_fold"]["ssl"]["16"]
    assert [f["fold"] for f in per_fold] == ["cv1", "cv2", "cv3"]
    for k in ("uar", "wa", "false_cue_neutral", "false_cue_ordinary"):
        values = [f[k] for f in per_fold]
        stats = summary["models"]["ssl"]["16"][k]
        assert stats["n"] == 3 and stats["mean"] == pytest.approx(np.mean(values))
        assert stats["ci95"] == pytest.approx(list(t_interval(values)))
    # the fold's value is the mean over its draws
    rows = [r for r in rows_of(out / "results.csv") if r["model"] == "ssl" and r["fold"] == "cv2"]
    assert per_fold[1]["uar"] == pytest.approx(np.mean([float(r["uar"]) for r in rows]))
    zeros = summary["zeros"]
    assert zeros["false_cue_neutral"] == 0.0 and zeros["false_cue_ordinary"] == 0.0
    # all-zeros reads neutral: right on 1 of the classes there are (neutral; happiness and surprise went to
    # neutral with every third clip, so 5 of 7)
    assert zeros["uar"] == pytest.approx(1 / 5)
    folds = (out / "folds.md").read_text()
    assert "| cv3 |" in folds and "false cues on ordinary speech" in folds and "**mean**" in folds
    assert "**readout UAR**" in (out / "table1.md").read_text()
    assert "ssl, 16 labels: macro-F1" in stdout and "false cues on neutral clips" in stdout


def test_cross_corpus_run_reports_the_readout(tmp_path):
    train = with_neutral(tmp_path / "a", n_speakers=3, per_speaker=4, seconds=0.8)
    other = with_neutral(tmp_path / "b", n_speakers=2, per_speaker=3, seconds=1.1)
    out = tmp_path / "run"
    edge_emo("experiment", train, "--eval", other, "--out", out, "--budgets", "100",
             "--ordinary", ordinary_speech(tmp_path / "o"), *SMALL, timeout=900)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_eval_clips"] == 6
    for model in ("ssl", "ridge", "baseline"):
        entry = summary["models"][model]["12"]
        assert all(entry[k] is not None and 0 <= entry[k]["mean"] <= 1 for k in CATEGORICAL)
    table = (out / "table1.md").read_text()
    assert "**false cues on neutral clips**" in table and "**false cues on ordinary speech (clips)**" in table


def test_a_run_from_before_the_readout_columns_resumes(tmp_path):
    old = columns(EMOTIONS)[: -len(CATEGORICAL)]
    path = tmp_path / "results.csv"
    row = {k: "1" for k in old} | {"fold": "val", "model": "ssl"}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, old)
        writer.writeheader()
        writer.writerow(row)
    results = Results(path, EMOTIONS)
    assert results.rows[0]["macro_f1"] == 1.0 and math.isnan(results.rows[0]["uar"])


def test_folds_without_neutral_clips_say_so():
    from edge_emo.experiment.report import fold_table, macro_f1_lines

    def fold(name, f1):
        return {"fold": name, "macro_f1": f1, "uar": 0.5, "wa": 0.5, "false_cue_neutral": None,
                "false_cue_ordinary": None}  # fmt: skip

    stats = {"n": 2, "mean": 0.5, "std": 0.0, "ci95": [0.5, 0.5]}
    summary = {
        "budgets": [8],
        "unit": "fold",
        "per_fold": {"ssl": {"8": [fold("cv1", 0.4), fold("cv2", 0.6)]}},
        "models": {
            "ssl": {
                "8": {
                    "macro_f1": stats,
                    "uar": stats,
                    "wa": stats,
                    "false_cue_neutral": None,
                    "false_cue_ordinary": None,
                }
            }
        },
        "zeros": {
            "macro_f1": 0.0,
            "uar": 0.25,
            "wa": 0.0,
            "false_cue_neutral": None,
            "false_cue_ordinary": None,
        },
    }
    table = fold_table(summary)
    assert "| cv1 | 0.400 | 0.500 | 0.500 | no neutral clips | no --ordinary speech |" in table
    assert "nan" not in table.lower()
    line, zeros = macro_f1_lines(summary)  # the model's line, then the all-zeros predictor's
    assert zeros.startswith("all-zeros: macro-F1 0.000")
    assert "false cues on neutral clips no neutral clips" in line and "ordinary" not in line

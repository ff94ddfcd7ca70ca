"""benchmarks/compare_runs.py: the paired change per fold between two quality_cv runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmarks.compare_runs import compare
from tests.cli import ROOT, cli_env

SHIPPED_RUN = ROOT / "docs" / "quality-cv-default"


def test_the_change_is_paired_within_each_fold(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(SHIPPED_RUN, new)
    for k, bump in enumerate([0.1, 0.0, 0.2, 0.1]):  # RAVDESS macro-F1 of each fold raised by `bump`
        path = new / f"fold{k}.json"
        result = json.loads(path.read_text())
        result["corpora"]["emo_speech_dev"]["model"]["macro_f1"] += bump
        path.write_text(json.dumps(result))
    rows = {r["number"]: r for r in compare(new, SHIPPED_RUN)}
    f1 = rows["emo_speech_dev macro-F1"]
    assert f1["change"] == pytest.approx(0.1) and list(f1["per_fold"].values()) == pytest.approx(
        [0.1, 0, 0.2, 0.1]
    )
    assert f1["ci95"][0] < 0.1 < f1["ci95"][1]
    assert f1["new"] - f1["old"] == pytest.approx(0.1)
    unchanged = [r for name, r in rows.items() if name != "emo_speech_dev macro-F1"]
    assert unchanged and all(r["change"] == 0 and r["ci95"] == [0, 0] for r in unchanged)
    assert "speech_unlabeled false cues" in rows and "emo_speech_wild UAR" in rows


def test_the_command_prints_both_tables_and_refuses_a_folder_without_folds(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_runs", SHIPPED_RUN, SHIPPED_RUN, "--out", tmp_path / "t.md"],
        capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "With the speaker's estimate" in run.stdout and "A stranger's first words" in run.stdout
    assert (tmp_path / "t.md").read_text() + "\n" == run.stdout
    change = run.stdout.split("| emo_speech_dev macro-F1 |")[1].split("|")[2]
    assert change.strip() == "+0.000 [+0.000, +0.000]"
    empty = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_runs", tmp_path, SHIPPED_RUN],
        capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert empty.returncode != 0 and "no fold*.json" in empty.stderr and "Traceback" not in empty.stderr

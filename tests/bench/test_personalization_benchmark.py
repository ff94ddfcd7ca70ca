"""benchmarks/personalization.py end to end on a small synthetic corpus: a speaker-adapting bundle is scored
with the device's estimate of each speaker (and as a stranger's first words), any other bundle with its own
normalisation; the summary is rebuilt from the raw draws."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.cli import ROOT, cli_env
from tests.core.conftest import make_corpus


def run_benchmark(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.personalization", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=600)


def test_an_adapting_bundle_is_scored_with_the_speakers_estimate(adapting_bundle, bundles, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n_speakers=2, per_speaker=12)
    out, raw = tmp_path / "summary.json", tmp_path / "raw.json"
    common = ["--draws", "3", "--unlabeled-s", "4", "--out", out, "--raw", raw]
    run = run_benchmark(adapting_bundle.path, corpus, *common)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["speaker_estimate"] is True and result["groups"] == {"corpus": ["spk0", "spk1"]}
    five, zero = result["budgets"]["5"], result["budgets"]["0"]
    for variant in ("estimate", "labeled_estimate", "first_words"):
        for head in ("ridge_1", "bias_10", "calib_10+guard", "ridge_heldout"):
            cell = five[f"{variant}/{head}"]["corpus"]
            assert cell["speakers"] == 2 and cell["macro_f1"]["delta_95"][0] <= cell["macro_f1"]["delta"]
    # The reference is the shipped head with the same estimate: its own change is exactly zero.
    assert all(five["estimate/shipped"]["corpus"][k]["delta"] == 0 for k in ("macro_f1", "mae"))
    # The estimate changes what the bundle outputs (the prior is worth 1 s: each speaker's voice moves it).
    draws = json.loads(raw.read_text())["per_speaker"]
    assert any(np.abs(d["deltas"]["0"]["estimate_vs_first_words"]["mae"]).max() > 0 for d in draws.values())
    assert "first_words_absolute" in zero and "estimate_vs_first_words" in zero
    assert "first words" in run.stdout

    # Any other bundle: its own normalisation (`global`), no estimate rows.
    run = run_benchmark(bundles["fp32"].path, corpus, *common, "--norms", "global")
    assert run.returncode == 0, run.stderr
    plain = json.loads(out.read_text())
    assert plain["speaker_estimate"] is False and "global/ridge_1" in plain["budgets"]["5"]
    assert not any(k.startswith("estimate") for k in plain["budgets"]["5"])

    # The summary is rebuilt from the raw draws alone.
    again = tmp_path / "again.json"
    run = run_benchmark(bundles["fp32"].path, corpus, "--raw", raw, "--summarize", "--out", again)
    assert run.returncode == 0, run.stderr
    rebuilt = json.loads(again.read_text())["budgets"]
    for n, rows in plain["budgets"].items():
        assert rows.keys() == rebuilt[n].keys()
        for method, cells in rows.items():
            for k in ("macro_f1", "mae"):  # the means; the intervals are new bootstrap draws
                assert cells["corpus"][k]["delta"] == rebuilt[n][method]["corpus"][k]["delta"]


def test_runs_on_other_speakers_are_pooled(bundles, tmp_path):
    """Each cross-validation fold's model measured on its own held-out speakers, pooled into one summary (the
    same means as one run over all of them); a speaker in two runs is refused."""
    corpus = make_corpus(tmp_path / "corpus", n_speakers=2, per_speaker=12)
    raw, whole = tmp_path / "raw.json", tmp_path / "whole.json"
    common = ["--draws", "2", "--unlabeled-s", "4", "--norms", "global"]
    run = run_benchmark(bundles["fp32"].path, corpus, *common, "--raw", raw, "--out", whole)
    assert run.returncode == 0, run.stderr
    one = json.loads(raw.read_text())
    parts = []
    for speaker in ("spk0", "spk1"):  # as if two folds' models had measured one speaker each
        part = {
            **one,
            "per_speaker": {speaker: one["per_speaker"][speaker]},
            "speakers": {speaker: one["speakers"][speaker]},
            "groups": {"corpus": [speaker]},
        }
        parts.append(tmp_path / f"raw-{speaker}.json")
        parts[-1].write_text(json.dumps(part))
    pooled = tmp_path / "pooled.json"
    run = run_benchmark("-", "-", "--summarize", "--raw", *parts, "--out", pooled)
    assert run.returncode == 0, run.stderr
    result, expected = json.loads(pooled.read_text()), json.loads(whole.read_text())
    assert result["groups"] == {"corpus": ["spk0", "spk1"]}
    for method in ("global/ridge_1", "global/ridge_heldout"):
        cell, same = result["budgets"]["5"][method]["corpus"], expected["budgets"]["5"][method]["corpus"]
        assert cell["speakers"] == 2 and cell["macro_f1"]["delta"] == same["macro_f1"]["delta"]
    # a speaker measured twice is refused with one line
    run = run_benchmark("-", "-", "--summarize", "--raw", parts[0], parts[0], "--out", pooled)
    assert run.returncode != 0 and "spk0 is in another --raw file too" in run.stderr
    assert "Traceback" not in run.stderr
    # several --raw files only when summarizing
    run = run_benchmark(bundles["fp32"].path, corpus, "--raw", *parts)
    assert run.returncode != 0 and "only with --summarize" in run.stderr


def test_heads_aim_at_the_labels_lowered_by_the_bundles_cue_margin(bundles, tmp_path):
    from edge_emo.runtime.bundle import write_bundle

    plain = bundles["fp32"]
    manifest = {k: v for k, v in plain.manifest.items() if k != "manifest_sha256"}
    margin = write_bundle(
        tmp_path / "margin.bundle", plain.graph_path.read_bytes(), {**manifest, "cue_margin": 0.4}
    )
    corpus = make_corpus(tmp_path / "corpus", n_speakers=2, per_speaker=12)
    out = tmp_path / "both.json"
    run = run_benchmark(margin.path, corpus, "--draws", "2", "--norms", "global", "--targets", "margin,labels",
                        "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["targets"] == {
        "margin": {"cue_margin": 0.4, "one_sided": True},
        "labels": {"cue_margin": 0.0, "one_sided": False},
    }
    five = result["budgets"]["5"]
    # The same draws, the same reference; other heads: the labels lowered by 0.4 are another target.
    assert five["global/shipped"]["corpus"]["mae"]["delta"] == 0.0
    assert five["global@labels/shipped"]["corpus"]["mae"]["delta"] == 0.0
    mae = {row: five[row]["corpus"]["mae"]["delta"] for row in ("global/ridge_1", "global@labels/ridge_1")}
    assert mae["global/ridge_1"] != mae["global@labels/ridge_1"]
    assert "global@labels/ridge_heldout" in five  # strengths chosen per aim


def test_the_knn_candidate_moves_a_clip_by_its_neighbours_residuals():
    from benchmarks.personalization import KNN_PRIOR, knn_correction

    x_lab = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    residual = np.array([[1.0, 0.0], [0.0, -1.0], [2.0, 2.0]])
    near_first, far = np.array([[0.01, 0.0]]), np.array([[500.0, 500.0]])
    moved = knn_correction(x_lab, residual, near_first, width=0.25)
    np.testing.assert_allclose(moved, [[1 / (1 + KNN_PRIOR), 0.0]], atol=1e-3)
    np.testing.assert_allclose(knn_correction(x_lab, residual, far, width=0.25), 0.0, atol=1e-9)
    # leave-one-out: a clip's own residual never moves it (the others are far at this width)
    np.testing.assert_allclose(
        knn_correction(x_lab, residual, x_lab, 0.25, leave_one_out=True), 0.0, atol=1e-2
    )

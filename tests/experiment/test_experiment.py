"""`edge-emo experiment` end to end on a small synthetic corpus (tiny budgets, 1 epoch, 2 draws), as CI runs
it, plus the statistics, the ridge reference and the budget grammar on known data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from edge_emo.experiment.reference import Ridge, corpus_functionals
from edge_emo.experiment.runner import capped_budgets, parse_budgets
from edge_emo.experiment.stats import bootstrap_ci, describe
from tests import cli
from tests.core.conftest import make_corpus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


edge_emo = partial(cli.edge_emo, check=True)


# 5 speakers x 6 clips: the train split (4 speakers) has 24 clips, validation 6.
EXPERIMENT = ["--budgets", "4,8,100", "--draws", "5", "--baseline-draws", "2", "--epochs", "1",
              "--pretrain-epochs", "1", "--hidden", "16", "--loss-variant", "--full-finetune-from", "8",
              "--workers", "2"]  # fmt: skip
# budgets 4, 8, 24 (100 capped); 5 draws of ssl, ssl_loss_all and ridge; 2 of baseline, and ssl_full at 8+.
EXPECTED_ROWS = 5 * 3 * 3 + 2 * (3 + 2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=5, per_speaker=6)


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("run") / "run"
    return out, edge_emo("experiment", corpus, "--out", out, *EXPERIMENT)


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_results_have_one_row_per_budget_draw_and_model(run):
    out, proc = run
    rows = read_rows(out / "results.csv")
    assert len(rows) == EXPECTED_ROWS
    keys = {(r["budget"], r["draw"], r["model"]) for r in rows}
    assert len(keys) == EXPECTED_ROWS
    assert {r["model"] for r in rows} == {"ssl", "ssl_loss_all", "ridge", "baseline", "ssl_full"}
    assert {r["budget"] for r in rows} == {"4", "8", "24"}
    assert {r["budget"] for r in rows if r["model"] == "ssl_full"} == {"8", "24"}
    for r in rows:
        assert int(r["n_labeled"]) == int(r["budget"]) and int(r["n_eval"]) == 6
        for e in EMOTIONS:
            assert 0 <= float(r[f"{e}_acc4"]) <= 1 and 0 <= float(r[f"{e}_f1"]) <= 1
        assert float(r["mae"]) >= 0 and 0 <= float(r["macro_f1"]) <= 1
    assert "capped to 24" in proc.stdout
    assert "SSL minus baseline macro-F1" in proc.stdout


def test_summary_reports_statistics_of_differences(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["budgets"] == [4, 8, 24] and summary["n_train_clips"] == 24 and summary["n_eval_clips"] == 6
    )
    assert any("capped to 24" in n for n in summary["notes"])
    assert set(summary["zeros"]["per_emotion"]) == set(EMOTIONS)
    ssl = summary["models"]["ssl"]["4"]
    assert ssl["macro_f1"]["n"] == 5 and len(ssl["macro_f1"]["ci95"]) == 2
    assert set(ssl["per_emotion"]["anger"]) == {"f1", "acc4", "mae"}
    diff = summary["differences"]["ssl - baseline"]
    assert set(diff) == {"4", "8", "24"}
    for d in diff.values():  # 2 paired draws: a std, but too few for an interval
        for metric in ("macro_f1", "acc4", "mae"):
            assert d[metric]["n"] == 2 and d[metric]["std"] >= 0 and d[metric]["ci95"] is None
    for d in summary["differences"]["ssl - ridge"].values():  # 5 paired draws
        lo, hi = d["mae"]["ci95"]
        assert d["mae"]["n"] == 5 and lo <= d["mae"]["mean"] <= hi
    # A paired difference is the difference of the two models' rows on the same draws.
    rows = read_rows(out / "results.csv")
    mae = {(r["model"], r["draw"]): float(r["mae"]) for r in rows if r["budget"] == "8"}
    expected = np.mean([mae["ssl", d] - mae["baseline", d] for d in ("0", "1")])
    assert diff["8"]["mae"]["mean"] == pytest.approx(expected)
    assert {"ssl_loss_all - ssl", "ssl_full - baseline", "ssl - ridge"} <= set(summary["differences"])


def test_plots_are_valid_pngs(run):
    import matplotlib.image

    out, _ = run
    names = [f"{m}_overall.png" for m in ("macro_f1", "acc4", "mae")]
    names += [f"{m}_per_emotion.png" for m in ("f1", "acc4", "mae")] + ["differences.png"]
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 300


def test_tables(run):
    out, _ = run
    table = (out / "table1.md").read_text()
    assert "F1 per emotion with 24 labeled clips" in table and "all-zeros" in table
    for e in EMOTIONS:
        assert f"| {e} |" in table
    assert "| ssl (5 draws) |" in table.splitlines()[2].replace(" | ssl_loss_all", " |")
    assert "**ssl - baseline**" in (out / "differences.md").read_text()


def test_rerun_recomputes_nothing_and_resume_fills_only_the_gaps(run, corpus):
    out, _ = run
    before = (out / "results.csv").read_bytes()
    again = edge_emo("experiment", corpus, "--out", out, *EXPERIMENT)
    assert "every job is already in results.csv" in again.stdout
    assert (out / "results.csv").read_bytes() == before
    # An interruption after the first rows: only the missing ones run, the kept ones stay as they were.
    lines = before.decode().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-5]))
    resumed = edge_emo("experiment", corpus, "--out", out, *EXPERIMENT)
    assert f"5 jobs to run ({EXPECTED_ROWS - 5} rows already in results.csv)" in resumed.stdout
    assert "pretraining" not in resumed.stdout  # the run's pretrained networks are reused
    after = (out / "results.csv").read_text().splitlines(keepends=True)
    assert after[: len(lines) - 5] == lines[:-5] and len(after) == len(lines)


def test_other_settings_in_the_same_run_folder_are_refused(run, corpus):
    out, _ = run
    proc = edge_emo("experiment", corpus, "--out", out, *EXPERIMENT, "--seed", "1", check=False)
    assert proc.returncode == 2 and "holds a run with other settings (seed: 0 then, 1 now)" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budgets", "20,...,40"], "'...' needs two numbers before it"),
        (["--draws", "0"], "--draws must be >= 1"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(corpus, tmp_path, args, message):
    proc = edge_emo("experiment", corpus, "--out", tmp_path / "run", *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_console_names_the_cap_first_and_prints_values(run):
    _, proc = run
    lines = proc.stdout.splitlines()
    note = next(i for i, line in enumerate(lines) if "capped to 24" in line)
    assert note < next(i for i, line in enumerate(lines) if "jobs to run" in line)  # before the work
    for model in ("ssl", "baseline", "ridge"):
        assert any(line.startswith(f"{model}, 4 labels: macro-F1 0.") for line in lines), model
        assert any(line.startswith(f"{model}, 24 labels: macro-F1 0.") for line in lines), model
    assert "all-zeros: macro-F1 0.000" in lines


def test_one_draw_runs_with_the_default_baseline_draws(corpus, tmp_path):
    proc = edge_emo("experiment", corpus, "--out", tmp_path / "run", "--budgets", "8", "--draws", "1",
                    "--epochs", "1", "--pretrain-epochs", "1", "--hidden", "8", "--no-reference",
                    "--workers", "1")  # fmt: skip
    rows = read_rows(tmp_path / "run/results.csv")
    assert sorted(r["model"] for r in rows) == ["baseline", "ssl"] and {r["draw"] for r in rows} == {"0"}
    assert "baseline, 8 labels: macro-F1" in proc.stdout and "ssl, 8 labels: macro-F1" in proc.stdout


# ------------------------------------------------------------------------------------------------ units


def test_budget_grammar_expands_the_papers_budgets():
    assert parse_budgets("20,35,...,200,400,...,1200") == [
        *range(20, 201, 15),
        400,
        600,
        800,
        1000,
        1200,
    ]
    assert parse_budgets("4, 8") == [4, 8]
    for bad in ["8,4", "20,35,...,201", "0,5", "x", ""]:
        with pytest.raises(ValueError, match="--budgets"):
            parse_budgets(bad)
    assert capped_budgets([20, 800, 1200], 776)[0] == [20, 776]
    assert capped_budgets([20, 50], 776) == ([20, 50], [])


def test_bootstrap_interval_on_known_data():
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, 400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # the normal-theory interval the bootstrap approximates
    assert lo == pytest.approx(x.mean() - half, abs=0.01) and hi == pytest.approx(x.mean() + half, abs=0.01)
    assert bootstrap_ci(x) == (lo, hi)  # seeded
    with pytest.raises(ValueError, match="at least 2 values"):
        bootstrap_ci([1.0])


def test_describe_one_few_and_many_values():
    assert describe([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}
    few = describe([1.0, 3.0])  # a bootstrap of 2 values would claim [1, 3]: too narrow to report
    assert few["std"] == pytest.approx(np.sqrt(2)) and few["ci95"] is None
    d = describe([1.0, 2.0, 3.0, 2.0, 2.0])
    assert d["mean"] == 2.0 and 1.0 <= d["ci95"][0] < 2.0 < d["ci95"][1] <= 3.0


def test_ridge_leave_one_out_is_exact_and_alpha_follows_the_signal():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10)) * rng.uniform(0.1, 10, 10)
    w = rng.normal(size=(10, 2))
    y = x @ w + 0.5
    fit = Ridge.fit(x, y)
    assert fit.alpha <= 0.1
    np.testing.assert_allclose(fit.predict(x), y, atol=0.05)
    # The closed-form leave-one-out error equals refitting without each clip in turn (fixed alpha).
    alpha = 3.0
    mean, std = x.mean(0), x.std(0)
    u, s, _ = np.linalg.svd((x - mean) / std, full_matrices=False)
    shrink = s**2 / (s**2 + alpha)
    fitted = u @ (shrink[:, None] * (u.T @ (y - y.mean(0)))) + y.mean(0)
    closed = (y - fitted) / (1 - (u**2) @ shrink - 1 / len(x))[:, None]
    brute = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        zk, yk = (x[keep] - mean) / std, y[keep]
        zc = zk - zk.mean(0)
        coef = np.linalg.solve(zc.T @ zc + alpha * np.eye(10), zc.T @ (yk - yk.mean(0)))
        pred = (((x[i] - mean) / std) - zk.mean(0)) @ coef + yk.mean(0)
        brute.append(y[i] - pred)
    np.testing.assert_allclose(closed, np.array(brute), atol=1e-8)
    noise = Ridge.fit(rng.normal(size=(30, 10)), rng.normal(size=(30, 6)))
    assert noise.alpha >= 100  # nothing to learn: shrink to the mean


def test_functionals_are_88_per_clip_and_cached(corpus):
    names = ["spk0/clip0.wav", "spk1/clip2.wav"]
    x = corpus_functionals(corpus, names)
    assert x.shape == (2, 88) and np.all(np.isfinite(x)) and not np.allclose(x[0], x[1])
    cached = list(Path(os.environ["EDGE_EMO_CACHE"], "features").glob("*-egemaps-functionals/*.frames.npy"))
    assert cached
    np.testing.assert_array_equal(
        corpus_functionals(corpus, names[::-1]), x[::-1]
    )  # from the cache, reordered

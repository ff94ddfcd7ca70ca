"""From results.csv rows to what a reader looks at: summary.json, Markdown tables and PNG plots in the style of
the paper's Figures 4-7 (mean over draws with a 95% bootstrap band, the all-zeros reference as a line)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_emo.emotions import PRESENT
from edge_emo.experiment.runner import CATEGORICAL, METRICS, PER_EMOTION, write_atomic
from edge_emo.experiment.stats import LEVEL, MIN_FOR_INTERVAL, describe, describe_folds

# Model order in tables and plots, and what each name means.
MODELS = {
    "ssl": "SSL: head on the frozen pretrained backbone",
    "ssl_loss_all": "SSL, pretrained with the loss on all frames",
    "ssl_loss_masked": "SSL, pretrained with the loss on masked frames only",
    "ssl_full": "SSL, whole network fine-tuned",
    "baseline": "baseline: same network from scratch",
    "ridge": "eGeMAPS functionals + ridge",
}
# Paired differences reported per budget (first minus second, on the draws both have).
PAIRS = (
    ("ssl", "baseline"),
    ("ssl", "ridge"),
    ("baseline", "ridge"),
    ("ssl_loss_all", "ssl"),
    ("ssl_loss_masked", "ssl"),
    ("ssl_full", "ssl"),
    ("ssl_full", "baseline"),
    ("ssl_full", "ridge"),
)
TITLES = {
    "acc4": "4-class accuracy",
    "mae": "MAE",
    "macro_f1": "macro-F1",
    "f1": "F1",
    "uar": "readout UAR",
    "wa": "readout weighted accuracy",
    "false_cue_neutral": "false cues on neutral clips",
    "false_cue_ordinary": "false cues on ordinary speech (clips)",
}


def describe_finite(values, describe=describe) -> dict | None:
    """`describe` of the values that are not NaN (no neutral clip, no ordinary speech, a row from before the
    column existed); None when none is."""
    v = [x for x in values if np.isfinite(x)]
    return describe(v) if v else None


def summarise(
    rows: list[dict], fold: str, budgets: list[int], draws: int, emotions, zeros: dict, describe=describe
) -> dict:
    """Per model and budget: every metric described over draws (with `describe`); per pair: the paired
    differences."""
    rows = [r for r in rows if r["fold"] == fold and r["budget"] in budgets and r["draw"] < draws]
    by = defaultdict(list)
    for r in rows:
        by[r["model"], r["budget"]].append(r)
    models = {}
    for m in [m for m in MODELS if any(k[0] == m for k in by)]:
        models[m] = {}
        for b in budgets:
            group = by.get((m, b))
            if not group:
                continue
            entry = {k: describe([r[k] for r in group]) for k in METRICS}
            entry.update(
                {k: describe_finite([r.get(k, np.nan) for r in group], describe) for k in CATEGORICAL}
            )
            entry["per_emotion"] = {
                e: {k: describe([r[f"{e}_{k}"] for r in group]) for k in PER_EMOTION} for e in emotions
            }
            models[m][str(b)] = entry
    differences = {}
    for a, b in PAIRS:
        if a not in models or b not in models:
            continue
        diff = {}
        for budget in budgets:
            left = {r["draw"]: r for r in by.get((a, budget), [])}
            right = {r["draw"]: r for r in by.get((b, budget), [])}
            paired = sorted(set(left) & set(right))
            if paired:
                diff[str(budget)] = {k: describe([left[d][k] - right[d][k] for d in paired]) for k in METRICS}
        differences[f"{a} - {b}"] = diff
    return {"budgets": budgets, "zeros": zeros, "models": models, "differences": differences}


def _mean_std(d: dict) -> str:
    return f"{d['mean']:.3f}" if d["std"] is None else f"{d['mean']:.3f} ± {d['std']:.3f}"


def f1_table(summary: dict) -> str:
    """The paper's Table 1: F1 per emotion at the largest budget, mean ± std over draws, all-zeros beside."""
    top = str(summary["budgets"][-1])
    unit = summary.get("unit", "draw")
    models = [m for m in summary["models"] if top in summary["models"][m]]
    emotions = list(summary["zeros"]["per_emotion"])
    n = {m: summary["models"][m][top]["macro_f1"]["n"] for m in models}
    lines = [
        f"F1 per emotion with {top} labeled clips (mean ± std over {unit}s; present = intensity >= {PRESENT})",
        "",
        "| emotion | "
        + " | ".join(f"{m} ({n[m]} {unit}{'s' * (n[m] != 1)})" for m in models)
        + " | all-zeros |",
        "|---" * (len(models) + 2) + "|",
    ]
    for e in emotions:
        cells = [_mean_std(summary["models"][m][top]["per_emotion"][e]["f1"]) for m in models]
        lines.append(f"| {e} | " + " | ".join(cells) + f" | {summary['zeros']['per_emotion'][e]['f1']:.3f} |")
    for k in METRICS:
        cells = [_mean_std(summary["models"][m][top][k]) for m in models]
        lines.append(f"| **{TITLES[k]}** | " + " | ".join(cells) + f" | {summary['zeros'][k]:.3f} |")
    for k in CATEGORICAL:
        if k == "false_cue_ordinary" and summary["zeros"].get(k) is None:
            continue  # no --ordinary speech
        cells = [_with_interval(summary["models"][m][top].get(k), k) for m in models]
        lines.append(
            f"| **{TITLES[k]}** | " + " | ".join(cells) + f" | {_number(summary['zeros'].get(k), k)} |"
        )
    lines += ["", CATEGORICAL_NOTE]
    return "\n".join(lines) + "\n"


CATEGORICAL_NOTE = (
    f"Readout: the strongest emotion if >= {PRESENT}, else neutral (truth: the same rule on the labels). "
    "UAR: mean recall over the classes in the truth; false cues: share of neutral clips (or of ordinary "
    "speech clips) with any intensity >= 0.5. All on the clipped 0..3 output. UAR and false-cue rows: "
    "mean ± std [95% interval] (n < 2: no interval)."
)


# What stands for a value that could not be measured.
MISSING = {"false_cue_neutral": "no neutral clips", "false_cue_ordinary": "no --ordinary speech"}


def _number(x, key: str = "") -> str:
    return MISSING.get(key, "-") if x is None else f"{x:.3f}"


def _with_interval(d: dict | None, key: str = "") -> str:
    """'0.412 ± 0.051 [0.331, 0.493]' from a `describe` dict; for None, what was missing."""
    if d is None:
        return _number(None, key)
    ci = "" if d["ci95"] is None else f" [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"
    return _mean_std(d) + ci


def difference_table(summary: dict) -> str:
    """Per pair and budget: mean, std and 95% bootstrap interval of the paired difference (first - second)."""
    unit = summary.get("unit", "draw")
    if unit == "fold":
        interval = f"{LEVEL:.0%} Student-t interval of the mean over the folds"
        few = ""
    else:
        interval = f"{LEVEL:.0%} bootstrap interval of the mean"
        few = (
            f" With fewer than {MIN_FOR_INTERVAL} draws no interval is given ([n < 5]): a bootstrap of so few "
            "values is far too narrow."
        )
    lines = [
        f"Paired differences over {unit}s (first model minus second, same labeled clips): mean ± std "
        f"[{interval}]. Higher is better for macro-F1 and accuracy, lower for MAE; an interval that holds 0 "
        f"shows no difference these {unit}s can resolve.{few}",
    ]
    for pair, per_budget in summary["differences"].items():
        lines += [
            "",
            f"**{pair}**",
            "",
            f"| labels | {unit}s | " + " | ".join(TITLES[k] for k in METRICS) + " |",
            "|---" * (len(METRICS) + 2) + "|",
        ]
        for b, d in per_budget.items():
            cells = []
            for k in METRICS:
                x = d[k]
                ci = " [n < 5]" if x["ci95"] is None else f" [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"
                cells.append(f"{x['mean']:+.3f}" + ("" if x["std"] is None else f" ± {x['std']:.3f}") + ci)
            lines.append(f"| {b} | {d['acc4']['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, summary: dict) -> list[Path]:
    """summary.json, table1.md, differences.md and the plots; every file written atomically."""
    written = []
    for name, text in [
        ("summary.json", json.dumps(summary, indent=1) + "\n"),
        ("table1.md", f1_table(summary)),
        ("differences.md", difference_table(summary)),
    ]:
        write_atomic(run_dir / name, text)
        written.append(run_dir / name)
    return written + plot_all(run_dir, summary)


def plot_all(run_dir: Path, summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emotions = list(summary["zeros"]["per_emotion"])
    out = []
    for metric in METRICS:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        _curves(ax, summary, lambda e, k=metric: e[k], summary["zeros"][metric])
        ax.set_title(f"Overall {TITLES[metric]} vs labeled clips")
        ax.set_ylabel(TITLES[metric])
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(_save(fig, run_dir / f"{metric}_overall.png"))
    for metric in PER_EMOTION:
        fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
        for ax, e in zip(axes.flat, emotions):
            zero = summary["zeros"]["per_emotion"][e][metric]
            _curves(ax, summary, lambda x, e=e, k=metric: x["per_emotion"][e][k], zero)
            ax.set_title(e)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
        fig.suptitle(f"{TITLES[metric]} per emotion vs labeled clips")
        fig.tight_layout(rect=(0, 0.09, 1, 1))
        out.append(_save(fig, run_dir / f"{metric}_per_emotion.png"))
    if summary["differences"].get("ssl - baseline"):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, metric in zip(axes, METRICS):
            _difference(ax, summary["differences"], metric, summary["budgets"])
        fig.suptitle(f"Paired differences with {LEVEL:.0%} bootstrap intervals (same labeled clips)")
        fig.tight_layout()
        out.append(_save(fig, run_dir / "differences.png"))
    plt.close("all")
    return out


def _curves(ax, summary: dict, pick, zero: float) -> None:
    for m, per_budget in summary["models"].items():
        xs = [int(b) for b in per_budget]
        stats = [pick(per_budget[b]) for b in per_budget]
        mean = np.array([s["mean"] for s in stats])
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=f"{m} ({MODELS[m]})")
        if all(s["ci95"] is not None for s in stats):
            lo, hi = np.array([s["ci95"] for s in stats]).T
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.axhline(zero, color="k", linestyle="--", linewidth=1, label="all-zeros predictor")
    _budget_axis(ax, summary["budgets"])


def _budget_axis(ax, budgets: list[int]) -> None:
    """Log-scaled label counts, ticked at the budgets themselves."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("labeled clips")
    ax.grid(alpha=0.3)


def _difference(ax, differences: dict, metric: str, budgets: list[int]) -> None:
    for pair in ("ssl - baseline", "ssl - ridge", "ssl_full - baseline"):
        per_budget = differences.get(pair)
        if not per_budget:
            continue
        xs = [int(b) for b in per_budget]
        (line,) = ax.plot(
            xs, [d[metric]["mean"] for d in per_budget.values()], marker="o", markersize=3, label=pair
        )
        if all(d[metric]["ci95"] is not None for d in per_budget.values()):
            lo, hi = np.array([d[metric]["ci95"] for d in per_budget.values()]).T
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.axhline(0, color="k", linewidth=1)
    _budget_axis(ax, budgets)
    ax.set_title(f"{TITLES[metric]} difference" + (" (lower is better)" if metric == "mae" else ""))
    ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())
    return path


def report_run(
    run_dir: Path, results, fold, budgets: list[int], draws: int, notes: list[str], settings: dict
) -> dict:
    """Summarise a finished (or resumed) run of one fold and write every report file; returns the summary."""
    zeros = _zeros(fold.eval.labels, fold.eval.emotions, [fold])
    summary = summarise(results.rows, fold.name, budgets, draws, fold.eval.emotions, zeros)
    summary = {
        "settings": settings,
        "n_train_clips": len(fold.train),
        "n_eval_clips": len(fold.eval),
        "f1_present_threshold": PRESENT,
        "interval": f"{LEVEL:.0%} percentile bootstrap of the mean over draws",
        "notes": notes,
        **summary,
    }
    write_report(run_dir, summary)
    return summary


def summarise_cv(rows: list[dict], folds, budgets: list[int], draws: int) -> dict:
    """A speaker cross-validation: each fold's value of a metric is the mean over its draws, and the folds
    are the unit of the statistics (mean, std, interval over folds; differences paired by fold).

    `budgets` are capped to the largest fold's training clips; a fold with fewer clips uses all of its own
    (so the last budget may mean "all training clips" with a few clips less in some folds)."""
    emotions = folds[0].eval.emotions
    keys = [*METRICS, *(f"{e}_{k}" for e in emotions for k in PER_EMOTION), *CATEGORICAL]
    fold_rows = []
    for i, fold in enumerate(folds):
        for b in budgets:
            by = defaultdict(list)
            for r in rows:
                if r["fold"] == fold.name and r["budget"] == min(b, len(fold.train)) and r["draw"] < draws:
                    by[r["model"]].append(r)
            for model, group in by.items():
                mean = {k: _finite_mean([r.get(k, np.nan) for r in group]) for k in keys}
                fold_rows.append({"fold": "cv", "budget": b, "draw": i, "model": model, **mean})
    # Every clip is evaluated exactly once over the folds: the all-zeros reference on all of them.
    truth = np.concatenate([f.eval.labels for f in folds])
    zeros = _zeros(truth, emotions, folds)
    summary = summarise(fold_rows, "cv", budgets, len(folds), emotions, zeros, describe_folds)
    summary["unit"] = "fold"
    summary["per_fold"] = {
        r["model"]: {} for r in fold_rows
    }  # model -> budget -> one entry per fold: what each fold's models scored (mean over its draws)
    for r in fold_rows:
        entry = {"fold": folds[r["draw"]].name, **{k: _or_none(r[k]) for k in (*METRICS, *CATEGORICAL)}}
        summary["per_fold"][r["model"]].setdefault(str(r["budget"]), []).append(entry)
    return summary


def _finite_mean(values: list[float]) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _zeros(truth: np.ndarray, emotions, folds) -> dict:
    """The all-zeros reference: it reads every clip neutral, so it never gives a false cue."""
    from edge_emo.metrics import scores

    zeros = scores(truth, np.zeros_like(truth), emotions)
    zeros["false_cue_ordinary"] = 0.0 if any(f.ordinary for f in folds) else None
    return zeros


def fold_table(summary: dict) -> str:
    """Per model at the largest budget: each fold's macro-F1, UAR, weighted accuracy and false-cue rates
    (mean over the fold's draws), then the mean over folds with its 95% Student-t interval."""
    top = str(summary["budgets"][-1])
    keys = ("macro_f1", *CATEGORICAL)
    lines = [
        f"Per fold, {top} labeled clips (each fold: mean over its draws; last row: mean ± std over folds "
        "[95% Student-t interval])",
    ]
    for model, per_budget in summary["per_fold"].items():
        if top not in per_budget:
            continue
        lines += [
            "",
            f"**{model}**",
            "",
            "| fold | " + " | ".join(TITLES[k] for k in keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        for entry in per_budget[top]:
            lines.append(f"| {entry['fold']} | " + " | ".join(_number(entry[k], k) for k in keys) + " |")
        stats = summary["models"][model][top]
        lines.append("| **mean** | " + " | ".join(_with_interval(stats.get(k), k) for k in keys) + " |")
    zeros = summary["zeros"]
    lines += ["", "all-zeros: " + ", ".join(f"{TITLES[k]} {_number(zeros.get(k), k)}" for k in keys)]
    return "\n".join(lines) + "\n"


def report_cv(
    run_dir: Path, results, folds, budgets: list[int], draws: int, notes: list[str], settings: dict
) -> dict:
    """Summarise a speaker cross-validation over its folds and write every report file; returns the summary."""
    summary = summarise_cv(results.rows, folds, budgets, draws)
    summary = {
        "settings": settings,
        "folds": [
            {
                "name": f.name,
                "eval_speakers": sorted(set(f.eval.speakers)),
                "n_train_clips": len(f.train),
                "n_eval_clips": len(f.eval),
            }
            for f in folds
        ],
        "f1_present_threshold": PRESENT,
        "interval": "95% Student-t interval of the mean over folds (each fold: mean over its draws)",
        "notes": notes,
        **summary,
    }
    write_report(run_dir, summary)
    write_atomic(run_dir / "folds.md", fold_table(summary))
    return summary


def macro_f1_lines(summary: dict, budgets: Sequence[int] | None = None) -> list[str]:
    """One line per model and budget (all, or `budgets`): mean macro-F1 with its interval, and the
    all-zeros predictor's, for the console."""
    unit = summary.get("unit", "draw")
    lines = []
    for model, per_budget in summary["models"].items():
        for b, entry in per_budget.items():
            if budgets is not None and int(b) not in budgets:
                continue
            d = entry["macro_f1"]
            ci = "" if d["ci95"] is None else f" (95% interval {d['ci95'][0]:.3f} to {d['ci95'][1]:.3f})"
            line = f"{model}, {b} labels: macro-F1 {d['mean']:.3f}{ci} over {d['n']} {unit}(s)"
            for k in ("uar", "false_cue_neutral", "false_cue_ordinary"):
                if entry.get(k) is not None or k == "false_cue_neutral":
                    line += f"; {TITLES[k]} {_with_interval(entry.get(k), k)}"
            lines.append(line)
    return [*lines, f"all-zeros: macro-F1 {summary['zeros']['macro_f1']:.3f}"]

"""`edge-emo experiment` from its options: the folds (one speaker split, a separate evaluation corpus or a
speaker cross-validation), the settings a resumed run must match, the run, and the console summary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_emo.data.corpus import load_corpus
from edge_emo.data.gain import parse_gain, parse_gains
from edge_emo.data.sources import training_spec
from edge_emo.data.splits import speaker_folds
from edge_emo.experiment.report import macro_f1_lines, report_cv, report_run
from edge_emo.experiment.runner import ExperimentConfig, Fold, capped_budgets, parse_budgets, run_experiment
from edge_emo.features import FeatureSpec


@dataclass
class ExperimentOptions:
    """What `edge-emo experiment` was asked to do (see its --help for each)."""

    data_dir: Path
    out: Path
    unlabeled: list[Path] | None = None
    eval_dir: Path | None = None
    init: Path | None = None
    budgets: str = "20,35,...,200,400,...,1200"
    draws: int = 20
    baseline_draws: int = 5
    baseline_until: int = 0
    seed: int = 0
    feature_set: str | None = None
    epochs: int = 30
    pos_weight: float = 1.0
    lr: float = 1e-3
    pretrain_epochs: int = 12
    loss_on: str = "masked"
    loss_variant: bool = False
    full_finetune_from: int = 0
    reference: bool = True
    hidden: int = 256
    layers: int = 2
    split_seed: int = 0
    workers: int = 0
    cv: str | None = None  # "speakers"
    folds: int = 4
    train_gains: str | None = None
    eval_gain: str | None = None
    ordinary: list[Path] | None = None

    def check(self) -> None:
        if self.init is not None and self.loss_variant:
            raise ValueError("--loss-variant pretrains with both losses: it cannot be used with --init")
        if self.draws < 1 or self.baseline_draws < 0:
            raise ValueError("--draws must be >= 1 and --baseline-draws >= 0")
        if self.cv and self.eval_dir is not None:
            raise ValueError(
                "--cv speakers evaluates on DATA_DIR's own speakers: it cannot be used with --eval"
            )
        if (self.train_gains or self.eval_gain) and not self.cv:
            raise ValueError("--train-gains and --eval-gain need --cv speakers")


def build_folds(o: ExperimentOptions, spec: FeatureSpec) -> list[Fold]:
    """The folds of the run, labeled clips checked; a corpus without audio gets no functionals reference."""
    data_dir, eval_dir = o.data_dir, o.eval_dir
    if o.cv:
        clips = load_corpus(data_dir, spec)
        heard = load_corpus(data_dir, spec, gain=parse_gain(o.eval_gain)) if o.eval_gain else clips
        renditions = [load_corpus(data_dir, spec, gain=g) for g in parse_gains(o.train_gains)]
        fold_list = []
        for i, held_out in enumerate(speaker_folds(clips.speakers, o.folds, o.split_seed), 1):
            held = np.isin(clips.speakers, held_out)
            train, val = clips.subset(np.flatnonzero(~held)), heard.subset(np.flatnonzero(held))
            fold = Fold(f"cv{i}", train, val, data_dir, data_dir)
            fold.train_renditions = [r.subset(np.flatnonzero(~held)) for r in renditions]
            fold_list.append(fold)
    elif eval_dir is None:
        train, val = (load_corpus(data_dir, spec, s, o.split_seed) for s in ("train", "val"))
        fold_list = [Fold("val", train, val, data_dir, data_dir)]
    else:
        fold_list = [
            Fold("eval", load_corpus(data_dir, spec), load_corpus(eval_dir, spec), data_dir, eval_dir)
        ]
    fold = fold_list[0]
    for clips, where in [(fold.train, data_dir), (fold.eval, eval_dir or data_dir)]:
        if clips.labels is None:
            raise ValueError(f"{where}: the experiment needs labeled clips (labels.csv)")
    if not (data_dir / "labels.csv").is_file() or not ((eval_dir or data_dir) / "labels.csv").is_file():
        for f in fold_list:
            f.train_dir = f.eval_dir = None  # no audio: no eGeMAPS functionals reference
    ordinary_sets = [load_corpus(d, spec) for d in o.ordinary or []]
    audio = all((d / "manifest.csv").is_file() or (d / "labels.csv").is_file() for d in o.ordinary or [])
    for f in fold_list:
        f.ordinary = ordinary_sets
        f.ordinary_dirs = list(o.ordinary or []) if audio and f.eval_dir is not None else []
    return fold_list


def _settings(o: ExperimentOptions, spec: FeatureSpec) -> dict:
    """What the data of the run is: a resumed run must have the same."""
    return {
        "data": str(o.data_dir.resolve()),
        "eval": str(o.eval_dir.resolve())
        if o.eval_dir
        else f"{o.folds}-fold speaker cross-validation (split seed {o.split_seed})"
        if o.cv
        else f"validation speakers (split seed {o.split_seed})",
        "unlabeled": [str(d.resolve()) for d in o.unlabeled or []],
        "feature_set": spec.name,
        "init": str(o.init.resolve()) if o.init else None,
        "split_seed": o.split_seed,
        # Only when used, so that runs from before these options resume as they were.
        **({"train_gains": o.train_gains} if o.train_gains else {}),
        **({"eval_gain": o.eval_gain} if o.eval_gain else {}),
        **({"ordinary": [str(d.resolve()) for d in o.ordinary]} if o.ordinary else {}),
    }


def run(o: ExperimentOptions, log: Callable[[str], None], say: Callable[[str], None]) -> None:
    """Run (or resume) the experiment in o.out, write its reports, and `say` the summary lines."""
    from edge_emo.train.checkpoint import load_checkpoint

    o.check()
    budget_list = parse_budgets(o.budgets)
    pre = load_checkpoint(o.init) if o.init else None
    spec = training_spec(pre.spec if pre else None, o.feature_set, [o.data_dir], False)
    fold_list = build_folds(o, spec)
    config = ExperimentConfig(
        budgets=budget_list,
        draws=o.draws,
        baseline_draws=min(o.baseline_draws, o.draws),  # "the baseline on up to 5 of the draws"
        epochs=o.epochs,
        lr=o.lr,
        pretrain_epochs=o.pretrain_epochs,
        loss_on=o.loss_on,
        loss_variant=o.loss_variant,
        full_from=o.full_finetune_from,
        hidden=pre.model.config.hidden if pre else o.hidden,
        layers=pre.model.config.layers if pre else o.layers,
        seed=o.seed,
        reference=o.reference,
        workers=o.workers or os.cpu_count() or 1,
        pos_weight=o.pos_weight,
        baseline_until=o.baseline_until,
    )
    unlabeled_sets = [load_corpus(d, spec) for d in o.unlabeled or []]
    settings = _settings(o, spec)
    results, budgets, notes = run_experiment(fold_list, unlabeled_sets, config, o.out, settings, pre, log)
    notes = list(dict.fromkeys(notes))  # every fold caps the same budgets
    for note in notes:
        say(f"note: {note}")
    if o.cv:
        cv_budgets, _ = capped_budgets(config.budgets, max(len(f.train) for f in fold_list))
        summary = report_cv(
            o.out, results, fold_list, cv_budgets, o.draws, notes, {**settings, **vars(config)}
        )
        for line in macro_f1_lines(summary):
            say(line)
        say(f"wrote {o.out}/results.csv, summary.json, table1.md, folds.md, differences.md and plots")
        return
    fold = fold_list[0]
    summary = report_run(
        o.out, results, fold, budgets[fold.name], o.draws, notes, {**settings, **vars(config)}
    )
    ends = (budgets[fold.name][0], budgets[fold.name][-1])
    for line in macro_f1_lines(summary, ends):
        say(line)
    diff = summary["differences"].get("ssl - baseline", {})
    for b in ends:
        if str(b) in diff:
            d = diff[str(b)]["macro_f1"]
            ci = "" if d["ci95"] is None else f" (95% interval {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"
            say(f"{b} labels: SSL minus baseline macro-F1 {d['mean']:+.3f}{ci}")
    say(f"wrote {o.out}/results.csv, summary.json, table1.md, differences.md and plots")

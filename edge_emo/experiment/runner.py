"""Plan and run the jobs of an experiment; every finished job is one row of results.csv.

For every label budget N and draw k, one set of N labeled clips is drawn from the training clips (seeded by
seed, N and k) and the same clips train every model:

- `ssl`: the 6-unit head on the frozen pretrained backbone. A frozen backbone gives each clip a fixed
  embedding, so every clip is embedded once and draws cost only a head fit: 20+ draws are cheap.
- `ssl_loss_<other>` (with `loss_variant`): the same, on a backbone pretrained with the other loss
  (masked frames only vs all frames).
- `ridge`: eGeMAPS functionals + ridge regression, the classic openSMILE reference (audio corpora only).
- `baseline`: the same network from scratch, every weight trained; the expensive part, so it runs on the
  first `baseline_draws` draws only, in a pool of worker processes with one math thread each.
- `ssl_full` (budgets >= `full_from`): every weight fine-tuned, starting from the pretrained network.

All are scored on the same evaluation clips, as the device shows them (clipped to 0..3): the intensity
metrics, the categorical readout (UAR, weighted accuracy) and the false-cue rate on neutral clips; with
ordinary (unlabeled) speech given, also every model's false-cue rate on it (clip level). A row already in
results.csv is never recomputed, so an interrupted run resumes where it stopped; results.csv is rewritten
atomically after every job.
A `Fold` is one (training clips, evaluation clips) pair; a speaker cross-validation adds more folds.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge_emo.data.clips import ClipSet
from edge_emo.metrics import cue_rates, scores
from edge_emo.progress import stage
from edge_emo.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edge_emo.train.finetune import (
    FinetuneConfig,
    embed,
    finetune_all,
    fit_head,
    label_draw,
    predict,
    train_baseline,
)
from edge_emo.train.pretrain import PretrainConfig, pretrain

CHEAP = ("ssl", "ssl_loss_all", "ssl_loss_masked", "ridge")
EXPENSIVE = ("baseline", "ssl_full")
METRICS = ("macro_f1", "acc4", "mae")
# The categorical readout and false cues; NaN where there is nothing to measure (no neutral clip, no ordinary
# speech, or a row of a run from before these columns existed).
CATEGORICAL = ("uar", "wa", "false_cue_neutral", "false_cue_ordinary")
PER_EMOTION = ("f1", "acc4", "mae")


@dataclass
class Fold:
    name: str
    train: ClipSet
    eval: ClipSet
    # Audio corpus folders the clips come from, for the functionals reference (None: not audio, no reference).
    train_dir: Path | None = None
    eval_dir: Path | None = None
    # The training clips heard otherwise (e.g. through other microphone gains), same clips in the same order:
    # the models that train the whole network take each clip from a random version every epoch.
    train_renditions: list[ClipSet] = field(default_factory=list)
    # Ordinary speech (unlabeled, taken as neutral) every model of the fold is also run on, and its audio
    # folders for the functionals reference: each model's false-cue rate on it is reported.
    ordinary: list[ClipSet] = field(default_factory=list)
    ordinary_dirs: list[Path] = field(default_factory=list)

    @property
    def scored_features(self) -> list[np.ndarray]:
        """What the fold's models predict: the evaluation clips, then the ordinary speech."""
        return list(self.eval.features) + [f for o in self.ordinary for f in o.features]


@dataclass
class ExperimentConfig:
    budgets: list[int] = field(default_factory=lambda: parse_budgets(PAPER_BUDGETS))
    draws: int = 20
    baseline_draws: int = 5
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    pretrain_epochs: int = 12
    loss_on: str = "masked"
    loss_variant: bool = False
    full_from: int = 0  # 0: never fine-tune the whole pretrained network
    hidden: int = 256
    layers: int = 2
    seed: int = 0
    reference: bool = True
    workers: int = 2
    pos_weight: float = 1.0
    baseline_until: int = 0  # train the baseline only at budgets up to this (0: at every budget)

    def settings(self) -> dict:
        """What determines the value of a row: a resumed run must have the same (budgets and draws may grow)."""
        scope = (
            "budgets",
            "draws",
            "baseline_draws",
            "baseline_until",
            "full_from",
            "loss_variant",
            "reference",
        )
        scope += ("workers",)
        out = {k: v for k, v in asdict(self).items() if k not in scope}
        if self.pos_weight == 1.0:  # runs from before the option existed resume as they were
            del out["pos_weight"]
        return out


PAPER_BUDGETS = "20,35,...,200,400,...,1200"


def parse_budgets(text: str) -> list[int]:
    """'20,35,...,200,400,...,1200' -> 20, 35, 50, ..., 200, 400, 600, ..., 1200: `...` continues the step of
    the two numbers before it up to the number after it."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    out: list[int] = []
    for i, p in enumerate(parts):
        if p == "...":
            if len(out) < 2 or i + 1 >= len(parts) or parts[i + 1] == "...":
                raise ValueError(f"--budgets {text!r}: '...' needs two numbers before it and one after")
            step, stop = out[-1] - out[-2], _budget(parts[i + 1], text)
            if step <= 0 or (stop - out[-1]) % step:
                raise ValueError(
                    f"--budgets {text!r}: {stop} is not reached in steps of {step} from {out[-1]}"
                )
            out.extend(range(out[-1] + step, stop, step))
        else:
            out.append(_budget(p, text))
    if not out or sorted(set(out)) != out:
        raise ValueError(f"--budgets {text!r}: give increasing label counts, e.g. {PAPER_BUDGETS}")
    return out


def _budget(p: str, text: str) -> int:
    if not p.isdigit() or int(p) < 1:
        raise ValueError(f"--budgets {text!r}: {p!r} is not a positive whole number")
    return int(p)


def capped_budgets(budgets: list[int], n_train: int) -> tuple[list[int], list[str]]:
    """Budgets above the number of training clips become that number (once), with a note saying so."""
    out = sorted({min(b, n_train) for b in budgets})
    over = [b for b in budgets if b > n_train]
    notes = []
    if over:
        notes.append(
            f"label budget(s) {', '.join(map(str, over))} exceed the {n_train} training clips: capped to {n_train} "
            "(every draw of it holds the same clips; only training randomness differs)"
        )
    return out, notes


def draw_seed(seed: int, budget: int, draw: int) -> int:
    """The seed of one draw: which clips, and the training randomness of every model trained on them."""
    return int(np.random.SeedSequence([seed, budget, draw]).generate_state(1)[0])


@dataclass(frozen=True)
class Job:
    fold: str
    budget: int
    draw: int
    model: str


def plan(fold: Fold, budgets: list[int], config: ExperimentConfig) -> list[Job]:
    """Every job of a fold, draw by draw (an interrupted run still has whole curves), largest budgets first."""
    cheap = ["ssl"]
    if config.loss_variant:
        cheap.append(variant_name(config.loss_on))
    if config.reference and fold.train_dir is not None and fold.eval_dir is not None:
        cheap.append("ridge")
    jobs = []
    for d in range(config.draws):
        for b in sorted(budgets, reverse=True):
            jobs += [Job(fold.name, b, d, m) for m in cheap]
            if d < config.baseline_draws:
                if not config.baseline_until or b <= config.baseline_until:
                    jobs.append(Job(fold.name, b, d, "baseline"))
                if config.full_from and b >= config.full_from:
                    jobs.append(Job(fold.name, b, d, "ssl_full"))
    return jobs


def variant_name(loss_on: str) -> str:
    return "ssl_loss_" + ("all" if loss_on == "masked" else "masked")


def other_loss(loss_on: str) -> str:
    return "all" if loss_on == "masked" else "masked"


# ---------------------------------------------------------------------------------------------- results.csv


def columns(emotions: tuple[str, ...]) -> list[str]:
    head = ["fold", "budget", "draw", "model", "n_labeled", "n_eval", "seconds", *METRICS]
    return head + [f"{e}_{m}" for e in emotions for m in PER_EMOTION] + list(CATEGORICAL)


class Results:
    """The rows of results.csv, kept in memory and rewritten atomically after every added row."""

    def __init__(self, path: Path, emotions: tuple[str, ...]):
        self.path, self.columns = path, columns(emotions)
        self.rows: list[dict] = []
        if path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                # A run from before the categorical columns resumes: its rows lack them (NaN).
                if reader.fieldnames not in (self.columns, self.columns[: -len(CATEGORICAL)]):
                    raise ValueError(f"{path}: columns differ from this experiment's; use another --out")
                self.rows = [_typed({**dict.fromkeys(CATEGORICAL, ""), **r}) for r in reader]
        self.done = {(r["fold"], r["budget"], r["draw"], r["model"]) for r in self.rows}

    def has(self, job: Job) -> bool:
        return (job.fold, job.budget, job.draw, job.model) in self.done

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.done.add((row["fold"], row["budget"], row["draw"], row["model"]))
        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.path, out.getvalue())


def _typed(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k in ("fold", "model"):
            out[k] = v
        elif k in ("budget", "draw", "n_labeled", "n_eval"):
            out[k] = int(v)
        else:
            out[k] = float(v) if v not in ("", None) else float("nan")
    return out


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file under a temporary name and rename it: readers see the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def result_row(
    job: Job, n_labeled: int, truth: np.ndarray, pred: np.ndarray, emotions, seconds: float
) -> dict:
    """The row of one model; `pred` holds its predictions of the evaluation clips, then of the ordinary
    speech (`Fold.scored_features`), if any."""
    s = scores(truth, pred[: len(truth)], emotions)
    row = {"fold": job.fold, "budget": job.budget, "draw": job.draw, "model": job.model}
    row.update(n_labeled=n_labeled, n_eval=len(truth), seconds=round(seconds, 3))
    row.update({m: s[m] for m in METRICS})
    for e in emotions:
        row.update({f"{e}_{m}": s["per_emotion"][e][m] for m in PER_EMOTION})
    ordinary = cue_rates(pred[len(truth) :], emotions)["any"]["rate"]
    row.update(uar=s["uar"], wa=s["wa"])
    row["false_cue_neutral"] = float("nan") if s["false_cue_neutral"] is None else s["false_cue_neutral"]
    row["false_cue_ordinary"] = float("nan") if ordinary is None else ordinary
    return row


# --------------------------------------------------------------------------------------------------- runner


def run_experiment(
    folds: list[Fold],
    unlabeled: list[ClipSet],
    config: ExperimentConfig,
    run_dir: Path,
    settings: dict,
    init: Checkpoint | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Results, dict[str, list[int]], list[str]]:
    """Run every job not yet in run_dir/results.csv. Returns the results, the (capped) budgets per fold and
    notes on deviations. `settings` describe the data; with the config they must match a resumed run's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run_dir, {**settings, **config.settings()})
    results = Results(run_dir / "results.csv", folds[0].train.emotions)
    budgets, notes, todo = {}, [], []
    for fold in folds:
        budgets[fold.name], fold_notes = capped_budgets(config.budgets, len(fold.train))
        notes += [n for n in fold_notes if n not in notes]
        todo += [j for j in plan(fold, budgets[fold.name], config) if not results.has(j)]
    for note in notes:  # now, not only in the summary at the end
        log(f"note: {note}")
    if not todo:
        log(f"{run_dir}: every job is already in results.csv")
        return results, budgets, notes
    log(f"{len(todo)} jobs to run ({len(results.rows)} rows already in results.csv)")
    for fold in folds:
        _run_fold(
            fold, [j for j in todo if j.fold == fold.name], unlabeled, config, run_dir, init, results, log
        )
    return results, budgets, notes


def _check_settings(run_dir: Path, settings: dict) -> None:
    path = run_dir / "run.json"
    settings = json.loads(json.dumps(settings, default=str))
    if path.is_file():
        before = json.loads(path.read_text())["settings"]
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            what = "; ".join(f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
            raise ValueError(f"{run_dir} holds a run with other settings ({what}); use another --out")
    else:
        write_atomic(path, json.dumps({"settings": settings}, indent=2) + "\n")


def _run_fold(fold, jobs, unlabeled, config, run_dir, init, results, log) -> None:
    """One pool of workers runs pretraining and the expensive models side by side: baselines need no
    pretrained network, so both cores stay busy from the start. As soon as a pretrained network is there,
    the main process fits its cheap heads and the pool gets its whole-network fine-tuning jobs."""
    pretrained, missing = _pretrained(fold, config, run_dir, init, {j.model for j in jobs})
    draws = {}
    for job in jobs:
        seed = draw_seed(config.seed, job.budget, job.draw)
        draws[job] = (label_draw(len(fold.train), job.budget, seed), seed)
    corpora = [fold.train, *unlabeled]
    # Cost of each pool task in frames x epochs, for the ETA.
    frames = [len(f) for f in fold.train.features]
    cost = {("pretrain", loss): sum(c.n_frames for c in corpora) * config.pretrain_epochs for loss in missing}
    cost.update(
        {
            ("job", j): sum(frames[i] for i in draws[j][0]) * config.epochs
            for j in jobs
            if j.model in EXPENSIVE
        }
    )
    parallel = config.workers > 1 and len(cost) > 0
    if parallel:
        torch.set_num_threads(1)  # the workers have the cores; this process only fits heads meanwhile
    state = {"train": fold.train, "renditions": fold.train_renditions, "eval_features": fold.scored_features}
    with _pool(config.workers, state) if parallel else InlineExecutor(state) as pool:
        tasks: dict = {}  # future -> ("pretrain", loss) or ("job", job)

        def submit(tag: tuple, fn, *args) -> None:
            tasks[pool.submit(fn, *args)] = tag

        def ready(loss: str) -> None:
            """A pretrained network is there: fit its heads now, queue its whole-network fine-tuning."""
            heads = [j for j in jobs if j.model in CHEAP and _loss_of(j.model, config) == loss]
            _run_heads(fold, heads, pretrained[loss], config, draws, results, log)
            for job in jobs:
                if job.model == "ssl_full" and loss == config.loss_on:
                    submit(("job", job), _expensive_job, job, *draws[job], config, pretrained[loss])

        if missing:
            clips = sum(len(c) for c in corpora)
            log(
                f"pretraining ({' and '.join(missing)} loss) on {clips} clips, {config.pretrain_epochs} epochs"
            )
        for loss in missing:
            pconfig = PretrainConfig(epochs=config.pretrain_epochs, loss_on=loss, seed=config.seed)
            submit(("pretrain", loss), _pretrain_job, corpora, pconfig, config.hidden, config.layers)
        for job in jobs:
            if job.model == "baseline":
                submit(("job", job), _expensive_job, job, *draws[job], config, None)
        _run_ridge(fold, [j for j in jobs if j.model == "ridge"], draws, results, log)
        for loss in list(pretrained):
            ready(loss)

        def finished_tasks():
            while tasks:
                finished, _ = wait(tasks, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future, tasks.pop(future)

        # The bar counts tasks weighted by their cost (frames x epochs), so its rate and ETA are honest for
        # a mix of long pretraining and short fine-tuning; it stays on top of the running jobs' own bars.
        total = sum(cost.values())
        start, done_cost = time.perf_counter(), 0.0
        try:
            with stage(f"fold {fold.name}: pretraining and training", len(cost), "tasks") as advance:
                for k, (future, tag) in enumerate(finished_tasks(), 1):
                    done_cost += cost[tag]
                    advance(len(cost) * cost[tag] / total, f"fold {fold.name}: {k}/{len(cost)} tasks done")
                    eta = (time.perf_counter() - start) * (total - done_cost) / done_cost
                    note = f"[{k}/{len(cost)}, about {eta / 60:.0f} min left]"
                    if tag[0] == "pretrain":
                        loss, pretrained[tag[1]] = tag[1], future.result()
                        save_checkpoint(pretrained[loss], run_dir / _pretrained_file(fold, loss))
                        history = pretrained[loss].provenance["pretrain"]["loss_history"]
                        log(
                            f"{note} pretrained ({loss} loss): reconstruction loss {history[0]} -> {history[-1]}"
                        )
                        ready(loss)
                    else:
                        job, pred, seconds = future.result()
                        row = result_row(
                            job, len(draws[job][0]), fold.eval.labels, pred, fold.eval.emotions, seconds
                        )
                        results.add(row)
                        log(
                            f"{note} {job.model} budget {job.budget} draw {job.draw}: macro-F1 {row['macro_f1']:.3f}, "
                            f"acc4 {row['acc4']:.3f}, MAE {row['mae']:.3f} ({seconds:.0f} s)"
                        )
        except BaseException:  # Ctrl-C included: drop queued jobs; finished ones are in results.csv already
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _loss_of(model: str, config: ExperimentConfig) -> str | None:
    """The pretraining loss of the network a model's head sits on (None: no pretrained network)."""
    if model in ("ssl", "ssl_full"):
        return config.loss_on
    if model.startswith("ssl_loss_"):
        return model.removeprefix("ssl_loss_")
    return None


def _pretrained_file(fold: Fold, loss: str) -> str:
    return f"pretrained-{fold.name}-{loss}.safetensors"


def _pretrained(fold, config, run_dir, init, models) -> tuple[dict[str, Checkpoint], list[str]]:
    """The pretrained networks the jobs need, keyed by pretraining loss, from --init or from an earlier
    (interrupted) run of this folder, and the losses still to pretrain."""
    need = {_loss_of(m, config) for m in models} - {None}
    have: dict[str, Checkpoint] = {}
    if init is not None and config.loss_on in need:
        init.spec.check_compatible(fold.train.spec, "the --init checkpoint")
        have[config.loss_on] = init
    for loss in sorted(need - set(have)):
        if (run_dir / _pretrained_file(fold, loss)).is_file():
            have[loss] = load_checkpoint(run_dir / _pretrained_file(fold, loss))
    return have, sorted(need - set(have))


def _pretrain_job(corpora, pconfig, hidden, layers) -> Checkpoint:
    return pretrain(corpora, pconfig, hidden=hidden, layers=layers)


def _finetune_config(config: ExperimentConfig, seed: int) -> FinetuneConfig:
    return FinetuneConfig(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=seed,
        pos_weight=config.pos_weight,
    )


def _run_heads(fold, jobs, ckpt: Checkpoint, config, draws, results, log) -> None:
    """Heads on a frozen backbone: every clip is embedded once, each draw fits only the head."""
    if not jobs:
        return
    start = time.perf_counter()
    e_train = embed(ckpt.model, ckpt.norm, fold.train.features)
    e_eval = embed(ckpt.model, ckpt.norm, fold.scored_features)
    for job in jobs:
        t = time.perf_counter()
        idx, seed = draws[job]
        head = fit_head(
            copy.deepcopy(ckpt.model.head),
            e_train[idx],
            fold.train.labels[idx],
            _finetune_config(config, seed),
        )
        with torch.inference_mode():
            pred = head(torch.from_numpy(e_eval)).numpy()
        results.add(
            result_row(job, len(idx), fold.eval.labels, pred, fold.eval.emotions, time.perf_counter() - t)
        )
    log(f"{len(jobs)} {jobs[0].model} heads fitted in {time.perf_counter() - start:.0f} s")


def _run_ridge(fold, jobs, draws, results, log) -> None:
    if not jobs:
        return
    from edge_emo.experiment.reference import Ridge, corpus_functionals

    start = time.perf_counter()
    x_train = corpus_functionals(fold.train_dir, fold.train.names)
    x_eval = np.concatenate(
        [corpus_functionals(fold.eval_dir, fold.eval.names)]
        + [corpus_functionals(d, o.names) for d, o in zip(fold.ordinary_dirs, fold.ordinary)]
    )
    for job in jobs:
        t = time.perf_counter()
        idx = draws[job][0]
        pred = Ridge.fit(x_train[idx], fold.train.labels[idx]).predict(x_eval)
        results.add(
            result_row(job, len(idx), fold.eval.labels, pred, fold.eval.emotions, time.perf_counter() - t)
        )
    log(f"{len(jobs)} eGeMAPS functionals + ridge fits in {time.perf_counter() - start:.0f} s")


# Per worker process: the fold's clips, sent once when the worker starts.
_WORKER: dict = {}


def _init_worker(state: dict) -> None:
    torch.set_num_threads(1)  # the pool already uses every core; more threads per worker only contend
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (only the main process draws progress bars)
    _WORKER.update(state)


def _pool(workers: int, state: dict) -> ProcessPoolExecutor:
    # spawn, not fork: forking a process that already runs torch threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(state,))


class InlineExecutor(Executor):
    """workers=1: run each job at once in this process, behind the same interface as the pool."""

    def __init__(self, state: dict):
        _WORKER.update(state)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _expensive_job(job: Job, idx: np.ndarray, seed: int, config: ExperimentConfig, init: Checkpoint | None):
    start = time.perf_counter()
    clips = _WORKER["train"].subset(idx)
    renditions = [r.subset(idx) for r in _WORKER["renditions"]]
    fconfig = _finetune_config(config, seed)
    if job.model == "baseline":
        ckpt = train_baseline(clips, fconfig, config.hidden, config.layers, renditions)
    else:
        ckpt = finetune_all(init, clips, fconfig, renditions)
    return job, predict(ckpt, _WORKER["eval_features"]), time.perf_counter() - start

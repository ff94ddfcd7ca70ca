"""The `edge-emo` command line. Heavy modules are imported inside each command, so device commands
(listen, personalize, devices, bridge-monitor) never import torch."""

from __future__ import annotations

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

app = typer.Typer(
    help="Speech emotion recognition for wearables: train, export, listen, personalize.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.callback()
def main() -> None:
    """edge-emo command line."""


# Errors that bad input raises throughout edge-emo (all carry a one-line message naming the culprit).
INPUT_ERRORS = (ValueError, OSError)

SPLIT_HELP = "Speaker-disjoint part of labeled corpora: all, train (80% of speakers) or val (20%), chosen with --split-seed."
MOSEI_COVAREP_HELP = "CMU_MOSEI_COVAREP.csd to use as a corpus (with --mosei-labels)."
MOSEI_LABELS_HELP = "CMU_MOSEI_Labels.csd to use as a corpus (with --mosei-covarep)."


class FeatureSetChoice(str, Enum):
    egemaps = "egemaps"
    compare = "compare"
    covarep = "covarep"


def _spec(feature_set: str):
    if feature_set == "covarep":
        from edge_emo.data.mosei import covarep_spec

        return covarep_spec()
    from edge_emo.features import FeatureSet, spec_for

    return spec_for(FeatureSet(feature_set))


def _default_feature_set(data_dirs: list[Path], mosei: bool) -> str:
    from edge_emo.data.mosei import find_mosei

    return "covarep" if mosei or any(find_mosei(d) for d in data_dirs) else "egemaps"


def _corpora(data_dirs: list[Path], mosei_covarep: Path | None, mosei_labels: Path | None, spec, split, seed):
    """Every corpus named on the command line, as ClipSets of `spec` features."""
    from edge_emo.data.corpus import load_corpus
    from edge_emo.data.mosei import load_mosei

    corpora = [load_corpus(d, spec, split, seed) for d in data_dirs]
    if (mosei_covarep is None) != (mosei_labels is None):
        raise ValueError("--mosei-covarep and --mosei-labels go together")
    if mosei_covarep is not None:
        corpora.append(load_mosei(mosei_covarep, mosei_labels, spec).split(split, seed))
    if not corpora:
        raise ValueError("no corpus given: name a DATA_DIR or --mosei-covarep/--mosei-labels")
    return corpora


def _one_corpus(corpora):
    if len(corpora) != 1:
        raise ValueError("this command takes exactly one labeled corpus")
    return corpora[0]


def _predictor(path: Path) -> tuple[object, tuple[str, ...], Callable]:
    """(feature spec, emotion order, predict(list of raw feature arrays) -> (N, 6)) of a checkpoint or bundle."""
    if path.is_dir():
        from edge_emo.runtime.bundle import load_bundle

        bundle = load_bundle(path)
        return bundle.spec, bundle.emotions, bundle.predict_utterances
    from edge_emo.train.checkpoint import load_checkpoint
    from edge_emo.train.finetune import predict

    ckpt = load_checkpoint(path)
    return ckpt.spec, ckpt.emotions, functools.partial(predict, ckpt)


def _guard(fn):
    """Turn input errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except INPUT_ERRORS as e:
            raise fail(str(e)) from None

    return wrapper


DataDirs = Annotated[
    Optional[list[Path]], typer.Argument(help="Corpus folders (labels.csv, manifest.csv or .csd).")
]
DataDir = Annotated[
    Optional[Path], typer.Argument(help="Corpus folder (labels.csv or CMU-MOSEI .csd files).")
]
MoseiCovarep = Annotated[Optional[Path], typer.Option(help=MOSEI_COVAREP_HELP)]
MoseiLabels = Annotated[Optional[Path], typer.Option(help=MOSEI_LABELS_HELP)]
SplitOpt = Annotated[str, typer.Option("--split", help=SPLIT_HELP)]
SplitSeed = Annotated[int, typer.Option(help="Seed of the speaker split.")]
HiddenOpt = Annotated[int, typer.Option(help="GRU units per layer (the paper: 256).")]
LayersOpt = Annotated[int, typer.Option(help="GRU layers (the paper: 2).")]


@app.command()
@_guard
def features(
    data_dir: DataDirs = None,
    feature_set: Annotated[
        FeatureSetChoice, typer.Option(help="openSMILE low-level descriptors to extract.")
    ] = (FeatureSetChoice.egemaps),
) -> None:
    """Extract (or reuse the cached) frame-level features of corpora and print a summary."""
    from edge_emo.data.corpus import cache_dir, load_corpus

    spec = _spec(feature_set.value)
    for d in data_dir or []:
        clips = load_corpus(d, spec)
        typer.echo(f"{d}: {len(clips)} clips, {clips.n_frames} frames of {spec.dim} {spec.name} values")
    typer.echo(f"cache: {cache_dir()}")


@app.command()
@_guard
def pretrain(
    data_dir: DataDirs = None,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")] = Path(
        "pretrained.safetensors"
    ),
    epochs: Annotated[int, typer.Option(help="Passes over the pretraining data.")] = 12,
    feature_set: Annotated[
        Optional[FeatureSetChoice],
        typer.Option(help="Features to train on (default: covarep for MOSEI, else egemaps)."),
    ] = None,
    loss_on: Annotated[
        str, typer.Option(help="Reconstruction loss on 'masked' frames only or on 'all' frames.")
    ] = ("masked"),
    batch_size: Annotated[int, typer.Option(help="Clips (or 4 s windows of long clips) per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of masking, batching and initialisation.")] = 0,
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    split: SplitOpt = "all",
    split_seed: SplitSeed = 0,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
) -> None:
    """Self-supervised masked-span pretraining on unlabeled and labeled corpora (labels are ignored)."""
    from edge_emo.train.checkpoint import save_checkpoint
    from edge_emo.train.pretrain import PretrainConfig
    from edge_emo.train.pretrain import pretrain as run_pretrain

    if loss_on not in ("masked", "all"):
        raise ValueError(f"--loss-on must be 'masked' or 'all', not {loss_on!r}")
    dirs = data_dir or []
    fs = feature_set.value if feature_set else _default_feature_set(dirs, mosei_covarep is not None)
    corpora = _corpora(dirs, mosei_covarep, mosei_labels, _spec(fs), split, split_seed)
    config = PretrainConfig(epochs=epochs, batch_size=batch_size, loss_on=loss_on, seed=seed)
    ckpt = run_pretrain(corpora, config, hidden=hidden, layers=layers)
    ckpt.provenance["data"] = [str(d) for d in dirs] + ([str(mosei_covarep)] if mosei_covarep else [])
    ckpt.provenance["split"] = {"split": split, "seed": split_seed}
    save_checkpoint(ckpt, out)
    history = ckpt.provenance["pretrain"]["loss_history"]
    typer.echo(
        f"pretrained on {sum(len(c) for c in corpora)} clips; loss {history[0]} -> {history[-1]}; wrote {out}"
    )


@app.command()
@_guard
def finetune(
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")] = Path(
        "finetuned.safetensors"
    ),
    labels: Annotated[
        Optional[int], typer.Option(help="Number of labeled clips to draw (default: all of the split).")
    ] = None,
    init: Annotated[
        Optional[Path],
        typer.Option(
            help="Pretrained checkpoint: train only the head on its frozen backbone. "
            "Without it, the baseline: the same network from scratch."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the labeled clips.")] = 30,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Clips per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the label draw and of training.")] = 0,
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    feature_set: Annotated[
        Optional[FeatureSetChoice],
        typer.Option(help="Features for the baseline (with --init: the checkpoint's)."),
    ] = None,
    split: SplitOpt = "all",
    split_seed: SplitSeed = 0,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
) -> None:
    """Few-shot fine-tuning on N labeled clips: the head on a frozen pretrained backbone, or the baseline."""
    from edge_emo.train.checkpoint import load_checkpoint, save_checkpoint
    from edge_emo.train.finetune import FinetuneConfig, finetune_head, sample_labeled, train_baseline

    dirs = [data_dir] if data_dir else []
    pre = load_checkpoint(init) if init else None
    if pre is not None and feature_set is not None and feature_set.value != pre.spec.name:
        raise ValueError(f"--feature-set {feature_set.value} differs from the checkpoint's ({pre.spec.name})")
    spec = (
        pre.spec
        if pre
        else _spec(feature_set.value if feature_set else _default_feature_set(dirs, bool(mosei_covarep)))
    )
    clips = _one_corpus(_corpora(dirs, mosei_covarep, mosei_labels, spec, split, split_seed))
    chosen = sample_labeled(clips, labels, seed)
    config = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    ckpt = finetune_head(pre, chosen, config) if pre else train_baseline(chosen, config, hidden, layers)
    ckpt.provenance["data"] = [str(d) for d in dirs] + ([str(mosei_covarep)] if mosei_covarep else [])
    ckpt.provenance["split"] = {"split": split, "seed": split_seed}
    save_checkpoint(ckpt, out)
    kind = "head on the frozen pretrained backbone" if pre else "baseline from scratch"
    typer.echo(f"trained the {kind} on {len(chosen)} labeled clips; wrote {out}")


@app.command()
@_guard
def evaluate(
    model: Annotated[Path, typer.Argument(help="A checkpoint (.safetensors) or an exported bundle.")],
    data_dir: DataDir = None,
    split: SplitOpt = "all",
    split_seed: SplitSeed = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with every metric.")
    ] = False,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
) -> None:
    """Score a model on labeled clips, beside the all-zeros reference."""
    from edge_emo.metrics import format_report, report

    spec, emotions, predict = _predictor(model)
    clips = _one_corpus(
        _corpora([data_dir] if data_dir else [], mosei_covarep, mosei_labels, spec, split, split_seed)
    )
    if clips.labels is None:
        raise ValueError(f"{data_dir}: evaluation needs labels (labels.csv)")
    if tuple(emotions) != tuple(clips.emotions):
        raise ValueError(
            f"{model} predicts {list(emotions)} but the corpus is labeled {list(clips.emotions)}"
        )
    rep = report(clips.labels, predict(clips.features), clips.emotions)
    rep["model_path"] = str(model)
    if json_out:
        typer.echo(json.dumps(rep))
    else:
        typer.echo(format_report(rep))


@app.command()
@_guard
def experiment(
    data_dir: Annotated[
        Path, typer.Argument(help="Labeled corpus folder (labels.csv or CMU-MOSEI .csd files).")
    ],
    out: Annotated[
        Path, typer.Option(help="Run folder: results.csv, summary.json, tables and plots. Rerun to resume.")
    ],
    unlabeled: Annotated[
        Optional[list[Path]], typer.Option(help="Unlabeled corpus folder added to pretraining (repeatable).")
    ] = None,
    eval_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--eval",
            help="Labeled corpus to evaluate on; then all of DATA_DIR is for training. "
            "Default: DATA_DIR's validation speakers (--split-seed).",
        ),
    ] = None,
    init: Annotated[
        Optional[Path], typer.Option(help="Pretrained checkpoint to use instead of pretraining.")
    ] = None,
    budgets: Annotated[
        str, typer.Option(help="Label counts; '...' continues a step (the paper's are the default).")
    ] = "20,35,...,200,400,...,1200",
    draws: Annotated[int, typer.Option(help="Label draws per budget (SSL heads and ridge; cheap).")] = 20,
    baseline_draws: Annotated[
        int, typer.Option(help="How many of the draws also train the baseline from scratch (expensive).")
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the draws, pretraining and training.")] = 0,
    feature_set: Annotated[
        Optional[FeatureSetChoice],
        typer.Option(
            help="Features (default: covarep for MOSEI, else egemaps; with --init: the checkpoint's)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of every model (Adam, MSE).")] = 30,
    lr: Annotated[float, typer.Option(help="Adam learning rate of fine-tuning.")] = 1e-3,
    pretrain_epochs: Annotated[int, typer.Option(help="Masked-span pretraining epochs.")] = 12,
    loss_on: Annotated[
        str, typer.Option(help="Pretraining loss on 'masked' frames only or on 'all' frames.")
    ] = "masked",
    loss_variant: Annotated[
        bool, typer.Option(help="Also pretrain with the other --loss-on and compare its SSL head.")
    ] = False,
    full_finetune_from: Annotated[
        int,
        typer.Option(help="From this budget on, also fine-tune the whole pretrained network (0: never)."),
    ] = 0,
    reference: Annotated[
        bool, typer.Option(help="Run the eGeMAPS functionals + ridge reference (audio corpora).")
    ] = True,
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    split_seed: SplitSeed = 0,
    workers: Annotated[int, typer.Option(help="Processes for the expensive models (0: one per core).")] = 0,
) -> None:
    """The paper's few-shot experiment: SSL head vs baseline vs eGeMAPS+ridge across label budgets, with
    statistics over draws, plots and tables in the run folder."""
    import os

    from edge_emo.data.corpus import load_corpus
    from edge_emo.experiment.report import report_run
    from edge_emo.experiment.runner import ExperimentConfig, Fold, parse_budgets, run_experiment
    from edge_emo.train.checkpoint import load_checkpoint

    if loss_on not in ("masked", "all"):
        raise ValueError(f"--loss-on must be 'masked' or 'all', not {loss_on!r}")
    if init is not None and loss_variant:
        raise ValueError("--loss-variant pretrains with both losses: it cannot be used with --init")
    if draws < 1 or not 0 <= baseline_draws <= draws:
        raise ValueError("--draws must be >= 1 and --baseline-draws between 0 and --draws")
    budget_list = parse_budgets(budgets)
    pre = load_checkpoint(init) if init else None
    if pre is not None and feature_set is not None and feature_set.value != pre.spec.name:
        raise ValueError(f"--feature-set {feature_set.value} differs from the checkpoint's ({pre.spec.name})")
    spec = (
        pre.spec
        if pre
        else _spec(feature_set.value if feature_set else _default_feature_set([data_dir], False))
    )
    if eval_dir is None:
        train, val = (load_corpus(data_dir, spec, s, split_seed) for s in ("train", "val"))
        fold = Fold("val", train, val, data_dir, data_dir)
    else:
        fold = Fold("eval", load_corpus(data_dir, spec), load_corpus(eval_dir, spec), data_dir, eval_dir)
    for clips, where in [(fold.train, data_dir), (fold.eval, eval_dir or data_dir)]:
        if clips.labels is None:
            raise ValueError(f"{where}: the experiment needs labeled clips (labels.csv)")
    if not (data_dir / "labels.csv").is_file() or not ((eval_dir or data_dir) / "labels.csv").is_file():
        fold.train_dir = fold.eval_dir = None  # no audio: no eGeMAPS functionals reference
    config = ExperimentConfig(
        budgets=budget_list,
        draws=draws,
        baseline_draws=baseline_draws,
        epochs=epochs,
        lr=lr,
        pretrain_epochs=pretrain_epochs,
        loss_on=loss_on,
        loss_variant=loss_variant,
        full_from=full_finetune_from,
        hidden=pre.model.config.hidden if pre else hidden,
        layers=pre.model.config.layers if pre else layers,
        seed=seed,
        reference=reference,
        workers=workers or os.cpu_count() or 1,
    )
    unlabeled_sets = [load_corpus(d, spec) for d in unlabeled or []]
    settings = {
        "data": str(data_dir.resolve()),
        "eval": str(eval_dir.resolve()) if eval_dir else f"validation speakers (split seed {split_seed})",
        "unlabeled": [str(d.resolve()) for d in unlabeled or []],
        "feature_set": spec.name,
        "init": str(init.resolve()) if init else None,
        "split_seed": split_seed,
    }
    results, budget_list, notes = run_experiment(
        [fold], unlabeled_sets, config, out, settings, pre, typer.echo
    )
    for note in notes:
        typer.echo(f"note: {note}")
    summary = report_run(
        out, results, fold, budget_list[fold.name], draws, notes, {**settings, **vars(config)}
    )
    diff = summary["differences"].get("ssl - baseline", {})
    for b in (budget_list[fold.name][0], budget_list[fold.name][-1]):
        if str(b) in diff:
            d = diff[str(b)]["macro_f1"]
            ci = "" if d["ci95"] is None else f" (95% interval {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"
            typer.echo(f"{b} labels: SSL minus baseline macro-F1 {d['mean']:+.3f}{ci}")
    typer.echo(f"wrote {out}/results.csv, summary.json, table1.md, differences.md and plots")

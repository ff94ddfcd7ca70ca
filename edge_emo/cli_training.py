"""The training side of the `edge-emo` command line: features, pretrain, finetune, evaluate, export and
experiment. Each parses its options, calls one function of its stage's module and prints what it returns;
edge_emo/cli.py registers them on the app (`COMMANDS`). Heavy modules are imported inside each command."""

import functools
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_emo.cli_options import (
    CutAtGainOpt,
    CutOpt,
    CvChoice,
    DataDir,
    DataDirs,
    HiddenOpt,
    HopOpt,
    LayersOpt,
    MoseiCovarep,
    MoseiLabels,
    PosWeightOpt,
    SignOpt,
    SpeechCutChoice,
    SplitOpt,
    SplitSeed,
    TrainGainsOpt,
    TrustOpt,
    guard,
    options_of,
    say,
    trust_keys,
)
from edge_emo.data.gain import RANDOM_GAIN_DB
from edge_emo.data.splits import Split
from edge_emo.features.spec import FeatureSet
from edge_emo.train import LossOn

COMMANDS: dict[str, Callable] = {}


def command(name: Optional[str] = None) -> Callable:
    """Record a command for edge_emo/cli.py to register, under `name` or the function's own."""

    def record(fn: Callable) -> Callable:
        COMMANDS[name or fn.__name__] = fn
        return fn

    return record


@command()
@guard
def features(
    data_dir: DataDirs = None,
    feature_set: Annotated[FeatureSet, typer.Option(help="openSMILE low-level descriptors to extract.")] = (
        FeatureSet.egemaps
    ),
    hop_ms: HopOpt = None,
) -> None:
    """Extract (or reuse the cached) frame-level features of corpora and print a summary."""
    from edge_emo.data.corpus import cache_dir, load_corpus
    from edge_emo.data.sources import feature_spec

    spec = feature_spec(feature_set.value, hop_ms)
    for d in data_dir or []:
        clips = load_corpus(d, spec)
        typer.echo(f"{d}: {len(clips)} clips, {clips.n_frames} frames of {spec.dim} {spec.name} values")
    typer.echo(f"cache: {cache_dir()}")


@command()
@guard
def pretrain(
    data_dir: DataDirs = None,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")] = Path(
        "pretrained.safetensors"
    ),
    epochs: Annotated[int, typer.Option(help="Passes over the pretraining data.")] = 12,
    feature_set: Annotated[
        Optional[FeatureSet],
        typer.Option(help="Features to train on (default: covarep for MOSEI, else egemaps)."),
    ] = None,
    loss_on: Annotated[
        LossOn, typer.Option(help="Reconstruction loss on masked frames only or on all frames.")
    ] = LossOn.masked,
    batch_size: Annotated[int, typer.Option(help="Clips (or 4 s windows of long clips) per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of masking, batching and initialisation.")] = 0,
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    split: SplitOpt = Split.all,
    split_seed: SplitSeed = 0,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
    save_every_steps: Annotated[
        int, typer.Option(help="Save the training state every N steps too (always at the end of an epoch).")
    ] = 0,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            help="Training state to continue from. Default: OUT's (OUT.state.safetensors), which exists "
            "while a run is unfinished, so rerunning an interrupted command continues it."
        ),
    ] = None,
) -> None:
    """Self-supervised masked-span pretraining on unlabeled and labeled corpora (labels are ignored) and on
    feature logs of `edge-emo listen --log-features` (of the same feature set).

    Runs alone, or in every process of `torchrun --nproc-per-node N -m edge_emo pretrain ...` (DDP; gloo on
    CPUs, NCCL on GPUs): --batch-size is then the global batch, split over the processes."""
    from edge_emo.progress import log
    from edge_emo.train.distributed import one_thread_unless_told
    from edge_emo.train.pretrain import PretrainConfig, PretrainData, pretrain_to_file

    one_thread_unless_told()
    data = PretrainData(
        list(data_dir or []),
        mosei_covarep,
        mosei_labels,
        feature_set.value if feature_set else None,
        split.value,
        split_seed,
    )
    config = PretrainConfig(epochs=epochs, batch_size=batch_size, loss_on=loss_on.value, seed=seed)
    pretrain_to_file(data, config, out, hidden, layers, save_every_steps, resume, say, log)


@command()
@guard
def finetune(
    data_dirs: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="Labeled corpus folders (labels.csv or CMU-MOSEI .csd files), trained on together."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")] = Path(
        "finetuned.safetensors"
    ),
    budget: Annotated[
        Optional[int],
        typer.Option("--budget", help="Number of labeled clips to draw (default: all of the split).", min=1),
    ] = None,
    labels: Annotated[
        Optional[int], typer.Option("--labels", hidden=True, help="Deprecated name of --budget.", min=1)
    ] = None,
    init: Annotated[
        Optional[Path],
        typer.Option(
            help="Pretrained checkpoint: train only the head on its frozen backbone. "
            "Without it, the baseline: the same network from scratch."
        ),
    ] = None,
    neutral: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Ordinary speech (manifest.csv folder) to learn as 'no emotion': each utterance the voice "
            "detector cuts becomes a clip with all-zero intensities (repeatable)."
        ),
    ] = None,
    cut: CutOpt = SpeechCutChoice.whole,
    crop_s: Annotated[
        Optional[float],
        typer.Option(
            help="Whole-network training: a random stretch of at most this many seconds of each clip per epoch.",
            min=0.1,
        ),
    ] = None,
    cue_margin: Annotated[
        float,
        typer.Option(
            help="Lower every output by this much once trained (in the head's bias): fewer false cues on calm "
            "speech for a little recall.",
            min=0.0,
            max=3.0,
        ),
    ] = 0.0,
    speaker_adaptation: Annotated[
        bool,
        typer.Option(
            help="Train on each speaker's frames standardised by that speaker's own statistics; the device "
            "then estimates its partner's while it listens (docs/QUALITY.md).",
        ),
    ] = False,
    cold_start: Annotated[
        float,
        typer.Option(
            help="With --speaker-adaptation: the share of clips per epoch seen with the prior statistics only "
            "(a stranger's first words).",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    dropout: Annotated[
        float,
        typer.Option(
            help="Whole-network training: dropout between the GRU layers and on the utterance embedding.",
            min=0.0,
            max=0.9,
        ),
    ] = 0.0,
    mask_features: Annotated[
        int,
        typer.Option(help="Whole-network training: feature columns masked per clip and epoch.", min=0),
    ] = 0,
    mask_span_s: Annotated[
        float,
        typer.Option(
            help="Whole-network training: one span of up to this many seconds masked per clip.", min=0.0
        ),
    ] = 0.0,
    lr_decay: Annotated[
        bool, typer.Option(help="Anneal the learning rate to 0 along a cosine over the training.")
    ] = False,
    readout_weight: Annotated[
        float,
        typer.Option(
            help="Add a cross-entropy on the categorical readout (strongest emotion >= 0.5, else neutral) "
            "with this weight to the MSE.",
            min=0.0,
        ),
    ] = 0.0,
    distill_from: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Teachers (checkpoints of the same recipe trained on the same clips, e.g. an ensemble's "
            "members; repeatable): the network also learns their mean output (--distill-weight).",
        ),
    ] = None,
    distill_weight: Annotated[
        float,
        typer.Option(
            help="With --distill-from: the teachers' share of every clip's target.", min=0.0, max=1.0
        ),
    ] = 0.5,
    epochs: Annotated[int, typer.Option(help="Passes over the labeled clips.")] = 30,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Clips per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the label draw and of training.")] = 0,
    full: Annotated[
        bool,
        typer.Option(
            help="With --init: fine-tune every weight of the pretrained network, not only the head."
        ),
    ] = False,
    pos_weight: PosWeightOpt = 1.0,
    train_gains: TrainGainsOpt = None,
    cut_at_gain: CutAtGainOpt = False,
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    feature_set: Annotated[
        Optional[FeatureSet],
        typer.Option(help="Features for the baseline (with --init: the checkpoint's)."),
    ] = None,
    hop_ms: HopOpt = None,
    split: SplitOpt = Split.all,
    split_seed: SplitSeed = 0,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
) -> None:
    """Few-shot fine-tuning on N labeled clips: the head on a frozen pretrained backbone, or the baseline."""
    from edge_emo.data.gain import parse_gains
    from edge_emo.data.sources import check_mosei_pair
    from edge_emo.features.normalization import SpeakerAdaptation
    from edge_emo.train.distributed import one_thread_unless_told
    from edge_emo.train.finetune import FinetuneConfig, TrainingData, finetune_to_file

    one_thread_unless_told()
    if labels is not None:  # one name per meaning: --labels is a labels.csv in record and personalize
        if budget is not None:
            raise ValueError("--labels is the old name of --budget: give only --budget")
        typer.secho("warning: `finetune --labels N` is deprecated; use --budget N", err=True, fg="yellow")
        budget = labels
    check_mosei_pair(mosei_covarep, mosei_labels)
    if cut_at_gain and not (train_gains and cut.value == "speech"):
        raise ValueError("--cut-at-gain needs --train-gains and --cut speech")
    data = TrainingData(
        labeled=list(data_dirs or []),
        neutral=list(neutral or []),
        mosei=(mosei_covarep, mosei_labels) if mosei_covarep else None,
        split=split.value,
        split_seed=split_seed,
        cut=cut.value,
        gains=parse_gains(train_gains),
        cut_at_gain=cut_at_gain,
    )
    config = FinetuneConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        pos_weight=pos_weight,
        crop_s=crop_s,
        cue_margin=cue_margin,
        speaker_adaptation=SpeakerAdaptation() if speaker_adaptation else None,
        cold_start=cold_start,
        dropout=dropout,
        mask_features=mask_features,
        mask_span_s=mask_span_s,
        lr_decay=lr_decay,
        readout_weight=readout_weight,
        distill_weight=distill_weight if distill_from else 0.0,
    )
    fs = feature_set.value if feature_set else None
    teachers = list(distill_from or [])
    typer.echo(
        finetune_to_file(
            data, config, out, init, fs, full, budget, hidden, layers, train_gains, hop_ms, teachers
        )
    )


@command()
@guard
def evaluate(
    model: Annotated[Path, typer.Argument(help="A checkpoint (.safetensors) or an exported bundle.")],
    data_dir: DataDir = None,
    split: SplitOpt = Split.all,
    split_seed: SplitSeed = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with every metric.")
    ] = False,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
    predictions: Annotated[
        Optional[Path],
        typer.Option(help="Write every clip's six clipped outputs and readout (and truth) to this CSV."),
    ] = None,
    cut: CutOpt = SpeechCutChoice.speech,
    trust: TrustOpt = None,
    speaker_estimate: Annotated[
        bool,
        typer.Option(
            help="For a speaker-adapting model: standardise each speaker's clips by the estimate from all of "
            "them (the device after hearing that much of the speaker); --no-speaker-estimate scores every "
            "clip as the device hears a stranger's first words."
        ),
    ] = True,
) -> None:
    """Score a model beside the all-zeros reference, on the clipped 0..3 output the device emits: on labeled
    clips every metric and the categorical readout; on unlabeled speech (manifest.csv or a feature log) the
    false-cue rate per clip and per utterance."""
    from edge_emo.evaluation import evaluate_model

    trust_keys(trust)
    rep, text = evaluate_model(
        model,
        data_dir,
        (mosei_covarep, mosei_labels),
        split.value,
        split_seed,
        cut.value,
        predictions,
        speaker_estimate,
        say,
    )
    typer.echo(json.dumps(rep) if json_out else text)


class PrecisionChoice(str, Enum):
    int8 = "int8"
    fp32 = "fp32"


@command("export")
@guard
def export_model(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned checkpoint (.safetensors).")],
    out: Annotated[
        Path, typer.Option(help="Bundle directory to write (NAME.bundle); a previous one is kept as .prev.")
    ],
    precision: Annotated[
        PrecisionChoice, typer.Option(help="int8 (dynamic quantization of the GRU) or fp32.")
    ] = PrecisionChoice.int8,
    chunk_frames: Annotated[
        Optional[int],
        typer.Option(help="Frames per graph call on device and in evaluation (default: one 80 ms update)."),
    ] = None,
    sign: SignOpt = None,
) -> None:
    """Export a checkpoint as a streaming ONNX bundle (graph + manifest) for the device."""
    from edge_emo.export import export_bundle

    bundle = export_bundle(checkpoint, out, precision.value, chunk_frames, sign_key=sign)
    graphs = " + ".join(f"{g.name} {g.bytes / 1e6:.2f} MB" for g in bundle.graphs)
    typer.echo(f"wrote {bundle.path} (graphs: {graphs}), version {bundle.version}")


@command()
@guard
def ensemble(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Two or more fine-tuned checkpoints of one recipe (other seeds).")
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors); export it as any other.")],
) -> None:
    """One checkpoint whose outputs are the mean of the given models' (their GRUs side by side)."""
    from edge_emo.train.checkpoint import load_checkpoint, save_checkpoint
    from edge_emo.train.ensemble import average_models

    merged = average_models([load_checkpoint(p) for p in checkpoints])
    save_checkpoint(merged, out)
    typer.echo(
        f"wrote {out}: {len(checkpoints)} models as one GRU of hidden size {merged.model.config.hidden}"
    )


@command()
@guard
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
    baseline_until: Annotated[
        int, typer.Option(help="Train the baseline only at budgets up to this many labels (0: at all).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the draws, pretraining and training.")] = 0,
    feature_set: Annotated[
        Optional[FeatureSet],
        typer.Option(
            help="Features (default: covarep for MOSEI, else egemaps; with --init: the checkpoint's)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of every model (Adam, MSE).")] = 30,
    pos_weight: PosWeightOpt = 1.0,
    lr: Annotated[float, typer.Option(help="Adam learning rate of fine-tuning.")] = 1e-3,
    pretrain_epochs: Annotated[int, typer.Option(help="Masked-span pretraining epochs.")] = 12,
    loss_on: Annotated[
        LossOn, typer.Option(help="Pretraining loss on masked frames only or on all frames.")
    ] = LossOn.masked,
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
    cv: Annotated[
        Optional[CvChoice],
        typer.Option(
            help="'speakers': speaker cross-validation over DATA_DIR instead of one split; every speaker "
            "is evaluated once, statistics are over folds."
        ),
    ] = None,
    folds: Annotated[
        int, typer.Option(help="Folds of the --cv speakers cross-validation (speaker groups, --split-seed).")
    ] = 4,
    train_gains: TrainGainsOpt = None,
    eval_gain: Annotated[
        Optional[str],
        typer.Option(
            help="--cv: evaluate on the clips heard through this microphone gain in dB, or 'random' "
            f"({RANDOM_GAIN_DB[0]:+g}..{RANDOM_GAIN_DB[1]:+g} dB per clip). The ridge reference keeps the plain audio."
        ),
    ] = None,
    ordinary: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Ordinary speech (e.g. a manifest.csv folder), taken as neutral: every model's false-cue rate "
            "on its clips is reported (repeatable)."
        ),
    ] = None,
) -> None:
    """The paper's few-shot experiment: SSL head vs baseline vs eGeMAPS+ridge across label budgets, with
    statistics over draws (or, with --cv speakers, over speaker folds), plots and tables in the run folder."""

    from edge_emo.experiment.folds import ExperimentOptions, run
    from edge_emo.progress import log

    run(options_of(ExperimentOptions, locals()), functools.partial(log, file=sys.stdout), typer.echo)

"""The `edge-emo` command line. Heavy modules are imported inside each command, so device commands
(listen, personalize, devices, bridge-monitor) never import torch.

No `from __future__ import annotations` here: typer reads the `Annotated[..., typer.Option(...)]` metadata
from evaluated annotations, and on Python 3.9 it gets only strings from postponed ones and silently drops
every option name and help text (tests/boards runs the CLI on 3.9). So: `Optional[X]`, never `X | None`."""

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, NamedTuple, Optional

import typer

from edge_emo.data.splits import Split

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


def _print_versions(asked: bool) -> None:
    if asked:
        from edge_emo.about import versions

        typer.echo(versions())
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_versions,
            help="Print the versions of edge-emo, its shipped model, onnxruntime and openSMILE.",
        ),
    ] = False,
) -> None:
    """edge-emo command line."""


# Errors that bad input raises throughout edge-emo (all carry a one-line message naming the culprit).
INPUT_ERRORS = (ValueError, OSError)

SPLIT_HELP = "Speaker-disjoint part of labeled corpora: all, train (80% of speakers) or val (20%), chosen with --split-seed."
MOSEI_COVAREP_HELP = "CMU_MOSEI_COVAREP.csd to use as a corpus (with --mosei-labels)."
MOSEI_LABELS_HELP = "CMU_MOSEI_Labels.csd to use as a corpus (with --mosei-covarep)."


class SpeechCutChoice(str, Enum):
    speech = "speech"
    whole = "whole"


class FeatureSetChoice(str, Enum):
    egemaps = "egemaps"
    compare = "compare"
    covarep = "covarep"


class LossOnChoice(str, Enum):
    masked = "masked"
    all = "all"


class CvChoice(str, Enum):
    speakers = "speakers"


def _spec(feature_set: str):
    if feature_set == "covarep":
        from edge_emo.data.mosei import covarep_spec

        return covarep_spec()
    from edge_emo.features import FeatureSet, spec_for

    return spec_for(FeatureSet(feature_set))


def _default_feature_set(data_dirs: list[Path], mosei: bool) -> str:
    from edge_emo.data.mosei import find_mosei

    return "covarep" if mosei or any(find_mosei(d) for d in data_dirs) else "egemaps"


def _corpora(
    data_dirs: list[Path],
    mosei_covarep: Optional[Path],
    mosei_labels: Optional[Path],
    spec,
    split,
    seed,
    cut: str = "whole",
):
    """Every corpus named on the command line, as ClipSets of `spec` features (audio cut as `cut` says)."""
    from edge_emo.data.corpus import load_corpus
    from edge_emo.data.mosei import load_mosei
    from edge_emo.features.feature_log import is_feature_log

    corpora = [
        load_corpus(d, spec, split, seed, cut="whole" if is_feature_log(d) else cut) for d in data_dirs
    ]
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
    if str(path) == "shipped" or path.is_dir():
        bundle = _model_bundle(path)
        return bundle.spec, bundle.emotions, bundle.predict_utterances
    if not path.is_file():
        raise ValueError(f"{path} does not exist: no such checkpoint (.safetensors) or bundle folder")
    try:
        from edge_emo.train.checkpoint import load_checkpoint
        from edge_emo.train.finetune import predict
    except ImportError as e:  # a device install: bundles only
        raise ValueError(
            f"{path} is not a bundle folder, and reading a checkpoint needs the training extra "
            f"(pip install 'edge-emo[train]'; {e})"
        ) from None

    ckpt = load_checkpoint(path)
    return ckpt.spec, ckpt.emotions, functools.partial(predict, ckpt)


def _adapts_to_speakers(path: Path) -> bool:
    """Whether the checkpoint or bundle at `path` (already loaded once, so valid) adapts to its speaker."""
    if str(path) == "shipped" or path.is_dir():
        return _model_bundle(path).adaptation is not None
    from edge_emo.train.checkpoint import load_checkpoint

    return load_checkpoint(path).adaptation is not None


def _provenance(path: Path) -> dict:
    """How the checkpoint or bundle at `path` (already loaded once, so valid) was made."""
    if str(path) == "shipped" or path.is_dir():
        return _model_bundle(path).provenance or {}
    from edge_emo.train.checkpoint import load_checkpoint

    return load_checkpoint(path).provenance


TrustOpt = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--trust",
        help="Ed25519 public key (PEM) of who signs bundles; repeatable. With a trusted key (also any "
        "*.pub in ~/.config/edge-emo/trusted/), unsigned or mis-signed bundles are refused.",
    ),
]
SignOpt = Annotated[
    Optional[Path],
    typer.Option(help="Sign the bundle with this Ed25519 private key (PEM; needs edge-emo[sign])."),
]


def _trust(keys: Optional[list[Path]]) -> None:
    from edge_emo.signing import trust

    trust(keys or [])


def _one_torch_thread_unless_told() -> None:
    """Training runs one math thread per process unless OMP_NUM_THREADS says otherwise: on a shared 2-core
    machine a 2 x 256 GRU with two threads per process ran many times slower than with one. To use more
    cores, start more processes (`torchrun --nproc-per-node N -m edge_emo pretrain ...`)."""
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


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
    Optional[list[Path]],
    typer.Argument(help="Corpus folders (labels.csv, manifest.csv, .csd or feature-log shards)."),
]
DataDir = Annotated[
    Optional[Path], typer.Argument(help="Corpus folder (labels.csv or CMU-MOSEI .csd files).")
]
MoseiCovarep = Annotated[Optional[Path], typer.Option(help=MOSEI_COVAREP_HELP)]
MoseiLabels = Annotated[Optional[Path], typer.Option(help=MOSEI_LABELS_HELP)]
SplitOpt = Annotated[Split, typer.Option("--split", help=SPLIT_HELP)]
SplitSeed = Annotated[int, typer.Option(help="Seed of the speaker split.")]
HiddenOpt = Annotated[int, typer.Option(help="GRU units per layer (the paper: 256).")]
LayersOpt = Annotated[int, typer.Option(help="GRU layers (the paper: 2).")]
RANDOM_GAIN_DB = (-20.0, 12.0)
CutOpt = Annotated[
    SpeechCutChoice,
    typer.Option(
        "--cut",
        help="What of each audio clip the model sees: 'speech' from the first to the last frame the device's "
        "voice detector calls speech (as `listen` analyses it), or the 'whole' clip.",
    ),
]
TrainGainsOpt = Annotated[
    Optional[str],
    typer.Option(
        help="Gain augmentation of whole-network training: comma-separated microphone gains in dB and/or "
        f"'random' ({RANDOM_GAIN_DB[0]:+g}..{RANDOM_GAIN_DB[1]:+g} dB per clip); every epoch each clip is "
        "heard plain or through one of them.",
    ),
]


def _gain(text: str):
    """A `Gain` from 'random' or a number of dB."""
    from edge_emo.data.gain import Gain

    if text.strip() == "random":
        return Gain(db=None, low=RANDOM_GAIN_DB[0], high=RANDOM_GAIN_DB[1])
    try:
        return Gain(db=float(text))
    except ValueError:
        raise ValueError(f"a gain is a number of dB or 'random', not {text!r}") from None


def _gains(text: Optional[str]) -> list:
    return [_gain(t) for t in text.split(",") if t.strip()] if text else []


PosWeightOpt = Annotated[
    float,
    typer.Option(
        help="Fine-tuning: weight of the squared error where an emotion is present (class balance)."
    ),
]


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
        LossOnChoice, typer.Option(help="Reconstruction loss on masked frames only or on all frames.")
    ] = LossOnChoice.masked,
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
    from edge_emo.data.feature_log import log_spec
    from edge_emo.progress import log
    from edge_emo.train import distributed
    from edge_emo.train.checkpoint import save_checkpoint, state_path
    from edge_emo.train.pretrain import PretrainConfig
    from edge_emo.train.pretrain import pretrain as run_pretrain

    _one_torch_thread_unless_told()
    dirs = data_dir or []
    logged = [spec for spec in map(log_spec, dirs) if spec is not None]  # feature logs name their features
    if feature_set:
        fs = feature_set.value
    else:
        fs = logged[0].name if logged else _default_feature_set(dirs, mosei_covarep is not None)
    dist = distributed.start()
    try:
        # The first process of each machine extracts missing features into the cache; the others then read it.
        if dist.local_rank != 0:
            dist.barrier()
        corpora = _corpora(dirs, mosei_covarep, mosei_labels, _spec(fs), split, split_seed)
        if dist.local_rank == 0:
            dist.barrier()
        state = state_path(out)
        if resume is None and state.is_file():
            resume = state
        if resume is not None and dist.is_main:
            typer.echo(f"continuing from the training state {resume}", err=True)
        config = PretrainConfig(epochs=epochs, batch_size=batch_size, loss_on=loss_on.value, seed=seed)
        ckpt = run_pretrain(
            corpora,
            config,
            hidden,
            layers,
            state,
            save_every_steps,
            resume,
            log,  # above the progress bar
        )
        if dist.is_main:
            ckpt.provenance["data"] = [str(d) for d in dirs] + ([str(mosei_covarep)] if mosei_covarep else [])
            ckpt.provenance["split"] = {"split": split.value, "seed": split_seed}
            save_checkpoint(ckpt, out)
            state.unlink(missing_ok=True)  # the run is complete: a rerun starts afresh
            history = ckpt.provenance["pretrain"]["loss_history"]
            typer.echo(
                f"pretrained on {sum(len(c) for c in corpora)} clips in {dist.world_size} process(es); "
                f"loss {history[0]} -> {history[-1]}; wrote {out}"
            )
        dist.barrier()
    finally:
        distributed.stop()


@app.command()
@_guard
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
    hidden: HiddenOpt = 256,
    layers: LayersOpt = 2,
    feature_set: Annotated[
        Optional[FeatureSetChoice],
        typer.Option(help="Features for the baseline (with --init: the checkpoint's)."),
    ] = None,
    split: SplitOpt = Split.all,
    split_seed: SplitSeed = 0,
    mosei_covarep: MoseiCovarep = None,
    mosei_labels: MoseiLabels = None,
) -> None:
    """Few-shot fine-tuning on N labeled clips: the head on a frozen pretrained backbone, or the baseline."""
    from edge_emo.features.normalization import SpeakerAdaptation
    from edge_emo.train.checkpoint import load_checkpoint, save_checkpoint
    from edge_emo.train.finetune import FinetuneConfig, TrainingData, train

    _one_torch_thread_unless_told()
    if labels is not None:  # one name per meaning: --labels is a labels.csv in record and personalize
        if budget is not None:
            raise ValueError("--labels is the old name of --budget: give only --budget")
        typer.secho("warning: `finetune --labels N` is deprecated; use --budget N", err=True, fg="yellow")
        budget = labels
    dirs = list(data_dirs or [])
    pre = load_checkpoint(init) if init else None
    if pre is not None and feature_set is not None and feature_set.value != pre.spec.name:
        raise ValueError(f"--feature-set {feature_set.value} differs from the checkpoint's ({pre.spec.name})")
    spec = (
        pre.spec
        if pre
        else _spec(feature_set.value if feature_set else _default_feature_set(dirs, bool(mosei_covarep)))
    )
    if (mosei_covarep is None) != (mosei_labels is None):
        raise ValueError("--mosei-covarep and --mosei-labels go together")
    data = TrainingData(
        labeled=dirs,
        neutral=list(neutral or []),
        mosei=(mosei_covarep, mosei_labels) if mosei_covarep else None,
        split=split.value,
        split_seed=split_seed,
        cut=cut.value,
        gains=_gains(train_gains),
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
    )
    ckpt, learned = train(data, spec, config, pre, full=full, labels=budget, hidden=hidden, layers=layers)
    if train_gains:
        ckpt.provenance["finetune"]["train_gains"] = train_gains
    save_checkpoint(ckpt, out)
    kind = (
        "whole pretrained network"
        if full
        else "head on the frozen pretrained backbone"
        if pre
        else "baseline from scratch"
    )
    typer.echo(f"trained the {kind} on {learned}; wrote {out}")


@app.command()
@_guard
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
    from edge_emo.data.splits import trained_on, trained_on_warning
    from edge_emo.evaluation import check_output_path, evaluate_folder

    _trust(trust)
    if predictions is not None:
        check_output_path(predictions)
    spec, emotions, predict = _predictor(model)
    clips = _one_corpus(
        _corpora(
            [data_dir] if data_dir else [], mosei_covarep, mosei_labels, spec, split, split_seed, cut.value
        )
    )
    seen = trained_on(_provenance(model), clips.speakers)
    if seen:
        typer.secho(trained_on_warning(seen, clips.speakers), err=True, fg=typer.colors.YELLOW)
    adapts = _adapts_to_speakers(model)
    per_speaker = adapts and speaker_estimate
    rep, text = evaluate_folder(model, clips, data_dir, emotions, predict, predictions, per_speaker)
    rep["cut"] = cut.value
    if adapts:
        rep["speaker_estimate"] = per_speaker
        text += "\n\n" + (
            "each speaker's clips standardised by the estimate from all of them (unknown speakers: each clip)"
            if per_speaker
            else "every clip standardised by the model's prior statistics (a stranger's first words)"
        )
    cut_note = {
        "speech": "clips cut to the speech the device's voice detector finds (as `listen` analyses them)",
        "whole": "whole clips, silence included",
    }[cut.value]
    typer.echo(json.dumps(rep) if json_out else f"{text}\n\n{cut_note}")


class PrecisionChoice(str, Enum):
    int8 = "int8"
    fp32 = "fp32"


@app.command("export")
@_guard
def export_model(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned checkpoint (.safetensors).")],
    out: Annotated[
        Path, typer.Option(help="Bundle directory to write (NAME.bundle); a previous one is kept as .prev.")
    ],
    precision: Annotated[
        PrecisionChoice, typer.Option(help="int8 (dynamic quantization of the GRU) or fp32.")
    ] = PrecisionChoice.int8,
    chunk_frames: Annotated[
        int, typer.Option(help="Frames per graph call on device and in evaluation (10 = one 100 ms update).")
    ] = 10,
    sign: SignOpt = None,
) -> None:
    """Export a checkpoint as a streaming ONNX bundle (graph + manifest) for the device."""
    from export import export_bundle

    bundle = export_bundle(checkpoint, out, precision.value, chunk_frames, sign_key=sign)
    size = bundle.graph_path.stat().st_size
    typer.echo(
        f"wrote {bundle.path} ({bundle.precision}, {size / 1e6:.2f} MB graph), version {bundle.version}"
    )


# --- device runtime: listen, devices ----------------------------------------------------------------------
# Exit codes of `listen` and `devices`: 0 done (end of input, --duration reached or Ctrl-C; dropped blocks
# are reported, not fatal; a file that stops decoding part-way is analysed up to there, with a warning),
# 2 bad input (model bundle, audio file, options; nothing is written), 3 no usable input device,
# 4 the input device failed while streaming.

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.bundle"
SAMPLES = Path(__file__).parent / "samples"


def _sample_path() -> Path:
    samples = sorted(SAMPLES.glob("*.flac"))
    if not samples:
        raise ValueError(f"no sample audio is installed in {SAMPLES}")
    return samples[0]


class _BridgeUpdate(NamedTuple):
    """What firmware_bridge's Link.send_update reads (the dominant emotion as an index)."""

    timestamp_s: float
    intensities: object
    dominant: Optional[int]
    speech: bool


def _model_bundle(model: Optional[Path]):
    """--model BUNDLE; none or 'shipped': the bundled model."""
    from edge_emo.runtime.bundle import load_bundle

    if model is not None and str(model) != "shipped":
        return load_bundle(model)
    if not (DEFAULT_MODEL / "manifest.json").is_file():
        raise ValueError(f"the default model is not installed ({DEFAULT_MODEL}); pass --model BUNDLE")
    return load_bundle(DEFAULT_MODEL)


def _listen_model(model: Optional[Path]):
    """As _model_bundle, but without --model: the wearer's personalized bundle (written by `edge-emo
    personalize`) if it was made from the shipped model, else the shipped model."""
    import sys

    from edge_emo.personalize.wearer import personal_bundle_path
    from edge_emo.runtime.bundle import BundleError, load_bundle

    shipped = _model_bundle(model)
    personal = personal_bundle_path()
    previous = personal.with_name(personal.name + ".prev")
    if model is None and not personal.exists() and previous.exists():  # never a silent fallback
        print(f"warning: your personalized model {personal} is missing but {previous.name} is there "
              "(`edge-emo personalize --rollback` restores it); using the shipped model", file=sys.stderr)  # fmt: skip
    if model is not None or not personal.exists():
        return shipped
    try:
        bundle = load_bundle(personal)
    except BundleError as err:
        # The wearer keeps a working device; the message says how to get the previous bundle back.
        print(f"warning: not using your personalized model: {err} (`edge-emo personalize --rollback` "
              "restores the one before it); using the shipped model", file=sys.stderr)  # fmt: skip
        return shipped
    if bundle.base_version != shipped.base_version:
        print(f"warning: your personalized model {personal} was made from {bundle.base_version}, not from "
              f"the shipped {shipped.version}: using the shipped model; run `edge-emo personalize` again "
              "to personalize it", file=sys.stderr)  # fmt: skip
        return shipped
    print(f"model: your personalized bundle {personal} (--model shipped: the shipped one)", file=sys.stderr)
    return bundle


def _recover(bundles: list[Path], labels: Optional[Path] = None) -> None:
    """Finish or undo what a killed personalize/record left (the wearer's bundle, `bundles`, beside
    `labels`), saying each thing done in one line on stderr."""
    from edge_emo.personalize.wearer import personal_bundle_path, recover

    for line in recover([personal_bundle_path(), *bundles], labels):
        typer.echo(f"recovered: {line}", err=True)


def _check_listen_options(given: dict) -> None:
    """The numbers of `listen` are finite and in range; --json and a stdout bridge do not share stdout."""
    from edge_emo.options import check_range, check_threads

    check_range("--update-interval", given["update_interval"], 0.01, 60)
    check_range("--smoothing", given["smoothing"], 0, 3600)
    check_range("--vad-threshold-db", given["vad_threshold_db"], -120, 0)
    check_range("--duration", given["duration"], 0.01, 1e7)
    check_range("--buffer", given["buffer"], 0.02, 600)
    check_range("--log-max-mb", given["log_max_mb"], 0.01, 1e7)
    check_range("--log-shard-s", given["log_shard_s"], 0.01, 86400)
    check_threads(given["threads"], given["force_threads"])
    bridge = given["bridge"] or ""
    if given["json_out"] and bridge.lower().startswith("stdout:"):
        raise ValueError(f"--bridge {bridge} writes binary frames to stdout, where --json writes its lines")


@app.command()
@_guard
def listen(
    model: Annotated[
        Optional[Path],
        typer.Option(
            help="Model bundle; 'shipped': the bundled model. Default: your personalized bundle "
            "(`edge-emo personalize`) if it was made from the bundled model, else the bundled model."
        ),
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="Input device, by index or name (see `edge-emo devices`).")
    ] = None,
    input_files: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--input",
            help="Stream an audio file instead of the microphone ('sample': the shipped one); repeatable: "
            "the files one after the other, each a stream of its own.",
        ),
    ] = None,
    fast: Annotated[bool, typer.Option(help="With --input: as fast as possible, not in real time.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON line per update on stdout, nothing else there.")
    ] = False,
    duration: Annotated[
        Optional[float], typer.Option(help="Stop after this many seconds of audio.", min=0.01)
    ] = None,
    update_interval: Annotated[float, typer.Option(help="Seconds of audio between updates.", min=0.01)] = 0.1,
    smoothing: Annotated[
        float,
        typer.Option(help="Time constant (s) of exponential smoothing of the intensities; 0: none.", min=0),
    ] = 0.0,
    vad_threshold_db: Annotated[
        Optional[float],
        typer.Option(
            help="A fixed level (dBFS) at which audio counts as speech; default: a threshold 12 dB above the "
            "noise floor it tracks (-70..-35 dBFS)."
        ),
    ] = None,
    vad: Annotated[
        bool,
        typer.Option(help="Cut the stream into utterances; --no-vad: the whole stream is one utterance."),
    ] = True,
    threads: Annotated[int, typer.Option(help="onnxruntime threads (at most the CPU count).", min=1)] = 1,
    force_threads: Annotated[
        bool, typer.Option(help="Allow --threads above the CPU count (slower; for measuring).")
    ] = False,
    buffer: Annotated[
        float, typer.Option(help="Seconds of microphone audio queued before blocks are dropped.", min=0.02)
    ] = 2.0,
    bridge: Annotated[
        Optional[str], typer.Option(help="Also send updates to a wearable (serial:// or udp:// URL).")
    ] = None,
    log_features: Annotated[
        Optional[Path],
        typer.Option(
            help="Keep the speech segments' feature frames (never audio) in rotating shards in this folder, "
            "for pretraining (`edge-emo pretrain DIR`). See docs/PRIVACY.md."
        ),
    ] = None,
    log_max_mb: Annotated[
        float,
        typer.Option(help="With --log-features: size cap of the folder; oldest shards go first.", min=0.01),
    ] = 200.0,
    log_shard_s: Annotated[
        float,
        typer.Option(
            help="With --log-features: seconds of speech per shard (a crash loses at most one).", min=0.01
        ),
    ] = 60.0,
    trust: TrustOpt = None,
    serve: Annotated[
        bool,
        typer.Option(help="Also show the updates on a web page; prints its address with an access token."),
    ] = False,
    serve_address: Annotated[
        Optional[str],
        typer.Option(
            help="HOST:PORT of the web page (implies --serve) [default: 127.0.0.1:8765]; anything but loopback "
            "(e.g. 0.0.0.0:8765, for a phone on the same network) is warned about."
        ),
    ] = None,
    serve_token: Annotated[
        Optional[str], typer.Option(help="Access token of the web page; default: a new random one.")
    ] = None,
) -> None:
    """Recognize emotions live from the microphone (or a file); a terminal view, or JSON lines with --json."""
    import os
    import sys

    from edge_emo.features import AudioFileError
    from edge_emo.features.speech import Vad
    from edge_emo.runtime import listen as listening
    from edge_emo.runtime.audio_input import AudioFileSource, AudioSourceError, Microphone, find_device
    from edge_emo.runtime.recognizer import EmotionRecognizer
    from edge_emo.runtime.view import LiveView

    _check_listen_options(locals())
    _trust(trust)
    _recover([model] if model is not None and str(model) != "shipped" else [])
    bundle = _listen_model(model)
    log = None

    def new_recognizer():
        return EmotionRecognizer(
            bundle,
            update_interval_s=update_interval,
            smoothing_s=smoothing,
            threads=threads,
            vad=Vad(threshold_db=vad_threshold_db) if vad else None,
            speech_sink=log,
        )

    recognizer = new_recognizer()  # checks the bundle before anything else happens
    if log_features is not None:
        from edge_emo.runtime.feature_log import FeatureLogger

        log = FeatureLogger(
            log_features,
            bundle.spec,
            bundle.version,
            max_bytes=round(log_max_mb * 2**20),
            shard_s=log_shard_s,
            say=lambda m: typer.echo(m, err=True),
        )
        recognizer.speech_sink = log
    link = None
    if bridge is not None:
        import firmware_bridge
        from firmware_bridge.protocol import MAX_MODEL_VERSION

        link = firmware_bridge.connect(
            bridge,
            model_version=bundle.short_version(MAX_MODEL_VERSION),
            emotions=bundle.emotions,
            update_rate_hz=1 / update_interval,
        )
    if input_files:
        paths = [_sample_path() if str(p) == "sample" else p for p in input_files]
        for p in paths:  # all named files are there before the first is streamed
            if not os.path.isfile(p):
                raise AudioFileError(f"{p}: no such audio file")
        sources = (AudioFileSource(p, fast=fast, max_s=duration) for p in paths)  # opened one at a time
    else:
        try:
            sources = [
                Microphone(find_device(device), bundle.spec.sample_rate, buffer_s=buffer, max_s=duration)
            ]
        except AudioSourceError as e:
            raise fail(
                f"{e}; without a microphone, try: edge-emo listen --input sample", e.exit_code
            ) from None
    warned = False
    view = None
    web = None
    if serve or serve_address is not None:
        from edge_emo.web.server import DEFAULT_ADDRESS, WebView

        web = WebView(
            serve_address or DEFAULT_ADDRESS,
            serve_token,
            bundle.version,
            bundle.emotions,
            say=lambda m: typer.echo(m, err=True),
        )

    def on_update(update, summary) -> None:
        nonlocal warned
        if link is not None:
            link.send_update(
                _BridgeUpdate(update.time_s, update.intensities, update.dominant_index, update.speech)
            )
        if web is not None:
            web.publish(update, summary)
        if json_out:
            sys.stdout.write(update.to_json() + "\n")
            sys.stdout.flush()
        else:
            view.show(update, summary.dropped_blocks, summary.utterances)
        if summary.dropped_blocks and not warned:
            warned = True
            typer.secho(
                "warning: input overflow: processing fell behind and audio blocks are being dropped",
                err=True,
                fg=typer.colors.YELLOW,
            )

    try:
        for k, source in enumerate(sources):
            if k:
                recognizer = new_recognizer()  # a new stream: time 0, and the file's own sample rate
            if log is not None:
                log.start_stream(source.describe())
            if web is not None:
                web.start_stream(source.describe())
            view = None if json_out else LiveView(source.describe(), bundle.version)
            if json_out:
                typer.echo(f"listening: {source.describe()}, model {bundle.version}", err=True)
            try:
                with listening.stop_on_sigint() as stop, source:
                    if view is not None:
                        view.start()
                    try:
                        summary = listening.run(recognizer, source, on_update, stop)
                    finally:
                        if view is not None:
                            view.stop()
            except AudioSourceError as e:
                raise fail(str(e), e.exit_code) from None
            finally:
                recognizer.close()
            typer.echo(summary.describe(), err=True)
            damaged = getattr(source, "damaged", None)
            if damaged and not summary.audio_s:
                raise fail(f"{damaged}: nothing decodes")
            if damaged:
                typer.secho(f"warning: {damaged}; analysed what decoded", err=True, fg=typer.colors.YELLOW)
            if summary.interrupted:
                break
    finally:
        if link is not None:
            link.close()
        if web is not None:
            web.close()  # browsers are told that listen has ended
            typer.echo(web.describe(), err=True)
        if log is not None:
            log.close()  # what was collected is kept, however listening ended
            typer.echo(log.describe(), err=True)


@app.command()
@_guard
def timeline(
    log: Annotated[Path, typer.Argument(help="A listen JSON log (`edge-emo listen --json > LOG.jsonl`).")],
    out: Annotated[Path, typer.Option(help="The HTML page to write (self-contained).")],
    png: Annotated[
        bool, typer.Option(help="Also OUT as .png: the page drawn by a headless Chromium.")
    ] = False,
) -> None:
    """A listen JSON log as a timeline page: intensities over time, utterances and their dominant emotion."""
    from edge_emo.web.timeline import write_timeline

    for path in write_timeline(log, out, png, say=lambda m: typer.echo(m, err=True)):
        typer.echo(f"wrote {path}")


@app.command()
def devices() -> None:
    """List the audio input devices `edge-emo listen --device` can use (* marks the default)."""
    from edge_emo.runtime.audio_input import AudioSourceError, input_devices

    try:
        found = input_devices()
    except AudioSourceError as e:
        raise fail(str(e), e.exit_code) from None
    if not found:
        raise fail("no audio input device found", 3)
    for d in found:
        typer.echo(
            f"{'*' if d.is_default else ' '}{d.index:3d}  {d.name}  "
            f"({d.host_api}, {d.channels} in, {d.default_rate} Hz default)"
        )


@app.command("bridge-monitor")
def bridge_monitor(
    url: Annotated[
        str,
        typer.Argument(
            help="udp://HOST:PORT (binds and listens), serial:///dev/ttyUSB0?baud=115200, or - (stdin)."
        ),
    ],
    count: Annotated[
        Optional[int], typer.Option("--count", min=1, help="Stop after this many frames.")
    ] = None,
    timeout: Annotated[
        Optional[float], typer.Option("--timeout", min=0.0, help="Stop after this many seconds.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per frame (emotions by name), then the counters.")
    ] = False,
    raw: Annotated[
        bool, typer.Option(help="Wire values as `bridge_tool decode` prints them (indices, levels 0..255).")
    ] = False,
) -> None:
    """Decode a live firmware-bridge stream: print every frame (emotion names, intensities 0..3) and the
    error counters, live on stderr and at the end (a bench tool)."""
    from firmware_bridge.monitor import Style, run_monitor

    if json_out and raw:
        raise fail("--json and --raw are two output styles: choose one")
    style = Style.json if json_out else Style.raw if raw else Style.text
    try:
        received, _ = run_monitor(url, count=count, timeout_s=timeout, style=style)
    except ValueError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"cannot open {url}: {e}") from None
    if count is not None and received < count:
        raise fail(f"only {received} of {count} frames arrived", code=1)


# --- on-device personalization: record, personalize ------------------------------------------------------


@app.command()
@_guard
def record(
    labels: Annotated[
        Path, typer.Option(help="The wearer's labels.csv (created if missing); clips go to clips/ beside it.")
    ],
    input_files: Annotated[
        Optional[list[Path]],
        typer.Option("--input", help="Import these audio files (one clip each) instead of recording."),
    ] = None,
    label: Annotated[
        Optional[list[str]],
        typer.Option(help="Labels of the clip(s), e.g. happy=2 (repeatable); asked for when not given."),
    ] = None,
    seconds: Annotated[float, typer.Option(help="Seconds to record from the microphone.", min=0.5)] = 4.0,
    device: Annotated[
        Optional[str], typer.Option(help="Input device, by index or name (see `edge-emo devices`).")
    ] = None,
    speaker: Annotated[str, typer.Option(help="Speaker name written in labels.csv.")] = "wearer",
) -> None:
    """Record a clip from the microphone (or import audio files), label it and add it to labels.csv."""
    from edge_emo.data.labels import EMOTIONS, read_labels
    from edge_emo.features import audio_seconds, load_audio
    from edge_emo.features.speech import Vad, speech_seconds
    from edge_emo.options import check_range
    from edge_emo.personalize.record import (
        LABEL_HELP,
        MAX_CLIP_S,
        append_label,
        capture,
        check_clip_length,
        parse_labels,
        save_clip,
    )
    from edge_emo.runtime.audio_input import AudioSourceError

    check_range("--seconds", seconds, 0.5, MAX_CLIP_S)
    given = parse_labels(" ".join(label)) if label else None
    if labels.exists():
        read_labels(labels)  # a broken labels.csv is reported before anything is recorded
    _recover([], labels)
    if input_files:
        for p in input_files:  # from the header, before decoding: a 2-hour file is refused at once
            check_clip_length(audio_seconds(p), str(p))
        clips = [(str(p), *load_audio(p)) for p in input_files]
    else:

        def speak() -> None:  # once the device is recording, not before finding there is none
            typer.echo(f"recording {seconds:g} s: speak now", err=True)

        try:
            clips = [("microphone", *capture(device, seconds, speak))]
        except AudioSourceError as e:
            raise fail(f"{e}; without a microphone, import files with --input", e.exit_code) from None
    vad = Vad()
    for name, signal, rate in clips:  # every clip is checked before anything is written
        if speech_seconds(signal, rate, vad) < vad.min_speech_s:
            raise ValueError(f"{name}: no speech (voice-activity detector: {vad.describe}); nothing recorded")
    for name, signal, rate in clips:
        intensities = given
        while intensities is None:
            try:
                intensities = parse_labels(typer.prompt(f"labels for {name} ({LABEL_HELP})"))
            except ValueError as e:
                typer.secho(f"  {e}", err=True, fg=typer.colors.YELLOW)
        clip = save_clip(labels, signal, rate)
        append_label(labels, clip, speaker, intensities)
        named = " ".join(f"{e}={v:g}" for e, v in zip(EMOTIONS, intensities) if v) or "neutral"
        typer.echo(f"added {clip.relative_to(labels.parent)} ({named}) to {labels}")


def _is_installed_model(path: Path) -> bool:
    """True for bundles inside the installed package (the shipped model): never personalized in place."""
    return Path(__file__).parent.resolve() in path.resolve().parents


@app.command()
@_guard
def personalize(
    labels: Annotated[
        Optional[Path], typer.Option(help="The wearer's labels.csv (see `edge-emo record`).")
    ] = None,
    model: Annotated[
        Optional[Path], typer.Option(help="Bundle to start from (default or 'shipped': the shipped model).")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            help="Bundle to write (default: --model itself if it is your own bundle, else "
            "~/.local/share/edge-emo/personal.bundle); the one it replaces is kept as .prev."
        ),
    ] = None,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Undo the last personalization at --out (or --model): back to the bundle it replaced, "
            "or to the model it was made from (the shipped one by default).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object with the result.")] = False,
    unlabeled: Annotated[
        Optional[Path],
        typer.Option(
            help="A feature log of the partner's speech (`listen --log-features DIR`, 60 s or more): adapt "
            "the input normalisation to it, without labels."
        ),
    ] = None,
    trust: TrustOpt = None,
    sign: SignOpt = None,
) -> None:
    """Adapt the model to the wearer's partner: the head from labeled clips, the input normalisation from
    unlabeled speech (closed-form, no torch); kept only if better on held-out clips. Or --rollback."""
    from edge_emo.personalize import wearer
    from edge_emo.signing import signer

    _trust(trust)
    if model is not None and str(model) == "shipped":
        model = None
    if out is None:
        out = model if model is not None and not _is_installed_model(model) else wearer.personal_bundle_path()
    _recover([out])
    if rollback:
        if labels is not None:
            raise ValueError("--rollback takes no --labels")
        typer.echo(wearer.rollback(out).describe(out, default=out == wearer.personal_bundle_path()))
        return
    if labels is None and unlabeled is None:
        raise ValueError(
            "--labels (the wearer's labels.csv, see `edge-emo record`) or --unlabeled (a feature log) is required"
        )
    result = wearer.personalize(
        _model_bundle(model).path, labels, out, unlabeled, sign=signer(sign) if sign else None
    )
    if json_out:
        typer.echo(json.dumps(wearer.result_dict(result)))
        return
    typer.echo(wearer.describe(result, out))


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option(help="A short run (about a minute) that proves the bench works.")
    ] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write the results as JSON here.")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Model bundle (default: the bundled model).")] = None,
    live_only: Annotated[
        bool, typer.Option(help="Only the live CPU share of `listen` (about 2 minutes; with --quick 20 s).")
    ] = False,
) -> None:
    """Measure latency, real-time factor, memory and size (fp32 vs int8 vs torch); print a Markdown table."""
    from benchmarks.bench import markdown, run, run_live
    from edge_emo.runtime.bundle import BundleError

    try:
        result = (run_live if live_only else run)(_model_bundle(model).path, quick=quick)
    except (BundleError, ValueError) as e:
        raise fail(str(e)) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    typer.echo(markdown(result))
    for warning in result["warnings"]:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)


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
    baseline_until: Annotated[
        int, typer.Option(help="Train the baseline only at budgets up to this many labels (0: at all).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the draws, pretraining and training.")] = 0,
    feature_set: Annotated[
        Optional[FeatureSetChoice],
        typer.Option(
            help="Features (default: covarep for MOSEI, else egemaps; with --init: the checkpoint's)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of every model (Adam, MSE).")] = 30,
    pos_weight: PosWeightOpt = 1.0,
    lr: Annotated[float, typer.Option(help="Adam learning rate of fine-tuning.")] = 1e-3,
    pretrain_epochs: Annotated[int, typer.Option(help="Masked-span pretraining epochs.")] = 12,
    loss_on: Annotated[
        LossOnChoice, typer.Option(help="Pretraining loss on masked frames only or on all frames.")
    ] = LossOnChoice.masked,
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
    import os
    import sys

    import numpy as np

    from edge_emo.data.corpus import load_corpus
    from edge_emo.data.splits import speaker_folds
    from edge_emo.experiment.report import macro_f1_lines, report_cv, report_run
    from edge_emo.experiment.runner import (
        ExperimentConfig,
        Fold,
        capped_budgets,
        parse_budgets,
        run_experiment,
    )
    from edge_emo.progress import log
    from edge_emo.train.checkpoint import load_checkpoint

    if init is not None and loss_variant:
        raise ValueError("--loss-variant pretrains with both losses: it cannot be used with --init")
    if draws < 1 or baseline_draws < 0:
        raise ValueError("--draws must be >= 1 and --baseline-draws >= 0")
    baseline_draws = min(baseline_draws, draws)  # "the baseline on up to 5 of the draws"
    if cv and eval_dir is not None:
        raise ValueError("--cv speakers evaluates on DATA_DIR's own speakers: it cannot be used with --eval")
    budget_list = parse_budgets(budgets)
    pre = load_checkpoint(init) if init else None
    if pre is not None and feature_set is not None and feature_set.value != pre.spec.name:
        raise ValueError(f"--feature-set {feature_set.value} differs from the checkpoint's ({pre.spec.name})")
    spec = (
        pre.spec
        if pre
        else _spec(feature_set.value if feature_set else _default_feature_set([data_dir], False))
    )
    if (train_gains or eval_gain) and not cv:
        raise ValueError("--train-gains and --eval-gain need --cv speakers")
    if cv:
        clips = load_corpus(data_dir, spec)
        heard = load_corpus(data_dir, spec, gain=_gain(eval_gain)) if eval_gain else clips
        renditions = [load_corpus(data_dir, spec, gain=g) for g in _gains(train_gains)]
        fold_list = []
        for i, held_out in enumerate(speaker_folds(clips.speakers, folds, split_seed), 1):
            held = np.isin(clips.speakers, held_out)
            train, val = clips.subset(np.flatnonzero(~held)), heard.subset(np.flatnonzero(held))
            fold = Fold(f"cv{i}", train, val, data_dir, data_dir)
            fold.train_renditions = [r.subset(np.flatnonzero(~held)) for r in renditions]
            fold_list.append(fold)
    elif eval_dir is None:
        train, val = (load_corpus(data_dir, spec, s, split_seed) for s in ("train", "val"))
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
    config = ExperimentConfig(
        budgets=budget_list,
        draws=draws,
        baseline_draws=baseline_draws,
        epochs=epochs,
        lr=lr,
        pretrain_epochs=pretrain_epochs,
        loss_on=loss_on.value,
        loss_variant=loss_variant,
        full_from=full_finetune_from,
        hidden=pre.model.config.hidden if pre else hidden,
        layers=pre.model.config.layers if pre else layers,
        seed=seed,
        reference=reference,
        workers=workers or os.cpu_count() or 1,
        pos_weight=pos_weight,
        baseline_until=baseline_until,
    )
    unlabeled_sets = [load_corpus(d, spec) for d in unlabeled or []]
    ordinary_sets = [load_corpus(d, spec) for d in ordinary or []]
    audio = all((d / "manifest.csv").is_file() or (d / "labels.csv").is_file() for d in ordinary or [])
    for f in fold_list:
        f.ordinary = ordinary_sets
        f.ordinary_dirs = list(ordinary or []) if audio and f.eval_dir is not None else []
    settings = {
        "data": str(data_dir.resolve()),
        "eval": str(eval_dir.resolve())
        if eval_dir
        else f"{folds}-fold speaker cross-validation (split seed {split_seed})"
        if cv
        else f"validation speakers (split seed {split_seed})",
        "unlabeled": [str(d.resolve()) for d in unlabeled or []],
        "feature_set": spec.name,
        "init": str(init.resolve()) if init else None,
        "split_seed": split_seed,
        # Only when used, so that runs from before these options resume as they were.
        **({"train_gains": train_gains} if train_gains else {}),
        **({"eval_gain": eval_gain} if eval_gain else {}),
        **({"ordinary": [str(d.resolve()) for d in ordinary]} if ordinary else {}),
    }
    results, budget_list, notes = run_experiment(
        fold_list, unlabeled_sets, config, out, settings, pre, functools.partial(log, file=sys.stdout)
    )
    notes = list(dict.fromkeys(notes))  # every fold caps the same budgets
    for note in notes:
        typer.echo(f"note: {note}")
    if cv:
        cv_budgets, _ = capped_budgets(config.budgets, max(len(f.train) for f in fold_list))
        summary = report_cv(out, results, fold_list, cv_budgets, draws, notes, {**settings, **vars(config)})
        for line in macro_f1_lines(summary):
            typer.echo(line)
        typer.echo(f"wrote {out}/results.csv, summary.json, table1.md, folds.md, differences.md and plots")
        return
    summary = report_run(
        out, results, fold, budget_list[fold.name], draws, notes, {**settings, **vars(config)}
    )
    ends = (budget_list[fold.name][0], budget_list[fold.name][-1])
    for line in macro_f1_lines(summary, ends):
        typer.echo(line)
    diff = summary["differences"].get("ssl - baseline", {})
    for b in ends:
        if str(b) in diff:
            d = diff[str(b)]["macro_f1"]
            ci = "" if d["ci95"] is None else f" (95% interval {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"
            typer.echo(f"{b} labels: SSL minus baseline macro-F1 {d['mean']:+.3f}{ci}")
    typer.echo(f"wrote {out}/results.csv, summary.json, table1.md, differences.md and plots")

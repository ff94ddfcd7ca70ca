"""The `edge-emo` command line: each command parses its options, calls one function of its stage's module
and prints what it returns; the work lives in the stages. Heavy modules are imported inside each command,
so device commands (listen, personalize, devices, bridge-monitor) never import torch.

No `from __future__ import annotations` here: typer reads the `Annotated[..., typer.Option(...)]` metadata
from evaluated annotations, and on Python 3.9 it gets only strings from postponed ones and silently drops
every option name and help text (tests/boards runs the CLI on 3.9). So: `Optional[X]`, never `X | None`."""

import dataclasses
import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_emo.data.gain import RANDOM_GAIN_DB
from edge_emo.data.splits import Split
from edge_emo.features.spec import FeatureSet
from edge_emo.train import LossOn

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


class CvChoice(str, Enum):
    speakers = "speakers"


def _say(message: str) -> None:
    """A line on stderr (warnings in yellow)."""
    typer.secho(message, err=True, fg=typer.colors.YELLOW if message.startswith("warning") else None)


def _options(cls, given: dict):
    """The options dataclass `cls` of a command from its parameters (`locals()`; same names), choices as
    their values."""
    values = {f.name: given[f.name] for f in dataclasses.fields(cls)}
    return cls(**{k: v.value if isinstance(v, Enum) else v for k, v in values.items()})


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
    feature_set: Annotated[FeatureSet, typer.Option(help="openSMILE low-level descriptors to extract.")] = (
        FeatureSet.egemaps
    ),
) -> None:
    """Extract (or reuse the cached) frame-level features of corpora and print a summary."""
    from edge_emo.data.corpus import cache_dir, load_corpus
    from edge_emo.data.sources import feature_spec

    spec = feature_spec(feature_set.value)
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
    pretrain_to_file(data, config, out, hidden, layers, save_every_steps, resume, _say, log)


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
        Optional[FeatureSet],
        typer.Option(help="Features for the baseline (with --init: the checkpoint's)."),
    ] = None,
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
    data = TrainingData(
        labeled=list(data_dirs or []),
        neutral=list(neutral or []),
        mosei=(mosei_covarep, mosei_labels) if mosei_covarep else None,
        split=split.value,
        split_seed=split_seed,
        cut=cut.value,
        gains=parse_gains(train_gains),
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
    fs = feature_set.value if feature_set else None
    typer.echo(finetune_to_file(data, config, out, init, fs, full, budget, hidden, layers, train_gains))


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
    from edge_emo.evaluation import evaluate_model

    _trust(trust)
    rep, text = evaluate_model(
        model,
        data_dir,
        (mosei_covarep, mosei_labels),
        split.value,
        split_seed,
        cut.value,
        predictions,
        speaker_estimate,
        _say,
    )
    typer.echo(json.dumps(rep) if json_out else text)


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
    from edge_emo.export import export_bundle

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


def _recover(bundles: list[Path], labels: Optional[Path] = None) -> None:
    """Finish or undo what a killed personalize/record left, one line on stderr for each thing done."""
    from edge_emo.personalize.choice import recovered

    for line in recovered(bundles, labels):
        typer.echo(f"recovered: {line}", err=True)


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
    from edge_emo.personalize.choice import listen_bundle
    from edge_emo.runtime.audio_input import AudioSourceError
    from edge_emo.runtime.listen import ListenOptions
    from edge_emo.runtime.listen import listen as run_listen

    options = _options(ListenOptions, locals())
    options.check()
    _trust(trust)
    _recover([model] if model is not None and str(model) != "shipped" else [])
    try:
        run_listen(listen_bundle(model), options, _say)
    except AudioSourceError as e:
        raise fail(str(e), e.exit_code) from None


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
    from edge_emo.personalize.record import LABEL_HELP, parse_labels
    from edge_emo.personalize.record import record as record_clips
    from edge_emo.runtime.audio_input import AudioSourceError

    def ask(name: str) -> tuple[float, ...]:
        while True:
            try:
                return parse_labels(typer.prompt(f"labels for {name} ({LABEL_HELP})"))
            except ValueError as e:
                typer.secho(f"  {e}", err=True, fg=typer.colors.YELLOW)

    given = parse_labels(" ".join(label)) if label else None
    recover = functools.partial(_recover, [], labels)
    try:
        record_clips(labels, input_files, given, seconds, device, speaker, ask, recover, _say, typer.echo)
    except AudioSourceError as e:
        raise fail(f"{e}; without a microphone, import files with --input", e.exit_code) from None


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
    from edge_emo.personalize.choice import personalize_out
    from edge_emo.runtime.shipped import model_bundle
    from edge_emo.signing import signer

    _trust(trust)
    if model is not None and str(model) == "shipped":
        model = None
    out = personalize_out(model, out)
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
        model_bundle(model).path, labels, out, unlabeled, sign=signer(sign) if sign else None
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
    from edge_emo.bench.core import markdown, run, run_live
    from edge_emo.runtime.bundle import BundleError
    from edge_emo.runtime.shipped import model_bundle

    try:
        result = (run_live if live_only else run)(model_bundle(model).path, quick=quick)
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
    import sys

    from edge_emo.experiment.folds import ExperimentOptions, run
    from edge_emo.progress import log

    run(_options(ExperimentOptions, locals()), functools.partial(log, file=sys.stdout), typer.echo)

"""The `edge-emo` command line: each command parses its options, calls one function of its stage's module
and prints what it returns; the work lives in the stages. Heavy modules are imported inside each command,
so device commands (listen, personalize, devices, bridge-monitor) never import torch. The device and
command-line commands are here; training, evaluation and export in edge_emo/cli_training.py; what they
share in edge_emo/cli_options.py (see there why no `from __future__ import annotations`)."""

import functools
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_emo.cli_options import (
    SignOpt,
    TrustOpt,
    fail,
    guard,
    options_of,
    reader_gone,
    say,
    trust_keys,
)
from edge_emo.cli_training import COMMANDS

app = typer.Typer(
    help="Speech emotion recognition for wearables: train, export, listen, personalize.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


# Training, evaluation and export (edge_emo/cli_training.py), first in `--help` as before.
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


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
@guard
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
    update_interval: Annotated[
        Optional[float],
        typer.Option(
            help="Seconds of audio between updates (default: one model chunk, the bundle's).", min=0.01
        ),
    ] = None,
    smoothing: Annotated[
        float,
        typer.Option(help="Time constant (s) of exponential smoothing of the intensities; 0: none.", min=0),
    ] = 0.0,
    cue_after: Annotated[
        Optional[float],
        typer.Option(
            help="Seconds of speech an utterance needs before its estimate is shown (its final result is "
            "always shown); default: 1.5 s (the first words' estimate is noise).",
        ),
    ] = None,
    vad_threshold_db: Annotated[
        Optional[float],
        typer.Option(
            help="A fixed level (dBFS) at which audio counts as speech; default: a threshold 12 dB above the "
            "noise floor it tracks (-70..-25 dBFS)."
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
    graph: Annotated[
        Optional[str],
        typer.Option(
            help="Run this graph of the bundle (int8, fp32-gru); default: the faster on this machine, "
            "measured on the first run and remembered."
        ),
    ] = None,
) -> None:
    """Recognize emotions live from the microphone (or a file); a terminal view, or JSON lines with --json."""
    from edge_emo.personalize.choice import listen_bundle
    from edge_emo.runtime.audio_input import AudioSourceError
    from edge_emo.runtime.listen import ListenOptions
    from edge_emo.runtime.listen import listen as run_listen

    options = options_of(ListenOptions, locals())
    options.check()
    trust_keys(trust)
    _recover([model] if model is not None and str(model) != "shipped" else [])
    try:
        run_listen(listen_bundle(model), options, say)
    except AudioSourceError as e:
        raise fail(str(e), e.exit_code) from None


@app.command()
@guard
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
    except BrokenPipeError:
        raise reader_gone() from None
    except OSError as e:
        raise fail(f"cannot open {url}: {e}") from None
    if count is not None and received < count:
        raise fail(f"only {received} of {count} frames arrived", code=1)


# --- on-device personalization: record, personalize ------------------------------------------------------


@app.command()
@guard
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
        record_clips(labels, input_files, given, seconds, device, speaker, ask, recover, say, typer.echo)
    except AudioSourceError as e:
        raise fail(f"{e}; without a microphone, import files with --input", e.exit_code) from None


@app.command()
@guard
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
            "the input normalisation to it, without labels (a speaker-adapting bundle does that itself: "
            "there, with --labels, the log only sets how the labeled clips are heard)."
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

    trust_keys(trust)
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
    from edge_emo.files import replace_file
    from edge_emo.runtime.bundle import BundleError
    from edge_emo.runtime.shipped import model_bundle

    if out is not None and out.is_dir():  # said before minutes of measuring, not after
        raise fail(f"{out}: is a folder, not a file name")
    try:
        result = (run_live if live_only else run)(model_bundle(model).path, quick=quick)
    except (BundleError, ValueError) as e:
        raise fail(str(e)) from None
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            replace_file(out, (json.dumps(result, indent=1) + "\n").encode())
        except OSError as e:
            raise fail(f"could not write {out}: {e.strerror or e}") from None
    typer.echo(markdown(result))
    for warning in result["warnings"]:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)

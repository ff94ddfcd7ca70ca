"""What every `edge-emo` command shares: the one-line error for bad input (`guard`), the options several
commands take, and the choices they offer. Both command modules (edge_emo/cli.py: the device and the
command line itself; edge_emo/cli_training.py: training, evaluation, export) read them from here.

No `from __future__ import annotations` here or there: typer reads the `Annotated[..., typer.Option(...)]`
metadata from evaluated annotations, and on Python 3.9 it gets only strings from postponed ones and silently
drops every option name and help text (tests/boards runs the CLI on 3.9). So: `Optional[X]`, never
`X | None`."""

import dataclasses
import functools
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_emo.data.gain import NOISY_SNR_DB, RANDOM_GAIN_DB
from edge_emo.data.splits import Split


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


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


def say(message: str) -> None:
    """A line on stderr (warnings in yellow)."""
    typer.secho(message, err=True, fg=typer.colors.YELLOW if message.startswith("warning") else None)


def options_of(cls, given: dict):
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


def trust_keys(keys: Optional[list[Path]]) -> None:
    from edge_emo.signing import trust

    trust(keys or [])


# The exit status of a program whose reader went away (128 + SIGPIPE), as `yes | head` ends.
READER_GONE = 141


def guard(fn):
    """Turn input errors into a one-line message and exit code 2. A reader that closes the output early
    (`edge-emo listen --json | head`) ends the command quietly, after its own clean-up, as it would end any
    Unix tool."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            raise reader_gone() from None
        except INPUT_ERRORS as e:
            raise fail(str(e)) from None

    return wrapper


def reader_gone() -> SystemExit:
    """Point stdout at /dev/null (Python's last flush at exit would fail again) and exit with READER_GONE."""
    import contextlib
    import os
    import sys

    with contextlib.suppress(OSError, ValueError):  # no stdout file to point anywhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return SystemExit(READER_GONE)


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
HopOpt = Annotated[
    Optional[int],
    typer.Option(
        "--hop-ms",
        help="Milliseconds between feature frames: 10 (openSMILE's own; the default) or 20 (the same "
        "descriptors half as often: about half the front end's and the model's CPU on the device).",
    ),
]
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
        f"'random' ({RANDOM_GAIN_DB[0]:+g}..{RANDOM_GAIN_DB[1]:+g} dB per clip), each optionally in a noisy "
        f"room ('-20+noisy', 'random+noisy'; 'noisy' alone: 0 dB; pink noise {NOISY_SNR_DB[0]:g}.."
        f"{NOISY_SNR_DB[1]:g} dB below the speech per clip); every epoch each clip is heard plain or through "
        "one of them.",
    ),
]


CutAtGainOpt = Annotated[
    bool,
    typer.Option(
        help="With --train-gains and --cut speech: cut each gained clip as the voice detector hears it at "
        "that gain, as the device would (a clip it hears no speech in is used as recorded).",
    ),
]


PosWeightOpt = Annotated[
    float,
    typer.Option(
        help="Fine-tuning: weight of the squared error where an emotion is present (class balance)."
    ),
]

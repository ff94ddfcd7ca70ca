"""The wearer's clips for the personalization tests: speech-like WAVs with labels that follow the voice's
loudness (so a head can learn them), in the labels.csv layout `edge-emo record` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from edge_emo.features import extract_file, load_audio
from edge_emo.features.speech import utterance_spans
from tests.fixtures import synth_speech, write_wav

N_CLIPS = 24


def wearer_intensities(i: int) -> np.ndarray:
    values = np.zeros(len(EMOTIONS))
    values[i % 3] = 1 + i % 3  # happiness, sadness or anger at 1..3
    return values


def speech_of(path: Path, spec) -> np.ndarray:
    """A labeled clip's frames as `personalize` fits on them: from the first to the last frame the device's
    voice detector calls speech."""
    spans = utterance_spans(*load_audio(path), hop_s=spec.hop_s)
    return extract_file(path, spec)[spans[0][0] : spans[-1][1]]


def write_wearer(folder: Path, n: int = N_CLIPS, seconds: float = 1.0) -> Path:
    """`n` clips under folder/clips and folder/labels.csv naming them."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = ["path,speaker,corpus,emotion," + ",".join(EMOTIONS)]
    for i in range(n):
        rel = f"clips/{i + 1:04d}.wav"
        write_wav(folder / rel, synth_speech(seconds, seed=300 + i) * (0.15 + 0.3 * (i % 3)))
        values = wearer_intensities(i)
        rows.append(f"{rel},wearer,wearer,{EMOTIONS[i % 3]}," + ",".join(f"{v:g}" for v in values))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


@pytest.fixture(scope="session")
def wearer_labels(tmp_path_factory) -> Path:
    return write_wearer(tmp_path_factory.mktemp("wearer"))


def write_happy_wearer(folder: Path, n: int = N_CLIPS, seconds: float = 1.0, emotion: int = 0) -> Path:
    """The wearer's clips all labeled happiness 3 (or EMOTIONS[emotion]): any model learns that from a
    handful of clips (its bias alone does), so the guard accepts the new head whatever the bundle."""
    labels = write_wearer(folder, n, seconds)
    rows = labels.read_text().splitlines()
    values = ",".join("3" if i == emotion else "0" for i in range(len(EMOTIONS)))
    rows[1:] = [",".join([*r.split(",")[:3], "happy", values]) for r in rows[1:]]
    labels.write_text("\n".join(rows) + "\n")
    return labels

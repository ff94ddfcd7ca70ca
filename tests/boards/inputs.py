"""The inputs every environment runs on (tests/boards and benchmarks/aarch64): a speech-like WAV, and raw
feature clips that device_check.py feeds to each bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_emo.features import extract_file, spec_for
from tests.fixtures import synth_speech, write_wav


def write_inputs(directory: Path) -> list[np.ndarray]:
    """Write `speech.wav` and `clips.npz` into `directory`; returns the clips. The clips are raw frames
    around the test checkpoints' normalisation statistics (1 to 120 frames: shorter than, equal to and
    longer than a chunk) and, last, the eGeMAPS frames of the WAV extracted here, so every environment
    runs the bundles on the same real features."""
    write_wav(directory / "speech.wav", synth_speech(3.0, seed=11))
    rng = np.random.default_rng(4)
    clips = [(rng.standard_normal((n, 25)) * 3 + 5).astype(np.float32) for n in (1, 9, 10, 37, 120)]
    clips.append(extract_file(directory / "speech.wav", spec_for("egemaps")))
    np.savez(directory / "clips.npz", **{f"clip{i}": c for i, c in enumerate(clips)})
    return clips

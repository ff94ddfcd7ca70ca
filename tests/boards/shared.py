"""What tests/boards and benchmarks/aarch64 share: the inputs every environment runs on (a speech-like WAV and
raw feature clips that device_check.py feeds to each bundle), and the comparison of two `edge-emo listen
--json` outputs."""

from __future__ import annotations

import json
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


def listen_differences(expected: str, got: str) -> dict:
    """Two `edge-emo listen --json` outputs: update counts, whether the update times, speech and final flags
    agree, and the largest difference of an intensity."""
    a = [json.loads(line) for line in expected.splitlines()]
    b = [json.loads(line) for line in got.splitlines()]
    flags = ("time_s", "speech", "final")
    same = len(a) == len(b) and all(x[k] == y[k] for x, y in zip(a, b) for k in flags)
    largest = max(
        (abs(x["intensities"][e] - y["intensities"][e]) for x, y in zip(a, b) for e in x["intensities"]),
        default=0.0,
    )
    return {"updates": [len(a), len(b)], "same_times_and_flags": same, "max_intensity_difference": largest}

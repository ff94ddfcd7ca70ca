"""benchmarks/latency.py: paced_latency of a checkout and a bundle in a child interpreter, A B A B."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_latency_of_a_checkout_and_a_bundle_in_turn(bundle, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", "--rounds", "2", "--seconds", "2", f".={bundle.path}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:
        assert r["chunk_frames"] == bundle.chunk_frames
        # a frame waits for openSMILE's look-ahead at least, and the update of its chunk at most a chunk more
        assert (
            0 < r["waiting_for_audio_median_ms"] <= r["newest_frame_median_ms"] <= r["every_frame_median_ms"]
        )

    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", f"{tmp_path}={bundle.path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "expected CHECKOUT=BUNDLE" in bad.stderr and "Traceback" not in bad.stderr

"""benchmarks/profile_live.py: `perf` on a live `listen` from the microphone path names openSMILE's thread and
library among where the CPU goes (needs perf, which the test machine has; skipped where it is missing)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.cli import cli_env


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
def test_the_profile_of_a_live_listen_names_threads_and_libraries():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_live", "--seconds", "3"],
        capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    if run.returncode != 0 and "perf record failed" in run.stderr and "paranoid" in run.stderr:
        pytest.skip("perf may not record here (perf_event_paranoid)")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "samples in 3 s:" in lines[0] and lines[0].endswith("% of one core")
    threads = lines[lines.index("by thread:") + 1 : lines.index("by library:")]
    assert any(line.endswith("edge-emo-smile") for line in threads)
    assert any("libSMILEapi" in line for line in lines[lines.index("by library:") :])

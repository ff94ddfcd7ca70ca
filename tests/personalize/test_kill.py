"""Killed at any instant, `edge-emo personalize` and `edge-emo record` leave a valid bundle and a valid
labels.csv: SIGKILL at seeded random delays across each command's run time, 50 times, checked every time."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from edge_emo.data.labels import read_labels
from edge_emo.runtime.bundle import BundleError, load_bundle
from tests.cli import CLI, ROOT, cli_env, edge_emo
from tests.personalize.conftest import write_wearer

KILLS = {"personalize": 25, "record": 25}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=cli_env()
    )


def run_time(args: list[str]) -> float:
    began = time.monotonic()
    proc = start(*args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - began


def valid_bundle(path: Path) -> str:
    """The version of the bundle at `path`, or of path.prev when a swap was cut between its two renames."""
    try:
        return load_bundle(path).version
    except BundleError:
        assert not path.exists(), f"{path} exists but is not a valid bundle"
        return load_bundle(f"{path}.prev").version


def kill_at_random(args: list[str], times: int, rng: random.Random, check) -> int:
    """Run `args` `times` times, SIGKILL each at a random instant of its usual run; `check()` after each.
    Returns how many runs were killed before they finished."""
    duration = run_time(args)
    check()
    killed = 0
    for _ in range(times):
        proc = start(*args)
        time.sleep(rng.uniform(0.1, 0.95) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=120)
        check()
    return killed


def test_kills_during_personalize_and_record_leave_valid_files(bundles, tmp_path):
    labels = write_wearer(tmp_path / "me", n=5, seconds=0.6)
    model = tmp_path / "personal.bundle"
    shutil.copytree(bundles["int8"].path, model)
    rng = random.Random(6)
    rows = len(read_labels(labels))

    def check_personalize() -> None:
        valid_bundle(model)
        assert len(read_labels(labels)) == rows

    killed = kill_at_random(
        ["personalize", "--model", str(model), "--labels", str(labels)],
        KILLS["personalize"],
        rng,
        check_personalize,
    )

    def check_record() -> None:
        nonlocal rows
        now = len(read_labels(labels))
        assert now in (rows, rows + 1)
        rows = now
        valid_bundle(model)

    clip = labels.parent / "clips/0001.wav"
    killed += kill_at_random(
        ["record", "--labels", str(labels), "--input", str(clip), "--label", "happy=1"],
        KILLS["record"],
        rng,
        check_record,
    )
    assert killed >= 25  # at least half of the runs were really cut short (run times vary on a busy machine)
    # And everything still works afterwards.
    edge_emo("personalize", "--model", model, "--labels", labels, check=True)
    load_bundle(model)
    # .prev exists once a personalization was written (the held-out guard keeps the current bundle when the
    # new head is not better, and then writes nothing); whenever it exists it is valid
    if Path(f"{model}.prev").exists():
        load_bundle(f"{model}.prev")

"""Progress as a person sees it: in a real pseudo-terminal, bars with a rate and an ETA, log lines above them
and a summary line that stays; on a pipe, only the summaries."""

from __future__ import annotations

import os
import re
import subprocess

from tests.cli import CLI, ROOT, cli_env, python, read_terminal

COLOURS = re.compile(r"\x1b\[[0-9;]*m")
MOVES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def in_a_terminal(args: list[str], timeout_s: float = 300) -> tuple[int, str]:
    """Run `args` with stdout and stderr on a pseudo-terminal; its exit code and what the screen got
    (control sequences removed, each redraw on a line of its own)."""
    master, slave = os.openpty()
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"})
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, cwd=ROOT, env=env)
    os.close(slave)
    raw = read_terminal(master, proc, timeout_s)
    os.close(master)
    code = proc.wait(timeout=30)
    text = raw.decode(errors="replace")
    return code, MOVES.sub("\n", COLOURS.sub("", text))


def test_a_stage_shows_rate_and_eta_logs_above_and_a_summary_that_stays():
    code = (
        "import time\n"
        "from edge_emo.progress import log, progress\n"
        "for i in progress(range(6), 'demo work', unit='clips'):\n"
        "    time.sleep(0.3)\n"
        "    if i == 2: log('a log line')\n"
    )
    import sys

    status, screen = in_a_terminal([sys.executable, "-c", code], timeout_s=60)
    assert status == 0, screen
    bars = [line for line in screen.splitlines() if line.startswith("demo work") and "/6" in line]
    assert bars, screen
    assert any("clips/s" in line and "eta" in line and re.search(r"0:00:0\d", line) for line in bars), bars
    lines = [line.strip() for line in screen.splitlines() if line.strip()]
    assert "a log line" in lines
    assert re.fullmatch(r"demo work: 6 clips in 0:0\d \(\d.* clips/s\)", lines[-1]), lines[-3:]


def test_on_a_pipe_only_the_summary_is_printed():
    run = python(
        "from edge_emo.progress import log, progress\n"
        "for i in progress(range(4), 'quiet work', unit='clips'):\n"
        "    log(f'clip {i}')\n"
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[:4] == ["clip 0", "clip 1", "clip 2", "clip 3"]
    assert lines[4].startswith("quiet work: 4 clips in 0:00") and len(lines) == 5


def test_pretraining_shows_its_steps_within_the_epoch(corpus, tmp_path):
    out = tmp_path / "pre.safetensors"
    args = ["pretrain", corpus, "--epochs", 2, "--hidden", 8, "--batch-size", 4, "--out", out]
    status, screen = in_a_terminal([*CLI, *map(str, args)])
    assert status == 0, screen
    lines = screen.splitlines()
    # 20 clips in batches of 4: 5 steps per epoch, 10 in all; the bar counts steps, not epochs.
    assert any(re.match(r"pretraining, epoch [12]/2 .* \d+/10 .* steps/s .* eta", line) for line in lines), (
        screen
    )
    # The epoch's log line is a line of its own (above the bar, not written onto it), and stays.
    epoch_log = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2: loss "))
    summary = next(i for i, line in enumerate(lines) if line.startswith("pretraining: 10 steps in"))
    assert epoch_log < summary


def test_fine_tuning_shows_its_steps(corpus, tmp_path):
    out = tmp_path / "base.safetensors"
    args = ["finetune", corpus, "--epochs", 3, "--batch-size", 8, "--hidden", 8, "--out", out]
    status, screen = in_a_terminal([*CLI, *map(str, args)])
    assert status == 0, screen
    lines = screen.splitlines()
    # 20 clips in batches of 8: 3 steps per epoch, 9 in all.
    # the bar redraws a few times a second: it shows some epoch's steps (the last one may finish unseen)
    assert any(re.match(r"baseline training, epoch [1-3]/3 .* \d/9 .* eta", line) for line in lines), screen
    assert any(line.startswith("baseline training: 9 steps in") for line in lines), screen

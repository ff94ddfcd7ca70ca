"""`edge-emo pretrain` under torchrun (2 CPU processes, gloo) and killed mid-run, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edge_emo.train.checkpoint import load_checkpoint, state_path
from tests.cli import ROOT
from tests.core.test_cli import edge_emo

# 16 clips (the train split) in global batches of 5: steps of 5, 5, 5 and 1 clip, so the processes get
# uneven shares and, in the last step, one of them none.
TINY = ("--split", "train", "--hidden", "16", "--batch-size", "5", "--seed", "3")


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def assert_same_weights(a, b, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=0, msg=name)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, "-m", "edge_emo", *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_two_processes_take_the_same_steps_as_one(corpus, tmp_path):
    one = edge_emo("pretrain", corpus, *TINY, "--epochs", "3", "--out", tmp_path / "one.safetensors")
    two = torchrun("pretrain", corpus, *TINY, "--epochs", "3", "--out", tmp_path / "two.safetensors")
    assert "in 2 process(es)" in two.stdout and two.stdout.count("wrote") == 1  # rank 0 alone reports
    assert "in 1 process(es)" in one.stdout
    assert_same_weights(tmp_path / "one.safetensors", tmp_path / "two.safetensors", atol=1e-6)
    history = [
        load_checkpoint(tmp_path / f).provenance["pretrain"]["loss_history"]
        for f in ("one.safetensors", "two.safetensors")
    ]
    assert history[0] == pytest.approx(history[1], abs=1e-4)
    assert not state_path(tmp_path / "two.safetensors").exists()  # a finished run leaves no training state


def test_a_killed_run_continues_where_it_stopped(corpus, tmp_path):
    out = tmp_path / "pre.safetensors"
    args = ["pretrain", corpus, *TINY, "--epochs", "40", "--save-every-steps", "1", "--out", out]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_emo", *map(str, args)], env=env)
    state = state_path(out)
    while not state.exists() and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists(), "the run ended before it could be killed"
    resumed = edge_emo(*args)  # the same command again: it finds the state next to --out
    assert "continuing from the training state" in resumed.stderr
    assert not state.exists()
    edge_emo(*args[:-1], tmp_path / "uninterrupted.safetensors")
    assert_same_weights(out, tmp_path / "uninterrupted.safetensors", atol=1e-6)
    assert len(load_checkpoint(out).provenance["pretrain"]["loss_history"]) == 40

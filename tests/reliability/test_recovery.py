"""Crash recovery and durability of the wearer's bundle and labels, on real runs of the command line.

A wrapper interpreter records every os.fsync (with the path of the descriptor) and os.replace of a real
`edge-emo` run, and can SIGKILL the process at a chosen rename: exactly between the two renames of the
bundle swap, the window a random kill rarely hits."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_emo.runtime.bundle import load_bundle
from tests.cli import ROOT, cli_env, edge_emo
from tests.personalize.conftest import write_happy_wearer

TRACED = """
import os, signal, sys
log = open(os.environ["TRACE_LOG"], "a")
kill_at = os.environ.get("KILL_AT")  # kill when a rename's source name contains this
real_fsync, real_replace = os.fsync, os.replace

def fsync(fd):
    log.write("fsync " + os.readlink(f"/proc/self/fd/{fd}") + "\\n"); log.flush()
    return real_fsync(fd)

def replace(src, dst, **kw):
    log.write(f"replace {os.fspath(src)} {os.fspath(dst)}\\n"); log.flush()
    if kill_at and kill_at in os.path.basename(os.fspath(src)):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, **kw)

os.fsync, os.replace = fsync, replace
from edge_emo.cli import app
app(sys.argv[1:], prog_name="edge-emo")
"""


def traced(
    tmp_path: Path, *args: object, kill_at: str | None = None
) -> tuple[subprocess.CompletedProcess, list]:
    """Run `edge-emo ARGS` under the tracer; returns the run and the trace (one tuple per call)."""
    log = tmp_path / "trace.log"
    log.unlink(missing_ok=True)
    env = cli_env(
        {
            "TRACE_LOG": str(log),
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            **({"KILL_AT": kill_at} if kill_at else {}),
        }
    )
    run = subprocess.run(
        [sys.executable, "-c", TRACED, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    lines = log.read_text().splitlines() if log.exists() else []
    return run, [tuple(line.split(" ")) for line in lines]


def xdg(tmp_path: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(tmp_path / "xdg")}


def record_args(wearer: Path, clip: str = "0001") -> list:
    """`edge-emo record` importing one of the wearer's own clips again."""
    return ["record", "--labels", wearer, "--input", wearer.parent / f"clips/{clip}.wav", "--label", "sad=1"]


@pytest.fixture
def wearer(tmp_path) -> Path:
    return write_happy_wearer(tmp_path / "me", n=5, seconds=0.6)


@pytest.fixture
def earlier_labels(tmp_path) -> Path:
    """Labels for a first personalization that the wearer's own labels then improve on (a personalization
    that changes nothing writes nothing, so the second run must have something to change)."""
    return write_happy_wearer(tmp_path / "before", n=5, seconds=0.6, emotion=1)


def test_bundle_files_and_folders_are_fsynced_before_each_rename(wearer, earlier_labels, tmp_path):
    out = tmp_path / "p.bundle"
    edge_emo("personalize", "--labels", earlier_labels, "--out", out, env=xdg(tmp_path), check=True)
    run, trace = traced(tmp_path, "personalize", "--labels", wearer, "--out", out)
    assert run.returncode == 0, run.stderr
    ours = [t for t in trace if any(str(tmp_path) in part for part in t[1:])]
    pid_tmp = (
        next(t[1] for t in ours if t[0] == "fsync" and ".tmp-" in t[1])
        .split("/p.bundle.tmp-")[1]
        .split("/")[0]
    )
    tmp, new = f"{out}.tmp-{pid_tmp}", f"{out}.new-{pid_tmp}"
    parent = str(tmp_path)
    assert ours == [
        ("fsync", f"{tmp}/model.onnx"),
        ("fsync", f"{tmp}/model-fp32-gru.onnx"),  # an int8 bundle's second graph
        ("fsync", f"{tmp}/manifest.json"),
        ("fsync", tmp),  # the folder: its entries are durable before it is renamed
        ("replace", tmp, new),
        ("fsync", parent),
        ("replace", str(out), f"{out}.prev"),
        ("fsync", parent),
        ("replace", new, str(out)),
        ("fsync", parent),
    ]


def test_labels_and_clips_are_fsynced_before_their_rename(wearer, tmp_path):
    clip = wearer.parent / "clips" / "0001.wav"
    run, trace = traced(tmp_path, "record", "--labels", wearer, "--input", clip, "--label", "happy=1")
    assert run.returncode == 0, run.stderr
    folder, clips = str(wearer.parent), str(wearer.parent / "clips")
    pid = next(t[1] for t in trace if t[0] == "replace").rsplit("-", 1)[1]
    assert trace == [
        ("fsync", f"{clips}/.0006.wav.tmp-{pid}"),
        ("replace", f"{clips}/.0006.wav.tmp-{pid}", f"{clips}/0006.wav"),
        ("fsync", clips),
        ("fsync", f"{folder}/.labels.csv.tmp-{pid}"),
        ("replace", f"{folder}/.labels.csv.tmp-{pid}", f"{folder}/labels.csv"),
        ("fsync", folder),
    ]


@pytest.mark.parametrize("command", ["listen", "record", "personalize"])
def test_a_kill_between_the_renames_is_recovered_at_the_next_start(wearer, earlier_labels, tmp_path, command):
    """The wearer's bundle (default place, made from the shipped model), personalized again and killed right
    after the old bundle became .prev and before the new one took its place: no personal.bundle at all.
    The next start of any of the three commands puts the validated new bundle in place and says so."""
    personal = tmp_path / "xdg" / "edge-emo" / "personal.bundle"
    edge_emo("personalize", "--labels", earlier_labels, env=xdg(tmp_path), check=True)
    first = load_bundle(personal).version
    run, _ = traced(tmp_path, "personalize", "--labels", wearer, "--json", kill_at=".new-")
    assert run.returncode == -9
    assert not personal.exists() and load_bundle(f"{personal}.prev").version == first
    [pending] = personal.parent.glob("personal.bundle.new-*")
    second = load_bundle(pending).version
    args = {
        "listen": ["listen", "--input", "sample", "--fast", "--json", "--duration", "1"],
        "record": record_args(wearer),
        "personalize": ["personalize", "--labels", earlier_labels, "--json"],
    }[command]
    again = edge_emo(*args, env=xdg(tmp_path))
    assert again.returncode == 0, again.stderr
    notices = [line for line in again.stderr.splitlines() if line.startswith("recovered:")]
    assert len(notices) == 1 and "finished an interrupted update" in notices[0], again.stderr
    assert not list(personal.parent.glob("personal.bundle.*-*"))  # no leftovers
    if command == "personalize":  # it then personalized once more: the recovered one became .prev
        assert load_bundle(f"{personal}.prev").version == second
    else:
        assert load_bundle(personal).version == second and load_bundle(f"{personal}.prev").version == first
    if command == "listen":  # the wearer's model, not a silent fallback to the shipped one
        assert f"model: your personalized bundle {personal}" in again.stderr


def test_leftovers_of_a_kill_before_the_swap_are_removed_with_a_notice(wearer, earlier_labels, tmp_path):
    out = tmp_path / "p.bundle"
    edge_emo("personalize", "--labels", earlier_labels, "--out", out, env=xdg(tmp_path), check=True)
    first = load_bundle(out).version
    run, _ = traced(tmp_path, "personalize", "--labels", wearer, "--out", out, kill_at=".tmp-")
    assert run.returncode == -9
    [leftover] = tmp_path.glob("p.bundle.tmp-*")
    label_run, _ = traced(tmp_path, *record_args(wearer), kill_at=".labels.csv.tmp-")
    assert label_run.returncode == -9
    assert (wearer.parent / "clips/0006.wav").exists()  # saved, its row never added
    [tmp_labels] = wearer.parent.glob(".labels.csv.tmp-*")
    again = edge_emo("personalize", "--labels", wearer, "--out", out, "--rollback", env=xdg(tmp_path))
    assert f"recovered: removed {leftover.name}" in again.stderr and not leftover.exists()
    assert load_bundle(f"{out}").version == first  # the rollback found no .prev: nothing else changed
    record = edge_emo(*record_args(wearer, "0002"), env=xdg(tmp_path))
    assert record.returncode == 0, record.stderr
    said = [line for line in record.stderr.splitlines() if line.startswith("recovered:")]
    assert len(said) == 2 and not tmp_labels.exists(), record.stderr
    assert "0006.wav" in said[1]
    assert (wearer.parent / "clips/0006.wav").exists()  # the number is free again: this run's clip


def test_wearer_data_is_private(wearer, tmp_path):
    folder = tmp_path / "new" / "me"
    labels = folder / "labels.csv"
    clip = wearer.parent / "clips" / "0001.wav"
    for _ in range(5):
        edge_emo(
            "record",
            "--labels",
            labels,
            "--input",
            clip,
            "--label",
            "happy=3",  # learnable from five clips, so the guard lets the personalized bundle be written
            env=xdg(tmp_path),
            check=True,
        )
    edge_emo("personalize", "--labels", labels, env=xdg(tmp_path), check=True)
    log = tmp_path / "logs" / "features"
    edge_emo(
        "listen",
        "--input",
        "sample",
        "--fast",
        "--json",
        "--log-features",
        log,
        "--log-shard-s",
        "1",
        env=xdg(tmp_path),
        check=True,
    )
    personal = tmp_path / "xdg" / "edge-emo" / "personal.bundle"
    private = [
        *(
            p
            for p in (tmp_path / "new", folder, folder / "clips", personal.parent, personal, log.parent, log)
        ),
    ]
    files = [labels, *(folder / "clips").iterdir(), *personal.iterdir(), *log.iterdir()]
    assert len(files) > 10
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_truncated_flac_plays_what_decodes_then_warns(tmp_path):
    from edge_emo.runtime.shipped import SAMPLES

    cut = tmp_path / "cut.flac"
    cut.write_bytes(next(SAMPLES.glob("*.flac")).read_bytes()[:79669])
    run = edge_emo("listen", "--input", cut, "--fast", "--json", env=xdg(tmp_path))
    assert run.returncode == 0, run.stderr
    updates = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(updates) > 20 and updates[-1]["time_s"] > 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("warning: ") and "decoding stopped at" in run.stderr


def test_evaluate_on_a_device_install_needs_no_torch(wearer, tmp_path):
    from tests.cli import edge_emo_without_torch

    run = edge_emo_without_torch(["evaluate", "shipped", wearer.parent])
    assert run.returncode == 0, run.stderr
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"x" * 100)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edge_emo.cli import app\n"
        f"app(['evaluate', {str(ckpt)!r}, {str(wearer.parent)!r}])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=cli_env()
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error:") and "pip install 'edge-emo[train]'" in run.stderr
    assert os.path.getsize(ckpt) == 100


def test_a_killed_listen_leaves_nothing_in_the_temporary_folder(tmp_path):
    """openSMILE's configuration is an in-memory file (memfd): no edge_emo_*.conf is left in $TMPDIR by a
    kill (the audit found 56 folders and config files of killed runs)."""
    import signal
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = cli_env({"TMPDIR": str(tmp), **xdg(tmp_path)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_emo", "listen", "--input", "sample", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout.readline()  # streaming: openSMILE is configured and running
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("kill_at", [".prev"])  # the one rename left: the undone bundle is deleted
def test_a_kill_inside_a_rollback_is_finished_at_the_next_start(wearer, earlier_labels, tmp_path, kill_at):
    """rollback renames NAME -> NAME.rollback-PID and NAME.prev -> NAME, then deletes NAME.rollback-PID (a
    rollback never toggles); killed at either rename, the next start completes it."""
    out = tmp_path / "p.bundle"
    for labels in (earlier_labels, wearer):
        edge_emo("personalize", "--labels", labels, "--out", out, env=xdg(tmp_path), check=True)
    current, previous = load_bundle(out).version, load_bundle(f"{out}.prev").version
    run, _ = traced(tmp_path, "personalize", "--rollback", "--out", out, kill_at=kill_at)
    assert run.returncode == -9
    listen = edge_emo(
        "listen",
        "--model",
        out,
        "--input",
        "sample",
        "--fast",
        "--json",
        "--duration",
        "1",
        env=xdg(tmp_path),
    )
    assert listen.returncode == 0, listen.stderr
    assert f"recovered: finished an interrupted rollback of {out}" in listen.stderr
    assert load_bundle(out).version == previous != current
    assert sorted(p.name for p in tmp_path.glob("p.bundle*")) == ["p.bundle"]


def test_listen_says_so_when_only_the_previous_personal_bundle_is_left(bundles, tmp_path):
    personal = tmp_path / "xdg" / "edge-emo" / "personal.bundle"
    personal.parent.mkdir(parents=True)
    shutil.copytree(bundles["int8"].path, f"{personal}.prev")
    run = edge_emo("listen", "--input", "sample", "--fast", "--json", "--duration", "1", env=xdg(tmp_path))
    assert run.returncode == 0, run.stderr
    assert (
        f"warning: your personalized model {personal} is missing but personal.bundle.prev is there"
        in run.stderr
    )

"""`edge-emo listen` on files, in fresh interpreters: JSON lines, the live view, Ctrl-C, bad input, no torch."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from edge_emo.features import load_audio
from edge_emo.runtime.recognizer import EmotionRecognizer
from tests.cli import CLI, ROOT, cli_env, edge_emo, edge_emo_without_torch
from tests.runtime.test_recognizer import stream


def test_json_lines_are_the_recognizer_updates(bundle, clip_path):
    run = edge_emo("listen", "--model", str(bundle.path), "--input", str(clip_path), "--fast", "--json")
    assert run.returncode == 0, run.stderr
    x, rate = load_audio(clip_path)
    expected = [u.to_json() for u in stream(EmotionRecognizer(bundle), x, rate, 1600)]
    assert run.stdout.splitlines() == expected  # and nothing else on stdout
    first = json.loads(expected[0])
    assert set(first) == {
        "time_s", "speech", "dominant", "intensities", "utterance_start_s", "utterance_s", "final", "level_db",
        "speaker_heard_s",
    }  # fmt: skip
    assert list(first["intensities"]) == list(bundle.emotions)
    assert first["speaker_heard_s"] is None  # the test bundle does not adapt to its speaker
    assert "done: 3.0 s of audio" in run.stderr


def test_the_whole_stream_runs_without_torch(bundle):
    """A fresh interpreter runs the CLI on the shipped sample; torch is never imported."""
    run = edge_emo_without_torch(["listen", "--model", bundle.path, "--input", "sample", "--fast", "--json"])
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) > 100 and any(u["speech"] for u in lines) and lines[-1]["final"]


def test_the_live_view_draws_bars_for_every_emotion(bundle, clip_path):
    run = edge_emo("listen", "--model", str(bundle.path), "--input", str(clip_path), "--fast")
    assert run.returncode == 0, run.stderr
    for name in bundle.emotions:
        assert name in run.stdout
    assert "dominant:" in run.stdout and "dBFS" in run.stdout and "dropped blocks: 0" in run.stdout
    assert "\x1b" not in run.stdout  # not a terminal: the last view once, plain (tests/runtime/test_view.py)


def test_ctrl_c_ends_cleanly_with_a_summary(bundle):
    proc = subprocess.Popen(
        [*CLI, "listen", "--model", str(bundle.path), "--input", "sample", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    first = proc.stdout.readline()  # real-time pace: the first update after about 0.1 s of audio
    assert first and time.monotonic() < deadline
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped:" in err and "Traceback" not in err
    lines = [json.loads(line) for line in [first, *out.splitlines()]]
    assert 1.0 < lines[-1]["time_s"] < 8.0  # stopped early, the sample is 11.3 s


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{tmp}/notes.wav"], "not a readable audio file"),
        (["--input", "{tmp}/missing.wav"], "no such audio file"),
        (["--input", "{tmp}"], "is a folder, not an audio file"),
        (["--model", "{tmp}/corrupt.bundle"], "sha256 mismatch"),
        (["--model", "{tmp}"], "not an edge-emo bundle"),
        (["--model", "{mismatch}"], "differs from what this openSMILE extracts"),
    ],
)
def test_bad_input_gets_a_clear_error_and_exit_code_2(bundles, clip_path, tmp_path, args, message):
    import shutil

    (tmp_path / "notes.wav").write_text("not audio at all\n")
    corrupt = tmp_path / "corrupt.bundle"
    shutil.copytree(bundles["int8"].path, corrupt)
    graph = corrupt / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    args = [a.format(tmp=tmp_path, mismatch=bundles["mismatch"].path) for a in args]
    if "--model" not in args:
        args += ["--model", str(bundles["int8"].path)]
    if "--input" not in args:
        args += ["--input", str(clip_path)]
    run = edge_emo("listen", "--fast", "--json", *args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_missing_default_model_is_named(monkeypatch, tmp_path):
    from edge_emo.personalize.choice import listen_bundle
    from edge_emo.runtime import shipped

    monkeypatch.setattr(shipped, "DEFAULT_MODEL", tmp_path / "default.bundle")
    with pytest.raises(ValueError, match="default model is not installed.*--model"):
        listen_bundle(None)


def test_updates_go_to_the_wearable_over_the_firmware_bridge(bundle, clip_path):
    import socket

    from firmware_bridge import Hello, StreamDecoder, Update
    from firmware_bridge.protocol import MAX_MODEL_VERSION, quantise

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    url = f"udp://127.0.0.1:{receiver.getsockname()[1]}"
    run = edge_emo(
        "listen", "--model", str(bundle.path), "--input", str(clip_path), "--fast", "--json", "--bridge", url
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    decoder = StreamDecoder()
    messages = []
    while len([m for m in messages if isinstance(m, Update)]) < len(lines):
        messages += [f.message for f in decoder.feed(receiver.recv(2048))]
    receiver.close()
    assert isinstance(messages[0], Hello) and messages[0].emotions == bundle.emotions
    assert (
        messages[0].model_version == bundle.short_version(MAX_MODEL_VERSION)
        and messages[0].update_rate_centihz == round(100 / (bundle.chunk_frames * bundle.spec.hop_s))  # 80 ms
    )
    updates = [m for m in messages if isinstance(m, Update)]
    for sent, line in zip(updates, lines):
        assert sent.timestamp_ms == round(line["time_s"] * 1000) and sent.speech == line["speech"]
        assert sent.dominant == (
            None if line["dominant"] is None else bundle.emotions.index(line["dominant"])
        )
        # the JSON rounds to 4 decimals: a level may differ by one step at a rounding edge
        np.testing.assert_allclose(sent.levels, [quantise(v) for v in line["intensities"].values()], atol=1)

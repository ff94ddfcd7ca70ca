"""Links and the monitor over real transports: a pseudo-terminal pair for serial, loopback UDP, pipes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import firmware_bridge
from firmware_bridge.protocol import Encoder, Hello, StreamDecoder, Update, format_frame
from tests.bridge.conftest import EMOTIONS

REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"retry_initial_s": 0.02, "retry_max_s": 0.05}


def update(i: int) -> SimpleNamespace:
    """Shaped like the runtime's EmotionUpdate: time_s, intensities, dominant (a name), speech."""
    return SimpleNamespace(
        time_s=0.1 * i, intensities=[0.25 * (i % 13)] * 6, dominant=EMOTIONS[i % 6], speech=True
    )


def read_frames(fd: int, decoder: StreamDecoder, n: int, timeout_s: float = 5.0) -> list:
    frames: list = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            frames += decoder.feed(os.read(fd, 4096))
    return frames


def kinds(frames) -> list[str]:
    return [type(f.message).__name__ for f in frames]


@pytest.fixture
def pty_pair():
    """(master fd, slave path); the test may close the master to unplug the 'device'."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_serial_link_over_a_pty(pty_pair):
    master, path = pty_pair
    with firmware_bridge.connect(
        f"serial://{path}?baud=115200", model_version="m-1", emotions=EMOTIONS, update_rate_hz=10
    ) as link:
        assert link.connected
        assert all(link.send_update(update(i)) for i in range(5))
        frames = read_frames(master, decoder := StreamDecoder(), 6)
    assert kinds(frames) == ["Hello"] + ["Update"] * 5
    assert [f.seq for f in frames] == list(range(6))
    assert frames[0].message == Hello.from_values("m-1", EMOTIONS, 10)
    assert frames[3].message == Update.from_values(0.2, [0.5] * 6, 2, True)
    assert decoder.stats.errors() == 0 and link.stats.sent == 6
    assert not link.send_update(update(6)) and link.stats.dropped == 1  # closed stays closed
    assert read_frames(master, decoder, 1, timeout_s=0.1) == []


def test_serial_device_unplugged_and_replugged(tmp_path, caplog):
    """A udev-style symlink that points at a new pty after the old one vanished, like a re-enumerated USB."""
    port = tmp_path / "ttyBRIDGE"
    master, slave = os.openpty()
    port.symlink_to(os.ttyname(slave))
    link = firmware_bridge.open_link(f"serial://{port}", **FAST_RETRY)
    link.send_hello("m-1", EMOTIONS, 10)
    link.send_update(update(0))
    assert kinds(read_frames(master, StreamDecoder(), 2)) == ["Hello", "Update"]

    os.close(master)
    os.close(slave)
    with caplog.at_level(logging.WARNING, logger="firmware_bridge"):
        results = [link.send_update(update(i)) for i in range(1, 20)]
    assert not any(results) and not link.connected
    assert link.stats.failures >= 1 and link.stats.dropped == 19
    assert len(caplog.records) == 1 and "link down" in caplog.records[0].message  # reported once

    master, slave = os.openpty()
    port.unlink()
    port.symlink_to(os.ttyname(slave))
    decoder, frames, i = StreamDecoder(), [], 20
    deadline = time.monotonic() + 10
    while len(frames) < 2 and time.monotonic() < deadline:  # the link retries within 0.05 s
        link.send_update(update(i := i + 1))
        frames += read_frames(master, decoder, 2, timeout_s=0.02)
    link.close()
    os.close(master)
    os.close(slave)
    assert kinds(frames[:2]) == ["Hello", "Update"]  # the hello again, then the updates go on
    assert link.stats.reconnects == 1
    assert decoder.stats.errors() == 0


def test_serial_device_absent_at_start_is_retried_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="firmware_bridge"):
        link = firmware_bridge.open_link("serial:///dev/does-not-exist-bridge", retry_initial_s=60)
        assert not link.send_hello("m-1", EMOTIONS, 10)
        assert not any(link.send_update(update(i)) for i in range(10))
    assert link.stats.failures == 1 and link.stats.dropped == 11 and link.stats.sent == 0
    assert len(caplog.records) == 1 and "does-not-exist-bridge" in caplog.records[0].message


def test_stalled_serial_reader_counts_as_a_lost_link(pty_pair):
    _, path = pty_pair  # nobody reads the master: the pty buffer fills up, the write times out
    # The timeout must outlast a scheduling hiccup on a loaded machine, or a write that only waited for the CPU
    # would count as a stalled reader.
    link = firmware_bridge.open_link(f"serial://{path}", write_timeout_s=0.5, retry_initial_s=60)
    link.send_hello("m-1", EMOTIONS, 10)
    sent = [link.send_update(update(i)) for i in range(5000)]
    assert sent[0] and not sent[-1] and link.stats.failures == 1
    link.close()


def test_udp_link_over_loopback():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    link = firmware_bridge.connect(
        f"udp://127.0.0.1:{port}", model_version="m-1", emotions=EMOTIONS, update_rate_hz=10
    )
    for i in range(4):
        link.send_update(update(i))
    datagrams = [receiver.recv(2048) for _ in range(5)]
    link.close()
    receiver.close()
    decoder = StreamDecoder()
    frames = [f for d in datagrams for f in decoder.feed(d)]
    assert all(d.endswith(b"\x00") and d.count(0) == 1 for d in datagrams)  # one frame per datagram
    assert kinds(frames) == ["Hello"] + ["Update"] * 4 and decoder.stats.errors() == 0


def test_udp_receiver_gone_then_back(caplog):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now: the kernel answers "port unreachable"
    link = firmware_bridge.open_link(f"udp://127.0.0.1:{port}", **FAST_RETRY)
    link.send_hello("m-1", EMOTIONS, 10)
    with caplog.at_level(logging.WARNING, logger="firmware_bridge"):
        for i in range(10):
            link.send_update(update(i))
            time.sleep(0.005)
    assert link.stats.failures >= 1 and "link down" in caplog.text

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", port))
    receiver.setblocking(False)
    decoder, frames, i = StreamDecoder(), [], 10
    deadline = time.monotonic() + 10
    while len(frames) < 3 and time.monotonic() < deadline:  # the link retries within 0.05 s
        link.send_update(update(i := i + 1))
        while select.select([receiver], [], [], 0.005)[0]:
            frames += decoder.feed(receiver.recv(2048))
    link.close()
    receiver.close()
    assert kinds(frames[:2]) == ["Hello", "Update"] and link.stats.reconnects >= 1


@pytest.mark.parametrize("fmt", ["raw", "hex"])
def test_stdout_link(fmt):
    script = (
        "import firmware_bridge, types\n"
        f"link = firmware_bridge.open_link('stdout://?format={fmt}')\n"
        "link.send_hello('m-1', ['calm', 'tense'], 2.5)\n"
        "link.send_update(types.SimpleNamespace(time_s=1.0, intensities=[3, 0.5], dominant='calm', speech=True))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, env=_env(), timeout=60).stdout
    data = out if fmt == "raw" else b"".join(bytes.fromhex(line) for line in out.decode().split())
    decoder = StreamDecoder()
    lines = [format_frame(f) for f in decoder.feed(data)]
    assert lines == [
        "hello seq=0 minor=0 rate_centihz=250 model=m-1 emotions=calm,tense",
        "update seq=1 minor=0 t_ms=1000 speech=1 dominant=0 levels=255,43",
    ]
    assert decoder.stats.errors() == 0


def test_the_bridge_and_its_monitor_never_import_edge_emo_internals_torch_or_onnx():
    script = (
        "import sys\n"
        "import firmware_bridge, firmware_bridge.monitor\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('edge_emo', 'torch', 'onnx')]\n"
        "from typer.testing import CliRunner\n"
        "from edge_emo.cli import app\n"
        "result = CliRunner().invoke(app, ['bridge-monitor', 'udp://127.0.0.1:0', '--timeout', '0.1'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime')]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_send_only_and_read_only_urls_are_refused():
    with pytest.raises(ValueError, match="only be read"):
        firmware_bridge.open_link("stdin://")
    with pytest.raises(ValueError, match="unsupported"):
        firmware_bridge.open_link("bluetooth://glasses")
    assert firmware_bridge.connect(None, model_version="m", emotions=EMOTIONS, update_rate_hz=1) is None


# --- edge-emo bridge-monitor ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _monitor(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_emo", "bridge-monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        **kwargs,
    )


def _listening(monitor: subprocess.Popen) -> str:
    line = monitor.stderr.readline()
    assert line.startswith("listening on "), line + monitor.stderr.read()
    return line.split()[-1]


def test_monitor_end_to_end_over_udp():
    monitor = _monitor("udp://127.0.0.1:0", "--count", "4", "--timeout", "30", "--raw")
    url = _listening(monitor)
    assert url.startswith("udp://127.0.0.1:") and not url.endswith(":0")
    with firmware_bridge.connect(url, model_version="m-1", emotions=EMOTIONS, update_rate_hz=10) as link:
        for i in range(3):
            link.send_update(update(i))
    out, err = monitor.communicate(timeout=30)
    assert monitor.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"hello seq=0 minor=0 rate_centihz=1000 model=m-1 emotions={','.join(EMOTIONS)}"
    assert lines[1:4] == [format_frame(f) for f in StreamDecoder().feed(_updates_wire(3, first_seq=1))]
    assert lines[4].startswith("stats frames=4 unknown_types=0 crc_errors=0")


def _updates_wire(n: int, first_seq: int) -> bytes:
    encoder = Encoder()
    encoder.seq = first_seq
    return b"".join(
        encoder.encode(Update.from_values(0.1 * i, [0.25 * (i % 13)] * 6, i % 6, True)) for i in range(n)
    )


def test_monitor_on_a_serial_port_reports_errors_and_survives_a_replug(tmp_path):
    port = tmp_path / "ttyBENCH"
    master, slave = os.openpty()
    port.symlink_to(os.ttyname(slave))
    monitor = _monitor(f"serial://{port}?baud=115200", "--count", "3", "--timeout", "30", "--raw")
    _listening(monitor)
    wire = _updates_wire(3, first_seq=0)
    frame_len = len(wire) // 3
    os.write(master, b"\x13\x37garbage\x00" + wire[: 2 * frame_len])
    time.sleep(0.3)
    os.close(master)  # unplugged
    os.close(slave)
    master, slave = os.openpty()
    port.unlink()
    port.symlink_to(os.ttyname(slave))
    try:
        for _ in range(100):  # the monitor reopens the port about once a second
            os.write(master, wire[2 * frame_len :])
            if monitor.poll() is not None:
                break
            time.sleep(0.1)
        out, err = monitor.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert monitor.returncode == 0, err
    assert "input lost" in err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("update")] == ["seq=0", "seq=1", "seq=2"]
    assert any(" crc_errors=1 " in line or " framing_errors=1 " in line for line in lines)


def test_monitor_reads_a_pipe():
    stream = b"noise\x00" + _updates_wire(5, first_seq=0) + b"\x02\x01\x00"
    result = subprocess.run(
        [sys.executable, "-m", "edge_emo", "bridge-monitor", "-", "--raw"],
        input=stream,
        capture_output=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len([line for line in lines if line.startswith("update")]) == 5
    assert (
        lines[-1].startswith("stats frames=5 ") and " framing_errors=2 " in lines[-1]
    )  # "noise" and a 1-byte frame


def _monitor_pipe(stream: bytes, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "edge_emo", "bridge-monitor", "-", *args],
        input=stream,
        capture_output=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


def test_monitor_shows_emotion_names_and_intensities_as_text_and_json():
    encoder = Encoder()
    hello = encoder.encode(Hello.from_values("m-1", EMOTIONS, 10))
    anger = Update.from_values(1.5, [0, 0.24, 1.71, 0, 0, 3], 5, True)
    stream = hello + encoder.encode(anger) + encoder.encode(Update.from_values(1.6, [0] * 6, None, False))
    text = _monitor_pipe(stream)
    assert text[0] == f"hello #0 model m-1, 10 updates/s, emotions {', '.join(EMOTIONS)}"
    values = "  ".join(f"{e} {v:.2f}" for e, v in zip(EMOTIONS, anger.intensities))
    assert text[1] == f"update #1 t=1.50 s speech dominant={EMOTIONS[5]}  {values}"
    assert text[2].startswith("update #2 t=1.60 s silence dominant=-  ")
    assert text[3].startswith("stats frames=3 ")
    records = [json.loads(line) for line in _monitor_pipe(stream, "--json")]
    assert records[0] == {"type": "hello", "seq": 0, "minor": 0, "model": "m-1", "emotions": list(EMOTIONS),
                          "update_rate_hz": 10.0}  # fmt: skip
    assert records[1]["dominant"] == EMOTIONS[5] and records[1]["speech"] is True
    assert records[1]["intensities"] == {e: round(v, 4) for e, v in zip(EMOTIONS, anger.intensities)}
    assert max(records[1]["intensities"].values()) == 3.0  # 0..3, not the wire's 0..255
    assert records[-1]["type"] == "stats" and records[-1]["frames"] == 3 and records[-1]["crc_errors"] == 0


def test_monitor_prints_its_counters_while_frames_arrive():
    monitor = _monitor("udp://127.0.0.1:0", "--timeout", "6")
    url = _listening(monitor)
    with firmware_bridge.connect(url, model_version="m-1", emotions=EMOTIONS, update_rate_hz=10) as link:
        for i in range(8):
            link.send_update(update(i))
            time.sleep(0.5)
        first_live = monitor.stderr.readline()  # before the monitor ends
        assert monitor.poll() is None and first_live.startswith("stats frames="), first_live
    out, _ = monitor.communicate(timeout=30)
    assert out.splitlines()[-1].startswith("stats frames=9 ")


def test_monitor_timeout_and_bad_urls():
    waited = _monitor("udp://127.0.0.1:0", "--count", "1", "--timeout", "0.3")
    out, err = waited.communicate(timeout=30)
    assert waited.returncode == 1 and "only 0 of 1 frames arrived" in err
    assert out.splitlines()[-1].startswith("stats frames=0")
    for url, message in [("tcp://x:1", "unsupported bridge URL"), ("stdout://", "can only be sent to")]:
        bad = _monitor(url)
        _, err = bad.communicate(timeout=30)
        assert bad.returncode == 2 and "error: " in err and message in err


def test_an_update_names_its_dominant_emotion_among_the_hellos():
    """The bridge takes the runtime's EmotionUpdate as it is: the dominant emotion by name, sent as its index
    in the hello's emotions; a name the hello does not have is refused before anything is written."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    link = firmware_bridge.open_link(f"udp://127.0.0.1:{receiver.getsockname()[1]}")
    with pytest.raises(ValueError, match="send_hello first"):
        link.send_update(update(1))
    link.send_hello("m-1", EMOTIONS, 10)
    with pytest.raises(ValueError, match="'joy' is not one of"):
        link.send_update(SimpleNamespace(time_s=0.0, intensities=[0.0] * 6, dominant="joy", speech=True))
    assert link.send_update(update(3))
    link.close()
    decoder = StreamDecoder()
    frames = [f for _ in range(2) for f in decoder.feed(receiver.recv(4096))]
    receiver.close()
    assert kinds(frames) == ["Hello", "Update"]
    assert frames[1].message.dominant == EMOTIONS.index(update(3).dominant) == 3

"""The live view as a person sees it: `edge-emo listen` on a real pseudo-terminal, its bytes played through a
VT100 emulator (pyte), and the screen read back: one box redrawn in place, whatever the terminal's width, lines
said while it is drawn above it, the cursor given back."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import threading
import time

import numpy as np
import pyte
import pytest

from edge_emo.features import load_audio
from edge_emo.runtime.recognizer import EmotionRecognizer
from edge_emo.runtime.view import ListenStatus, LiveView, render
from tests.cli import CLI, ROOT, cli_env, read_terminal
from tests.runtime.test_recognizer import stream


def _terminal(columns: int, rows: int) -> tuple[int, int]:
    """A pseudo-terminal of `columns` x `rows` cells: (master, slave)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def _screen(raw: bytes, columns: int, rows: int) -> pyte.Screen:
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    stream.feed(raw.replace(b"\n", b"\r\n"))  # the terminal's own output processing (onlcr) adds the \r
    return screen


def _box_lines(screen: pyte.Screen) -> list[str]:
    return [line.rstrip() for line in screen.display if line.strip()]


def _listen_on_a_terminal(
    bundle, clip_path, columns: int, rows: int, colour: bool
) -> tuple[bytes, pyte.Screen]:
    """`edge-emo listen` on the clip, paced in real time, stdout and stderr on a `columns` x `rows`
    pseudo-terminal: what it wrote, and the screen that shows."""
    master, slave = _terminal(columns, rows)
    env = cli_env({"TERM": "xterm-256color"})
    for name in ("COLUMNS", "LINES", "NO_COLOR"):
        env.pop(name, None)
    if not colour:
        env["NO_COLOR"] = "1"
    proc = subprocess.Popen(
        [*CLI, "listen", "--model", str(bundle.path), "--input", str(clip_path)],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
    )  # fmt: skip
    os.close(slave)
    raw = read_terminal(master, proc, 120)
    os.close(master)
    assert proc.wait(timeout=30) == 0, raw.decode(errors="replace")
    return raw, _screen(raw, columns, rows)


@pytest.mark.parametrize("columns, colour", [(100, True), (40, False)])
def test_the_view_is_redrawn_in_place_on_a_real_terminal(bundle, clip_path, columns, colour):
    """3 s of speech paced in real time: many redraws, and the screen holds one box (a line wider than the
    terminal would wrap and leave a torn copy above the next drawing), then the summary below it."""
    raw, screen = _listen_on_a_terminal(bundle, clip_path, columns, 40, colour)
    assert raw.count(b"\x1b[J") >= 5  # redrawn about 5 times a second over 3 s
    assert (b"\x1b[36m" in raw) == colour  # the bars' colour, unless NO_COLOR
    lines = _box_lines(screen)
    text = "\n".join(lines)
    assert sum(line.startswith("╭") for line in lines) == 1, text
    assert sum(line.startswith("╰") for line in lines) == 1, text
    top = next(k for k, line in enumerate(lines) if line.startswith("╭"))
    bottom = next(k for k, line in enumerate(lines) if line.startswith("╰"))
    assert lines[0].startswith("model ") and "graph" in "".join(lines[:top]), text  # said first, above it
    for name in bundle.emotions:
        assert sum(line.startswith(f"│ {name.rjust(10)}"[:columns]) for line in lines) == 1, text
    assert all(len(line) <= columns - 1 for line in lines[top : bottom + 1]), text  # cropped, never wrapped
    assert lines[bottom + 1].startswith("done: 3.0 s of audio"), text
    assert not screen.cursor.hidden  # given back


def test_a_terminal_shorter_than_the_view_shows_its_top(bundle, clip_path):
    """8 rows: the view's first 7 lines, redrawn in place (a drawing taller than the terminal would scroll
    and leave copies of it above); the summary then scrolls the top edge away."""
    _, screen = _listen_on_a_terminal(bundle, clip_path, 100, 8, True)
    lines = _box_lines(screen)
    text = "\n".join(lines)
    assert lines[-1].startswith("done: 3.0 s") and lines[-2].startswith("│    disgust"), (
        text
    )  # 7 lines, cropped
    assert sum(line.startswith(("│ ● ", "│ ○ ")) for line in lines) == 1, text  # one state line: no copies


def test_a_line_said_while_the_view_is_drawn_stays_above_it(bundle, clip_path):
    """A warning while listening (input overflow, the web view's address) is written above the box and the
    box redrawn below it, in the one terminal they share."""
    master, slave = _terminal(100, 40)
    out = os.fdopen(slave, "w", encoding="utf-8")
    got: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            got.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    x, rate = load_audio(clip_path)
    updates = stream(EmotionRecognizer(bundle), x, rate, 1600)
    view = LiveView("clip.wav (16000 Hz)", bundle.version, out=out)
    view.start()
    view.show(updates[10], 0, 0)
    view.say_above("warning: a line said while the view is drawn", lambda m: out.write(m + "\n"))
    time.sleep(0.25)  # past the refresh interval: the next update is drawn
    view.show(updates[-1], 0, 1)
    view.stop()
    view.say_above("after the view", lambda m: out.write(m + "\n"))
    out.flush()
    time.sleep(0.3)
    out.close()
    reader.join(timeout=10)
    lines = _box_lines(_screen(b"".join(got), 100, 40))
    text = "\n".join(lines)
    assert lines[0] == "warning: a line said while the view is drawn", text
    assert lines[1].startswith("╭") and sum(line.startswith("╭") for line in lines) == 1, text
    assert "utterances: 1" in text and lines[-2].startswith("╰") and lines[-1] == "after the view", text


def test_a_terminal_that_reports_no_size_gets_the_whole_view(bundle, clip_path, monkeypatch):
    """A pseudo-terminal of 0 x 0 cells (a serial console reports none): $COLUMNS/$LINES or 80 x 24, never a
    view cropped to one column."""
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "40")
    master, slave = _terminal(0, 0)
    out = os.fdopen(slave, "w", encoding="utf-8")
    x, rate = load_audio(clip_path)
    view = LiveView("clip.wav (16000 Hz)", bundle.version, out=out)
    view.start()
    view.show(stream(EmotionRecognizer(bundle), x, rate, 1600)[-1], 0, 1)
    view.stop()
    out.close()
    raw = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        raw += data
    os.close(master)
    lines = _box_lines(_screen(raw, 120, 40))
    assert any("utterances: 1" in line for line in lines), "\n".join(lines)


def test_the_view_as_text_for_the_readme(bundle, clip_path):
    """Plain text (how the README capture is made, and what a pipe gets when listening ends)."""
    x, rate = load_audio(clip_path)
    update = next(u for u in stream(EmotionRecognizer(bundle), x, rate, 1600) if u.speech and u.dominant)
    text = render(update, ListenStatus("clip.wav (16000 Hz)", bundle.version, 0, 1))
    rows = [line for line in text.splitlines() if line.strip("│ ").split(" ")[0] in bundle.emotions]
    assert len(rows) == 6 and "speech" in text and update.dominant in text
    assert len({len(line) for line in text.splitlines()}) == 1  # a closed box
    assert "\x1b" not in text and np.isfinite(update.level_db)
    assert "speaker heard" not in text  # this bundle does not adapt to its speaker
    assert "waiting for audio" in render(None, ListenStatus("clip.wav", bundle.version))


def test_the_views_say_how_much_of_the_speaker_an_adapting_model_has_heard(bundle, clip_path):
    x, rate = load_audio(clip_path)
    update = dataclasses.replace(stream(EmotionRecognizer(bundle), x, rate, 1600)[-1], speaker_heard_s=12.4)
    assert "speaker heard: 12 s" in render(update, ListenStatus("clip.wav (16000 Hz)", bundle.version, 0, 1))
    assert json.loads(update.to_json())["speaker_heard_s"] == 12.4
    assert (
        "speaker_heard_s" in (ROOT / "edge_emo/web/assets/live.js").read_text()
    )  # the web view shows it too

"""The live terminal view of `edge-emo listen`: six labeled bars, the dominant emotion, speech or silence, the
input level and the dropped-block count, in a box redrawn in place.

Drawn with plain ANSI escapes rather than a layout library: the view is a fixed grid of short lines, and on a
wearable every redraw is battery. rich took about 2 ms of Python per redraw on a 2-core x86 (1% of a core at 5
redraws a second, a quarter of all of `listen`); these lines take about 0.02 ms."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from edge_emo.emotions import MAX_INTENSITY
from edge_emo.runtime.recognizer import EmotionUpdate

BAR_WIDTH = 30
LEVEL_FLOOR_DB = -60.0
# The most the view is redrawn per second. Updates come every 80 ms; 5 redraws a second still follow speech.
REFRESH_HZ = 5.0
TITLE = "edge-emo listen"
NAME_WIDTH = 10

# A piece of a line: its text and its SGR style ("1" bold, "2" dim, "35" magenta, "1;35" both; "" plain).
Span = tuple[str, str]
Line = list[Span]
BOLD, DIM, CYAN, MAGENTA, GREEN = "1", "2", "36", "35", "32"


def _bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` (eighth-cell resolution)."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])).ljust(width)


@dataclass
class ListenStatus:
    """What the view shows besides the update itself."""

    source: str
    model: str
    dropped_blocks: int = 0
    utterances: int = 0


def render_lines(update: EmotionUpdate | None, status: ListenStatus) -> list[Line]:
    """The view's content, line by line, unboxed: the state line, one bar per emotion, the input level, the
    source and the model."""
    footer = [[(f"{status.source} · Ctrl-C to stop", DIM)], [(f"model {status.model}", DIM)]]
    if update is None:
        return [[("waiting for audio…", DIM)], *footer]
    speech = ("● speech", f"{GREEN};{BOLD}") if update.speech else ("○ silence", DIM)
    state: Line = [
        speech,
        ("   dominant: ", ""),
        (update.dominant or "–", f"{BOLD};{MAGENTA}" if update.dominant else DIM),
        (f"   t = {update.time_s:7.2f} s", ""),
    ]
    if update.speaker_heard_s is not None:
        state.append((f"   speaker heard: {update.speaker_heard_s:.0f} s", ""))
    lines = [state]
    for name, value in zip(update.emotions, update.intensities):
        dominant = update.dominant == name
        lines.append([
            (name.rjust(NAME_WIDTH), BOLD if dominant else ""),
            (" ", ""),
            (_bar(float(value) / MAX_INTENSITY, BAR_WIDTH), MAGENTA if dominant else CYAN),
            (f" {value:4.2f}", ""),
        ])  # fmt: skip
    fraction = (update.level_db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB
    lines.append([
        ("input ", ""),
        (_bar(fraction, 20), GREEN),
        (f" {max(update.level_db, -99.0):5.1f} dBFS", ""),
        (f"   dropped blocks: {status.dropped_blocks}   utterances: {status.utterances}", ""),
    ])  # fmt: skip
    return [*lines, *footer]


def _width(line: Line) -> int:
    return sum(len(text) for text, _ in line)


def _crop(line: Line, width: int) -> Line:
    """The first `width` characters of `line` (every character of the view is one cell wide)."""
    out: Line = []
    for text, style in line:
        if width <= 0:
            break
        out.append((text[:width], style))
        width -= len(text)
    return out


def boxed(lines: list[Line]) -> list[Line]:
    """`lines` in a rounded box with the title centred in its top edge."""
    inner = max(max(map(_width, lines)), len(TITLE) + 2)
    left = (inner - len(TITLE)) // 2  # the top edge is inner + 2 wide: "─" * left, " TITLE ", "─" * right
    right = inner - len(TITLE) - left
    top: Line = [("╭" + "─" * left + " ", ""), (TITLE, ""), (" " + "─" * right + "╮", "")]
    middle: list[Line] = [[("│ ", ""), *line, (" " * (inner - _width(line)) + " │", "")] for line in lines]
    return [top, *middle, [("╰" + "─" * (inner + 2) + "╯", "")]]


def paint(line: Line, color: bool) -> str:
    """One line as the terminal gets it: each styled span in its SGR escape when `color`, else plain text."""
    if not color:
        return "".join(text for text, _ in line)
    return "".join(f"\x1b[{style}m{text}\x1b[0m" if style and text else text for text, style in line)


def render(update: EmotionUpdate | None, status: ListenStatus, color: bool = False, width: int = 0) -> str:
    """The whole view as text (what the README shows), cropped to `width` columns when given."""
    lines = boxed(render_lines(update, status))
    if width:
        lines = [_crop(line, width) for line in lines]
    return "\n".join(paint(line, color) for line in lines)


class LiveView:
    """The view redrawn in place on a terminal, at most `REFRESH_HZ` times a second.

    It is drawn from the listening loop when an update comes and the last drawing is old enough: no refresh
    thread waking up when nothing changed, and an update that is not drawn is never rendered. When `out` is
    not a terminal (a file, a pipe), nothing is drawn while listening and the last view is written once, plain,
    when listening ends. Colour follows the NO_COLOR convention."""

    def __init__(self, source: str, model: str, out: TextIO | None = None) -> None:
        self.status = ListenStatus(source, model)
        self._out = out if out is not None else sys.stdout
        self._terminal = self._out.isatty()
        self._color = self._terminal and not os.environ.get("NO_COLOR")
        self._update: EmotionUpdate | None = None
        self._drawn_at = -1.0
        self._drawn_lines = 0  # lines of the last drawing, which the next one overwrites
        self._lock = threading.Lock()  # updates come from openSMILE's thread, messages from others

    def _draw(self, update: EmotionUpdate | None) -> None:
        # Cropped to the terminal as it is now: a wrapped or scrolled line would leave the next drawing's
        # cursor movement short and a torn copy of the box above it.
        try:
            columns, rows = os.get_terminal_size(self._out.fileno())
        except (OSError, ValueError):
            columns = rows = 0
        # A terminal that reports no size (a serial console, a fresh pseudo-terminal): $COLUMNS or 80 x 24.
        if columns <= 0 or rows <= 0:
            columns, rows = shutil.get_terminal_size()
        lines = render(update, self.status, self._color, max(columns - 1, 1)).split("\n")[: max(rows - 1, 1)]
        up = f"\x1b[{self._drawn_lines}F" if self._drawn_lines else ""
        self._out.write(up + "\x1b[J" + "\n".join(lines) + "\n")  # to the drawing's first line, clear, redraw
        self._out.flush()
        self._drawn_lines = len(lines)

    def start(self) -> None:
        if self._terminal:
            self._out.write("\x1b[?25l")  # no cursor blinking over the bars
            self._draw(None)

    def show(self, update: EmotionUpdate, dropped_blocks: int, utterances: int) -> None:
        self.status.dropped_blocks = dropped_blocks
        self.status.utterances = utterances
        self._update = update
        now = time.monotonic()
        if self._terminal and now - self._drawn_at >= 1.0 / REFRESH_HZ:
            self._drawn_at = now
            with self._lock:
                self._draw(update)

    def say_above(self, message: str, say: Callable[[str], None]) -> None:
        """`say(message)` (a line on stderr) above the view, which is redrawn below it: written into the
        drawing, the line would be overwritten by the next redraw and leave a torn copy of the box."""
        with self._lock:
            if not (self._terminal and self._drawn_lines):
                say(message)
                return
            self._out.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._out.flush()
            self._drawn_lines = 0
            say(message)
            self._draw(self._update)

    def stop(self) -> None:
        """Leave the last update on screen (or write it, plain, when `out` is not a terminal)."""
        if self._terminal:
            with self._lock:
                self._draw(self._update)
                self._drawn_lines = 0  # it stays on screen: later lines go below it
            self._out.write("\x1b[?25h")
            self._out.flush()
        else:
            self._out.write(render(self._update, self.status) + "\n")
            self._out.flush()

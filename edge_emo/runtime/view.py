"""The live terminal view of `edge-emo listen` (rich): six labeled bars, the dominant emotion, speech or
silence, the input level and the dropped-block count."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_emo.emotions import MAX_INTENSITY
from edge_emo.runtime.recognizer import EmotionUpdate

BAR_WIDTH = 30
LEVEL_FLOOR_DB = -60.0
# The most the view is redrawn per second. Updates come every 80 ms, but a redraw costs about 2 ms of Python
# (rich's layout): 5 a second still follows speech and halves the view's share of the CPU.
REFRESH_HZ = 5.0


def _bar(fraction: float, width: int, style: str) -> Text:
    """A horizontal bar of `width` cells filled to `fraction` (eighth-cell resolution)."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])
    return Text(text.ljust(width), style=style)


@dataclass
class ListenStatus:
    """What the view shows besides the update itself."""

    source: str
    model: str
    dropped_blocks: int = 0
    utterances: int = 0


def render(update: EmotionUpdate | None, status: ListenStatus) -> Panel:
    table = Table.grid(padding=(0, 1))
    table.add_column(justify="right", min_width=10)
    table.add_column(width=BAR_WIDTH)
    table.add_column(justify="right", width=4)
    emotions = update.emotions if update is not None else ()
    for name, value in zip(emotions, update.intensities if update is not None else ()):
        dominant = update.dominant == name
        table.add_row(
            Text(name, style="bold" if dominant else ""),
            _bar(float(value) / MAX_INTENSITY, BAR_WIDTH, "magenta" if dominant else "cyan"),
            f"{value:.2f}",
        )
    if update is None:
        state = Text("waiting for audio…", style="dim")
        level = Text("")
    else:
        speech = Text("● speech", style="green bold") if update.speech else Text("○ silence", style="dim")
        dominant = update.dominant or "–"
        state = Text.assemble(
            speech,
            "   dominant: ",
            (dominant, "bold magenta" if update.dominant else "dim"),
            f"   t = {update.time_s:7.2f} s",
            "" if update.speaker_heard_s is None else f"   speaker heard: {update.speaker_heard_s:.0f} s",
        )
        fraction = (update.level_db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB
        level = Text.assemble(
            "input ",
            _bar(fraction, 20, "green"),
            f" {max(update.level_db, -99.0):5.1f} dBFS",
            f"   dropped blocks: {status.dropped_blocks}   utterances: {status.utterances}",
        )
    footer = Text(f"{status.source} · model {status.model} · Ctrl-C to stop", style="dim")
    return Panel(Group(state, table, level, footer), title="edge-emo listen", expand=False)


class LiveView:
    """The view redrawn in place (rich.Live) on the terminal, at most `REFRESH_HZ` times a second.

    Drawing is the view's whole cost (about 2 ms of Python per frame on a 2-core x86), so it is drawn from the
    listening loop when an update comes and the last drawing is old enough: no refresh thread waking up
    when nothing changed, and an update that is not drawn is never rendered."""

    def __init__(self, source: str, model: str) -> None:
        from rich.live import Live

        self.status = ListenStatus(source, model)
        self._live = Live(render(None, self.status), auto_refresh=False, transient=False)
        self._update: EmotionUpdate | None = None
        self._drawn_at = -1.0

    def start(self) -> None:
        self._live.start(refresh=True)

    def show(self, update: EmotionUpdate, dropped_blocks: int, utterances: int) -> None:
        self.status.dropped_blocks = dropped_blocks
        self.status.utterances = utterances
        self._update = update
        now = time.monotonic()
        if now - self._drawn_at >= 1.0 / REFRESH_HZ:
            self._drawn_at = now
            self._live.update(render(update, self.status), refresh=True)

    def stop(self) -> None:
        if self._update is not None:  # the last update is on screen when listening ends
            self._live.update(render(self._update, self.status))
        self._live.stop()

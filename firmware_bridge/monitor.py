"""The bench tool behind `edge-emo bridge-monitor URL`: decode a live stream, print frames and error counters.

Frames go to `out` one per line: readable (emotion names from the last hello, intensities 0..3), the
canonical form (`raw`, the same as `bridge_tool decode`) or JSON objects (`json_lines`). The stats line goes
to `out` whenever an error counter moves and once at the end, and to `status` every STATS_EVERY_S while
the counters change (so a long session shows them without waiting for Ctrl-C). Status messages go to
`status`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from enum import Enum
from typing import TextIO

from .protocol import DecoderStats, Frame, Hello, StreamDecoder, Update, format_frame
from .transports import Source, open_source

POLL_S = 0.25  # longest wait inside one read, so that the deadline and Ctrl-C are honoured promptly
STATS_EVERY_S = 2.0


class Style(str, Enum):
    text = "text"  # readable: emotion names, intensities 0..3
    raw = "raw"  # the canonical form of `bridge_tool decode` (wire values: indices, levels 0..255)
    json = "json"  # one JSON object per frame, then one with the counters


def _names(emotions: tuple[str, ...], n: int) -> tuple[str, ...]:
    """The hello's emotion names, or positions when no hello (of this many emotions) arrived yet."""
    return emotions if len(emotions) == n else tuple(f"emotion{i}" for i in range(n))


def frame_record(frame: Frame, emotions: tuple[str, ...]) -> dict:
    """A frame as plain values, emotions by name (`emotions`: the last hello's)."""
    m = frame.message
    head = {"seq": frame.seq, "minor": frame.minor}
    if isinstance(m, Update):
        names = _names(emotions, len(m.levels))
        return {
            "type": "update",
            **head,
            "time_s": m.timestamp_s,
            "speech": m.speech,
            "dominant": None if m.dominant is None else names[m.dominant],
            "intensities": {e: round(v, 4) for e, v in zip(names, m.intensities)},
        }
    if isinstance(m, Hello):
        return {"type": "hello", **head, "model": m.model_version, "emotions": list(m.emotions),
                "update_rate_hz": m.update_rate_hz}  # fmt: skip
    return {"type": "unknown", **head, "message_type": m.type, "length": len(m.payload)}


def describe_frame(frame: Frame, emotions: tuple[str, ...]) -> str:
    """One readable line: `update #12 t=3.40 s speech dominant=anger  happiness 0.00 ... anger 1.71 ...`."""
    r = frame_record(frame, emotions)
    if r["type"] == "update":
        names = _names(emotions, len(frame.message.levels))
        values = "  ".join(f"{e} {v:.2f}" for e, v in zip(names, frame.message.intensities))
        voice = "speech" if r["speech"] else "silence"
        return f"update #{r['seq']} t={r['time_s']:.2f} s {voice} dominant={r['dominant'] or '-'}  {values}"
    if r["type"] == "hello":
        return (
            f"hello #{r['seq']} model {r['model']}, {r['update_rate_hz']:g} updates/s, "
            f"emotions {', '.join(r['emotions'])}"
        )
    return f"unknown #{r['seq']} type {r['message_type']} ({r['length']} bytes, from a newer sender?)"


def _show(frame: Frame, emotions: tuple[str, ...], style: Style) -> str:
    if style is Style.raw:
        return format_frame(frame)
    if style is Style.json:
        return json.dumps(frame_record(frame, emotions))
    return describe_frame(frame, emotions)


def _stats(stats: DecoderStats, style: Style) -> str:
    return json.dumps({"type": "stats", **asdict(stats)}) if style is Style.json else stats.line()


def run_monitor(
    url: str,
    *,
    count: int | None = None,
    timeout_s: float | None = None,
    retry_s: float = 1.0,
    out: TextIO | None = None,
    status: TextIO | None = None,
    style: Style = Style.text,
) -> tuple[int, DecoderStats]:
    """Print frames until `count` frames arrived, `timeout_s` passed, the input ended or Ctrl-C.

    Returns the number of frames printed and the decoder's counters. A URL that cannot be parsed raises
    ValueError, an input that cannot be opened at all raises OSError; an input lost later is reopened.
    """
    out = out or sys.stdout  # looked up now, not at import: the caller may have redirected them
    status = status or sys.stderr
    source = open_source(url)
    decoder = StreamDecoder()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    received = 0
    emotions: tuple[str, ...] = ()
    shown, next_stats = decoder.stats.line(), time.monotonic() + STATS_EVERY_S
    source.open()
    print(f"listening on {source.describe()}", file=status, flush=True)
    try:
        while count is None or received < count:
            remaining = POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                data = source.read(min(remaining, POLL_S))
            except OSError as error:
                print(f"input lost ({error}); reopening every {retry_s:g} s", file=status, flush=True)
                _reopen(source, retry_s, deadline)
                continue
            if data is None:
                break
            errors_before = decoder.stats.errors()
            for frame in decoder.feed(data):
                if count is not None and received >= count:
                    break
                if isinstance(frame.message, Hello):
                    emotions = frame.message.emotions
                print(_show(frame, emotions, style), file=out, flush=True)
                received += 1
            if decoder.stats.errors() != errors_before:
                print(_stats(decoder.stats, style), file=out, flush=True)
            if time.monotonic() >= next_stats and decoder.stats.line() != shown:
                shown, next_stats = decoder.stats.line(), time.monotonic() + STATS_EVERY_S
                print(shown, file=status, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    print(_stats(decoder.stats, style), file=out, flush=True)
    return received, decoder.stats


def _reopen(source: Source, retry_s: float, deadline: float | None) -> None:
    source.close()
    while deadline is None or time.monotonic() < deadline:
        time.sleep(retry_s if deadline is None else max(0.0, min(retry_s, deadline - time.monotonic())))
        try:
            source.open()
            return
        except OSError:
            continue

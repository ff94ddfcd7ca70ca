"""The bench tool behind `edge-emo bridge-monitor URL`: decode a live stream, print frames and error counters.

Frames go to `out` one per line in the canonical form (the same as `bridge_tool decode`); the stats line is
printed whenever an error counter moves and once at the end. Status messages go to `status`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .protocol import DecoderStats, StreamDecoder, format_frame
from .transports import Source, open_source

POLL_S = 0.25  # longest wait inside one read, so that the deadline and Ctrl-C are honoured promptly


def run_monitor(
    url: str,
    *,
    count: int | None = None,
    timeout_s: float | None = None,
    retry_s: float = 1.0,
    out: TextIO | None = None,
    status: TextIO | None = None,
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
                print(format_frame(frame), file=out, flush=True)
                received += 1
            if decoder.stats.errors() != errors_before:
                print(decoder.stats.line(), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    print(decoder.stats.line(), file=out, flush=True)
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

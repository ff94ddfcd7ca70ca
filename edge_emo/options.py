"""Checks of command-line values beyond what typer's types check: finite numbers in sane ranges, threads.

typer's `min=` lets `inf` through (and `nan`, which compares false with everything): `--update-interval inf`
overflowed, `--smoothing inf` and `--vad-threshold-db nan` silently gave all-zero output. Every error names
the option, the value and the limit, in one line."""

from __future__ import annotations

import math
import os

# --threads above the CPU count only slows onnxruntime down (1000 threads took over a minute for 11 s of
# audio, 100000 hung); with --force-threads a count up to this is allowed (for measuring).
MAX_FORCED_THREADS = 256


def check_range(option: str, value: float | None, low: float, high: float) -> float | None:
    """`value` if it is None or a finite number within low..high, else ValueError naming `option`."""
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{option} {value:g} is not a finite number within {low:g}..{high:g}")
    return value


def check_threads(threads: int, force: bool) -> int:
    """`threads` if at most the CPU count (or MAX_FORCED_THREADS with `force`), else ValueError."""
    cpus = os.cpu_count() or 1
    limit = MAX_FORCED_THREADS if force else cpus
    if not 1 <= threads <= limit:
        more = "" if force else " (more only with --force-threads)"
        raise ValueError(f"--threads {threads} is outside 1..{limit}: this machine has {cpus} CPUs{more}")
    return threads

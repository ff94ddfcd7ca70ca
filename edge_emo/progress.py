"""One progress display for all long work: rich bars on stderr with rate and ETA, one per running stage
(stages nest: an experiment's bar above its fine-tuning's), log lines printed above the bars, and a
one-line summary that stays when a stage ends.

    for clip in progress(clips, "features ravdess", unit="clips"): ...
    with stage("pretraining", total=steps, unit="steps") as advance:
        advance(1, "pretraining epoch 2/12")

ETAs come from the average rate since the stage started, not from the last few seconds: work that
finishes in bursts (a process pool returning 8 clips at a time) would otherwise swing them by 60x.
On a stderr that is not a terminal there are no bars, only the summaries."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Callable, TextIO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
AVERAGE_OVER_S = 24 * 3600.0  # rich's speed window: the whole stage


class _Display:
    """The one live display of this process, started by the first stage and stopped by the last."""

    progress: Progress | None = None
    depth = 0


def _start() -> Progress:
    if _Display.progress is None:
        console = Console(stderr=True)
        _Display.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,  # a log file gets the summaries, not redraws
            transient=True,  # a finished bar gives way to its summary line
            speed_estimate_period=AVERAGE_OVER_S,
            # stdout goes above the bars only when it is the terminal too: never move piped output to stderr
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        _Display.progress.start()
    _Display.depth += 1
    return _Display.progress


def _stop() -> None:
    _Display.depth -= 1
    if _Display.depth == 0 and _Display.progress is not None:
        _Display.progress.stop()
        _Display.progress = None


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def _rate(done: float, seconds: float, unit: str) -> str:
    if done <= 0 or seconds <= 0:
        return ""
    per_s = done / seconds
    return f"{per_s:.3g} {unit}/s" if per_s >= 1 else f"{seconds / done:.3g} s per {unit.rstrip('s')}"


def log(message: str, file: TextIO | None = None) -> None:
    """A line on stderr (or `file`, e.g. sys.stdout), above the bars while they run. Use this (or print),
    not click.echo: click writes to the stream's binary buffer, past rich's redirection, onto the bar."""
    print(message, file=file or sys.stderr, flush=True)


@contextmanager
def stage(label: str, total: float | None, unit: str = "steps") -> Iterator[Callable[..., None]]:
    """A bar for one stage of work; yields advance(n=1, description=None). When a stage ends (also by an
    exception), its bar is replaced by `label: N unit in M:SS (rate)` if it is the outermost one (the
    outer stage's summary speaks for the many short stages inside it)."""
    bar = _start()
    task = bar.add_task(label, total=total, rate="")
    started = time.perf_counter()

    def advance(n: float = 1, description: str | None = None) -> None:
        done = bar.tasks[bar.task_ids.index(task)].completed + n
        rate = _rate(done, time.perf_counter() - started, unit)
        bar.update(task, advance=n, description=description or label, rate=rate)

    try:
        yield advance
    finally:
        done = bar.tasks[bar.task_ids.index(task)].completed
        seconds = time.perf_counter() - started
        bar.remove_task(task)
        of = "" if total is None or done == total else f" of {total:g}"
        rate = _rate(done, seconds, unit)
        outermost = _Display.depth == 1
        _stop()  # the outermost stage's bar is gone before its summary is printed
        if outermost:
            log(f"{label}: {done:g}{of} {unit} in {_duration(seconds)}" + (f" ({rate})" if rate else ""))


def progress(items: Iterable[T], label: str, total: int | None = None, unit: str = "items") -> Iterator[T]:
    """Iterate over `items`, results of finished work, with a bar (see `stage`): each counts as it arrives."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    with stage(label, total, unit) as advance:
        for item in items:
            advance()
            yield item

"""The listening loop behind `edge-emo listen`: blocks from a source into the recognizer, updates out to a
callback, until the source ends, a stop is requested (Ctrl-C) or the device fails."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from edge_emo.runtime.recognizer import EmotionRecognizer, EmotionUpdate


class Source(Protocol):
    rate: int
    dropped_blocks: int
    captured: int

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]: ...


@dataclass
class ListenSummary:
    audio_s: float = 0.0  # audio analysed
    updates: int = 0
    utterances: int = 0
    speech_s: float = 0.0  # total length of the finished utterances
    dropped_blocks: int = 0
    interrupted: bool = False

    def describe(self) -> str:
        text = (
            f"{self.audio_s:.1f} s of audio, {self.utterances} utterance{'s' * (self.utterances != 1)} "
            f"({self.speech_s:.1f} s of speech), {self.updates} updates, {self.dropped_blocks} dropped blocks"
        )
        return ("stopped: " if self.interrupted else "done: ") + text


@contextmanager
def stop_on_sigint() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (instead of KeyboardInterrupt), so the loop stops between two blocks and never
    in the middle of a computation. The previous handler is restored afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    recognizer: EmotionRecognizer,
    source: Source,
    on_update: Callable[[EmotionUpdate, ListenSummary], None],
    stop: threading.Event | None = None,
) -> ListenSummary:
    """Feed every block of `source` to `recognizer` and pass each update to `on_update`. The open utterance
    is closed (its final update delivered) however the loop ends; an error of the source (e.g.
    DeviceLostError) is raised after that."""
    summary = ListenSummary()

    def deliver() -> None:
        for update in recognizer.updates():
            summary.updates += 1
            summary.dropped_blocks = source.dropped_blocks
            if update.final:
                summary.utterances += 1
                summary.speech_s += update.utterance_s
            on_update(update, summary)

    try:
        for block in source.blocks(stop):
            recognizer.accept_waveform(block, source.rate)
            deliver()
        summary.interrupted = stop is not None and stop.is_set()
    finally:
        recognizer.end_of_input()
        summary.audio_s = recognizer.time_s
        summary.dropped_blocks = source.dropped_blocks
        deliver()
    return summary

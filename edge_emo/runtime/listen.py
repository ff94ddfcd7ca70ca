"""The listening loop behind `edge-emo listen`: blocks from a source into the recognizer, updates out to a
callback, until the source ends, a stop is requested (Ctrl-C) or the device fails."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge_emo.features import require_audio_file
from edge_emo.features.speech import Vad
from edge_emo.options import check_range, check_threads
from edge_emo.runtime.audio_input import AudioFileSource, AudioSourceError, Microphone, find_device
from edge_emo.runtime.bundle import Bundle
from edge_emo.runtime.graph_choice import choose as choose_graph
from edge_emo.runtime.log_writer import FeatureLogger
from edge_emo.runtime.recognizer import CUE_AFTER_S, EmotionRecognizer, EmotionUpdate
from edge_emo.runtime.shipped import sample_path
from edge_emo.runtime.view import LiveView


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
    """Feed every block of `source` to `recognizer` and pass each update to `on_update`, as soon as the
    recognizer has it: on openSMILE's thread (`EmotionRecognizer.deliver_to`), so an update never waits for
    the next block. The open utterance is closed (its final update delivered) however the loop ends; an error
    of the source (e.g. DeviceLostError) is raised after that."""
    summary = ListenSummary()

    def deliver(update: EmotionUpdate) -> None:
        summary.updates += 1
        summary.dropped_blocks = source.dropped_blocks
        if update.final:
            summary.utterances += 1
            summary.speech_s += update.utterance_s
        on_update(update, summary)

    recognizer.deliver_to(deliver)
    try:
        for block in source.blocks(stop):
            recognizer.accept_waveform(block, source.rate)
        summary.interrupted = stop is not None and stop.is_set()
    finally:
        summary.dropped_blocks = source.dropped_blocks
        recognizer.end_of_input()
        summary.audio_s = recognizer.time_s
    return summary


@dataclass
class ListenOptions:
    """What `edge-emo listen` was asked to do (see its --help for each)."""

    input_files: list[Path] | None = None  # None: the microphone; 'sample': the shipped recording
    device: str | None = None
    fast: bool = False
    json_out: bool = False
    duration: float | None = None
    update_interval: float | None = None  # None: one update per model chunk (the bundle's)
    smoothing: float = 0.0
    cue_after: float | None = None  # None: the recognizer's CUE_AFTER_S
    vad_threshold_db: float | None = None
    vad: bool = True
    threads: int = 1
    force_threads: bool = False
    buffer: float = 2.0
    bridge: str | None = None
    log_features: Path | None = None
    log_max_mb: float = 200.0
    log_shard_s: float = 60.0
    serve: bool = False
    serve_address: str | None = None
    serve_token: str | None = None
    graph: str | None = None  # the bundle's graph to run; None: the faster here (runtime/graph_choice.py)

    def check(self) -> None:
        """The numbers are finite and in range; --json and a stdout bridge do not share stdout."""
        check_range("--update-interval", self.update_interval, 0.01, 60)
        check_range("--smoothing", self.smoothing, 0, 3600)
        check_range("--cue-after", self.cue_after, 0, 60)
        check_range("--vad-threshold-db", self.vad_threshold_db, -120, 0)
        check_range("--duration", self.duration, 0.01, 1e7)
        check_range("--buffer", self.buffer, 0.02, 600)
        check_range("--log-max-mb", self.log_max_mb, 0.01, 1e7)
        check_range("--log-shard-s", self.log_shard_s, 0.01, 86400)
        check_threads(self.threads, self.force_threads)
        bridge = self.bridge or ""
        if self.json_out and bridge.lower().startswith("stdout:"):
            raise ValueError(
                f"--bridge {bridge} writes binary frames to stdout, where --json writes its lines"
            )


def _sources(options: ListenOptions, bundle: Bundle) -> Iterable[Source]:
    """The files one after the other (each opened when its turn comes), or the microphone."""
    if options.input_files:
        paths = [sample_path() if str(p) == "sample" else p for p in options.input_files]
        for p in paths:  # all named files are there before the first is streamed
            require_audio_file(p)
        return (AudioFileSource(p, fast=options.fast, max_s=options.duration) for p in paths)
    try:
        device = find_device(options.device)
        return [Microphone(device, bundle.spec.sample_rate, buffer_s=options.buffer, max_s=options.duration)]
    except AudioSourceError as e:
        raise type(e)(f"{e}; without a microphone, try: edge-emo listen --input sample") from None


def listen(bundle: Bundle, options: ListenOptions, say: Callable[[str], None]) -> None:
    """Recognize emotions in every source of `options` with `bundle`, showing updates in the terminal view
    (or as JSON lines on stdout) and sending them to the bridge, the web page and the feature log as asked.
    `say` prints a line on stderr. Bad input raises ValueError/OSError; a failing device AudioSourceError
    (with its exit code); whatever was collected is kept however listening ends."""
    log = None
    view = None
    bundle, graph = choose_graph(bundle, options.graph, say)
    say(f"model {bundle.version}: {graph.describe()}")

    def say_live(message: str) -> None:  # a line on stderr while listening, above the view if it is drawn
        if view is None:
            say(message)
        else:
            view.say_above(message, say)

    def new_recognizer() -> EmotionRecognizer:
        return EmotionRecognizer(
            bundle,
            update_interval_s=options.update_interval,
            smoothing_s=options.smoothing,
            cue_after_s=CUE_AFTER_S if options.cue_after is None else options.cue_after,
            threads=options.threads,
            vad=Vad(threshold_db=options.vad_threshold_db) if options.vad else None,
            speech_sink=log,
        )

    recognizer = new_recognizer()  # checks the bundle before anything else happens
    if options.log_features is not None:
        log = FeatureLogger(
            options.log_features,
            bundle.spec,
            bundle.version,
            max_bytes=round(options.log_max_mb * 2**20),
            shard_s=options.log_shard_s,
            say=say_live,
        )
        recognizer.speech_sink = log
    link = None
    if options.bridge is not None:
        import firmware_bridge
        from firmware_bridge.protocol import MAX_MODEL_VERSION

        link = firmware_bridge.connect(
            options.bridge,
            model_version=bundle.short_version(MAX_MODEL_VERSION),
            emotions=bundle.emotions,
            update_rate_hz=1 / (recognizer.update_frames * recognizer.hop_s),
        )
    sources = _sources(options, bundle)
    warned = False
    web = None
    if options.serve or options.serve_address is not None:
        from edge_emo.web.server import DEFAULT_ADDRESS, WebView

        web = WebView(
            options.serve_address or DEFAULT_ADDRESS,
            options.serve_token,
            bundle.version,
            bundle.emotions,
            say=say_live,
        )

    def on_update(update: EmotionUpdate, summary: ListenSummary) -> None:
        nonlocal warned
        if link is not None:
            link.send_update(update)
        if web is not None:
            web.publish(update, summary)
        if options.json_out:
            sys.stdout.write(update.to_json() + "\n")
            sys.stdout.flush()
        else:
            view.show(update, summary.dropped_blocks, summary.utterances)
        if summary.dropped_blocks and not warned:
            warned = True
            say_live("warning: input overflow: processing fell behind and audio blocks are being dropped")

    try:
        for k, source in enumerate(sources):
            if k:
                recognizer = new_recognizer()  # a new stream: time 0, and the file's own sample rate
            if log is not None:
                log.start_stream(source.describe())
            if web is not None:
                web.start_stream(source.describe())
            view = None if options.json_out else LiveView(source.describe(), bundle.version)
            if options.json_out:
                say(f"listening: {source.describe()}, model {bundle.version}")
            try:
                with stop_on_sigint() as stop, source:
                    if view is not None:
                        view.start()
                    try:
                        summary = run(recognizer, source, on_update, stop)
                    finally:
                        if view is not None:
                            view.stop()
            finally:
                recognizer.close()
            say(summary.describe())
            damaged = getattr(source, "damaged", None)
            if damaged and not summary.audio_s:
                raise ValueError(f"{damaged}: nothing decodes")
            if damaged:
                say(f"warning: {damaged}; analysed what decoded")
            if summary.interrupted:
                break
    finally:
        if link is not None:
            link.close()
        if web is not None:
            web.close()  # browsers are told that listen has ended
            say(web.describe())
        if log is not None:
            log.close()  # what was collected is kept, however listening ended
            say(log.describe())

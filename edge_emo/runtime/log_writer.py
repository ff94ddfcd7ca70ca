"""`edge-emo listen --log-features DIR`: the speech segments' raw feature frames go to rotating shards in
DIR (format: edge_emo/features/log_format.py), so a device can collect pretraining data without keeping
a single sample of audio.

    log = FeatureLogger(Path("logs"), bundle.spec, bundle.version)
    log.start_stream("microphone")
    recognizer = EmotionRecognizer(bundle, speech_sink=log)   # calls start_segment/add_frame/end_segment
    ...                                                       # listen
    log.close()                                               # writes the last, partial shard

The recognizer hands over exactly the frames of each utterance it analyses (its voice-activity detector
decides what is speech; trailing silence is not part of an utterance), before normalisation. Frames are
collected in memory until a shard holds `shard_s` seconds of speech (a segment may continue in the next
shard); the shard is then written durably (temporary file, fsync, rename, fsync of the folder). A crash
loses at most the shard being collected. A crash while writing leaves a hidden temporary file, which the
next logger in the folder removes (and says so). When the shards of the folder exceed `max_bytes`, the
oldest are deleted (the newest shard is always kept).
"""

from __future__ import annotations

import datetime
import fcntl
import os
from pathlib import Path
from typing import Callable

import numpy as np

from edge_emo.features import FeatureSpec
from edge_emo.features.log_format import (
    FeatureLogError,
    header,
    read_shard,
    shard_bytes,
    shard_name,
    shard_number,
    shard_paths,
    temporary_paths,
)
from edge_emo.files import fsync_dir, private_folder, replace_file


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class FeatureLogger:
    """A speech sink for `EmotionRecognizer` that writes feature-log shards to `folder`.

    spec: the bundle's feature spec (what the frames are). model_version: the bundle's version.
    max_bytes: cap on the total size of the folder's shards. shard_s: seconds of speech per shard.
    say: where to report removed leftovers (e.g. a line on stderr)."""

    def __init__(
        self,
        folder: Path,
        spec: FeatureSpec,
        model_version: str,
        *,
        max_bytes: int = 200 * 2**20,
        shard_s: float = 60.0,
        say: Callable[[str], None] = print,
    ) -> None:
        from edge_emo.features.smile import opensmile_version

        if max_bytes <= 0 or shard_s <= 0:
            raise ValueError("the feature log's size cap and shard length must be positive")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise FeatureLogError(f"{self.folder}: not a folder")
        private_folder(self.folder)  # features of the wearer's speech: owner only, like the shards
        existing = shard_paths(self.folder)
        if existing:  # one folder, one feature set: pretraining reads the folder as one corpus
            newest = read_shard(existing[-1])
            if newest.spec != spec:
                raise FeatureLogError(
                    f"{self.folder}: holds feature logs of '{newest.spec.name}' ({newest.spec.dim} values), "
                    f"this model uses '{spec.name}' ({spec.dim} values); log to another folder"
                )
        # One logger per folder: two would pick the same shard numbers and replace each other's shards.
        self._lock: int | None = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise FeatureLogError(
                f"{self.folder}: another edge-emo process is logging features here"
            ) from None
        for leftover in temporary_paths(self.folder):
            leftover.unlink()
            say(f"feature log: removed {leftover.name}, a shard left incomplete by an earlier crash")
        self.spec = spec
        self.model_version = model_version
        self.extractor = f"opensmile {opensmile_version()}"
        self.max_bytes = int(max_bytes)
        self.session = f"{_utc_now()}-{os.getpid()}"
        self._next = max((shard_number(p) for p in existing), default=0) + 1
        self._frames = np.empty((max(1, round(shard_s / spec.hop_s)), spec.dim), np.float32)
        self._n = 0  # frames collected for the next shard
        self._segments: list[dict] = []  # of the next shard: stream, start_frame, frames
        self._open: dict | None = None  # the segment frames are being added to
        self._segment_frames = 0  # frames of the open segment, over all shards
        self._streams: dict[int, dict[str, str]] = {}
        self._stream = -1
        self.shards_written = 0
        self.shards_deleted = 0
        self.segments = 0
        self.frames_logged = 0

    def start_stream(self, source: str) -> None:
        """A new stream of audio begins (frame 0, time 0): the microphone, or the next input file."""
        self._stream += 1
        self._streams[self._stream] = {"source": source, "started_utc": _utc_now()}

    # -- the recognizer's speech sink ------------------------------------------------------------------

    def start_segment(self, start_frame: int) -> None:
        if self._stream < 0:
            self.start_stream("unnamed")
        self._open = {
            "stream": self._stream,
            "start_frame": int(start_frame),
            "frames": 0,
            "continued": False,
        }
        self._segments.append(self._open)
        self._segment_frames = 0

    def add_frame(self, row: np.ndarray) -> None:
        self._frames[self._n] = row
        self._n += 1
        self._open["frames"] += 1
        self._segment_frames += 1
        self.frames_logged += 1
        if self._n == len(self._frames):
            self._write()
            # The segment goes on in the next shard, from the frame after the last one written.
            seg = self._open
            self._open = {
                **seg,
                "start_frame": seg["start_frame"] + seg["frames"],
                "frames": 0,
                "continued": True,
            }
            self._segments.append(self._open)

    def end_segment(self) -> None:
        if self._open is None:
            return
        if self._open["frames"] == 0:
            self._segments.pop()  # nothing was added since the segment (or the last shard) began
        if self._segment_frames:
            self.segments += 1
        self._open = None

    # -- shards ----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Write what has been collected (the stream is over or stopped) and release the folder."""
        if self._lock is None:
            return
        self.end_segment()
        try:
            if self._n:
                self._write()
        finally:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _write(self) -> None:
        segments = [s for s in self._segments if s["frames"]]
        offsets = np.cumsum([0] + [s["frames"] for s in segments])
        streams = {s["stream"]: self._streams[s["stream"]] for s in segments}
        head = header(self.spec, self.model_version, self.extractor, self.session, streams, segments)
        head["written_utc"] = _utc_now()
        path = self.folder / shard_name(self._next)
        replace_file(path, shard_bytes(head, self._frames[: self._n], offsets))
        self._next += 1
        self.shards_written += 1
        self._n = 0
        self._segments = []
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        shards = shard_paths(self.folder)
        sizes = [p.stat().st_size for p in shards]
        total, deleted = sum(sizes), 0
        while total > self.max_bytes and deleted < len(shards) - 1:
            shards[deleted].unlink()
            total -= sizes[deleted]
            deleted += 1
        if deleted:
            fsync_dir(self.folder)
            self.shards_deleted += deleted

    def describe(self) -> str:
        return (
            f"feature log {self.folder}: {self.segments} segment{'s' * (self.segments != 1)}, "
            f"{self.frames_logged * self.spec.hop_s:.1f} s of frames, {self.shards_written} shard"
            f"{'s' * (self.shards_written != 1)} written, {self.shards_deleted} oldest deleted (size cap)"
        )

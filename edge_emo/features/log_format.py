"""The feature-log format: raw feature frames of speech segments, in self-describing shards; never audio.

`edge-emo listen --log-features DIR` writes it (edge_emo/runtime/log_writer.py); `edge-emo pretrain DIR`
reads it (edge_emo/data/log_corpus.py). Both use this module only, so the format lives in one place.

A feature log is a folder of shards `features-NNNNNNNN.npz`, N a sequence number (higher: newer). A shard is
an uncompressed numpy .npz archive that `np.load(path, allow_pickle=False)` reads, with exactly three arrays:

- `header`: a 0-d unicode array holding one JSON object (see `header`): format name and version, the
  feature spec and its identity (`spec_id`), the frame period, the openSMILE version, the model bundle's
  version, the session, the streams (audio source name and start time) and one entry per segment (stream,
  first frame, frame count, start and end in seconds since its stream started, and `continued`: true when
  the segment began in the previous shard; a long segment is split where a shard fills up).
- `frames`: (N, F) float32, the raw frames (before normalisation) of all segments, one after the other.
- `offsets`: (S + 1,) int64, segment i is frames[offsets[i] : offsets[i + 1]].

A shard is written to a hidden temporary file in the same folder, fsynced and renamed (then the folder is
fsynced), so a shard that exists is complete. Nothing else is stored: no audio, no PCM levels, no outputs.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emo.files import sha256_hex

from .spec import FeatureSpec

FORMAT = "edge-emo-feature-log"
FORMAT_VERSION = 1  # bump on any change a reader of version 1 would misread
ARRAYS = ("header", "frames", "offsets")
_SHARD = re.compile(r"^features-(\d{8})\.npz$")
# A shard being written (edge_emo.files.temporary_name): left behind only by a crash.
_TEMPORARY = re.compile(r"^\.features-\d{8}\.npz\.tmp-\d+$")


class FeatureLogError(ValueError):
    """A file or folder is not a usable feature log (corrupted, unknown format, or other features)."""


def spec_id(spec: FeatureSpec) -> str:
    """A short identity of a feature spec: sha256 of its canonical JSON (name, columns, hop, rate)."""
    text = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    return sha256_hex(text.encode())[:16]


def shard_name(number: int) -> str:
    return f"features-{number:08d}.npz"


def shard_number(path: Path) -> int | None:
    """The sequence number of a shard file, None for any other file."""
    match = _SHARD.match(path.name)
    return int(match.group(1)) if match else None


def shard_paths(folder: Path) -> list[Path]:
    """The complete shards of a feature log, oldest first."""
    found = [(shard_number(p), p) for p in Path(folder).iterdir() if p.is_file()]
    return [p for n, p in sorted((n, p) for n, p in found if n is not None)]


def temporary_paths(folder: Path) -> list[Path]:
    """Shards a crashed writer left half-written."""
    return sorted(p for p in Path(folder).iterdir() if _TEMPORARY.match(p.name))


def is_feature_log(folder: Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and bool(shard_paths(folder))


def header(
    spec: FeatureSpec,
    model_version: str,
    extractor: str,
    session: str,
    streams: dict[int, dict[str, str]],
    segments: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON header of a shard. segments: {"stream", "start_frame", "frames", "continued"} each; their
    times are added."""
    hop = spec.hop_s
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "feature_spec": spec.to_dict(),
        "spec_id": spec_id(spec),
        "frame_period_s": hop,
        "normalized": False,
        "extractor": extractor,
        "model_version": model_version,
        "session": session,
        "streams": {str(k): v for k, v in streams.items()},
        "segments": [
            {
                **s,
                "start_s": round(s["start_frame"] * hop, 6),
                "end_s": round((s["start_frame"] + s["frames"]) * hop, 6),
            }
            for s in segments
        ],
    }


def shard_bytes(head: dict[str, Any], frames: np.ndarray, offsets: np.ndarray) -> bytes:
    """A shard file's content."""
    out = io.BytesIO()
    np.savez(
        out,
        header=np.array(json.dumps(head, sort_keys=True)),
        frames=np.ascontiguousarray(frames, dtype=np.float32),
        offsets=np.asarray(offsets, dtype=np.int64),
    )
    return out.getvalue()


@dataclass(frozen=True)
class Shard:
    """One shard, read and checked."""

    path: Path
    header: dict[str, Any]
    spec: FeatureSpec
    frames: np.ndarray  # (N, F) float32
    offsets: np.ndarray  # (S + 1,) int64

    @property
    def segments(self) -> list[np.ndarray]:
        """The frames of each segment, in the order of header["segments"]."""
        return [self.frames[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def read_shard(path: str | Path) -> Shard:
    """Read and check a shard (never unpickles). `FeatureLogError` names the file and what is wrong."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise FeatureLogError(f"{path}: not a feature-log shard (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(ARRAYS):
                raise FeatureLogError(f"{path}: not a feature-log shard (arrays {sorted(npz.files)})")
            text, frames, offsets = (npz[name] for name in ARRAYS)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        if isinstance(e, FeatureLogError):
            raise
        raise FeatureLogError(f"{path}: not a readable feature-log shard ({e})") from None
    try:
        head = json.loads(str(text))
        if head.get("format") != FORMAT:
            raise FeatureLogError(f"{path}: not an edge-emo feature log")
        if head.get("format_version") != FORMAT_VERSION:
            raise FeatureLogError(
                f"{path}: feature-log format version {head.get('format_version')!r} is not one this "
                f"edge-emo reads ({FORMAT_VERSION})"
            )
        spec = FeatureSpec.from_dict(head["feature_spec"])
        n_segments = len(head["segments"])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise FeatureLogError(f"{path}: broken feature-log header ({e!r})") from None
    if head.get("spec_id") != spec_id(spec):
        raise FeatureLogError(f"{path}: the header's spec_id does not match its feature spec")
    if frames.dtype != np.float32 or frames.ndim != 2 or frames.shape[1] != spec.dim:
        raise FeatureLogError(
            f"{path}: frames are {frames.dtype} {frames.shape}, expected float32 (N, {spec.dim})"
        )
    if (
        offsets.dtype != np.int64
        or offsets.shape != (n_segments + 1,)
        or offsets[0] != 0
        or offsets[-1] != len(frames)
        or np.any(np.diff(offsets) <= 0)
    ):
        raise FeatureLogError(f"{path}: segment offsets do not match the frames")
    return Shard(path, head, spec, frames, offsets)

"""Durable file replacement, the one way edge-emo writes files that must survive a crash or power loss."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make renames and deletions in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """Where `replace_file` writes `path` before the rename: a hidden file in the same folder."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: temporary file in the same folder, fsync, rename."""
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)

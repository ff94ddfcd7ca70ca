"""Durable, private file writing: the one way edge-emo writes files that must survive a crash or power loss.

What edge-emo writes about the wearer (audio clips, labels, personalized bundles, feature logs) is created
readable by its owner only: files 0600 in folders 0700 (docs/PRIVACY.md)."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def _sha256():
    """Python's built-in sha256 where it has one: `hashlib` loads OpenSSL's libcrypto when imported, 3.5 MB of
    a device's resident memory for a few hashes of small files (some Python builds have no built-in sha256:
    then hashlib's)."""
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.9 to 3.11
        except ImportError:
            from hashlib import sha256
    return sha256()


def sha256_hex(data: bytes) -> str:
    """sha256 of `data` as hex."""
    digest = _sha256()
    digest.update(data)
    return digest.hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size of the file at `path`, read a megabyte at a time: a bundle's larger graph is never
    held in memory whole just to be hashed."""
    digest, size = _sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def fsync_dir(folder: Path) -> None:
    """Make renames and deletions in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_folder(folder: Path) -> Path:
    """Create `folder` and its missing parents as 0700 folders; folders that exist are left as they are."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
    return missing[0] if missing else folder


def write_synced(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Create `path` (it must not exist) with `mode`, write `data` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with open(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def temporary_name(path: Path) -> Path:
    """Where `replace_file` writes `path` before the rename: a hidden file in the same folder."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, durably and privately (0600): temporary file in the same folder,
    fsync, rename, fsync of the folder."""
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)  # our own pid's: left by an earlier process that had this pid
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def process_alive(pid: int) -> bool:
    """True if a process with this id runs (leftovers named after a live process are not leftovers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_pid(name: str, marker: str) -> int | None:
    """The process id at the end of `name` after `marker` (e.g. '.tmp-1234'), if that process is gone."""
    head, sep, pid = name.rpartition(marker)
    if not sep or not head or not pid.isdigit() or int(pid) == os.getpid():
        return None
    return None if process_alive(int(pid)) else int(pid)

"""The command line as users run it: `python -m edge_emo ...` in a child process, with this checkout on
PYTHONPATH (so the tests exercise the working tree, installed or not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_emo"]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ours, the checkout on PYTHONPATH, wide tables, then `extra`."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(extra or {})}


def edge_emo(
    *args: object, check: bool = False, env: dict[str, str] | None = None, timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    """`edge-emo ARGS`; kwargs go to subprocess.run (e.g. input). check: fail with the output on exit != 0."""
    proc = subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=cli_env(env),
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edge-emo {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A fresh interpreter running `code` (e.g. to see which modules a command imports)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=cli_env()
    )

"""The command line as users run it: `python -m edge_emo ...` in a child process, with this checkout on
PYTHONPATH (so the tests exercise the working tree, installed or not)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
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


def edge_emo_without_torch(*commands: list[str]) -> subprocess.CompletedProcess:
    """Each `edge-emo` command line of `commands` in one fresh interpreter in which `import torch` fails, as
    on a device without it; a command that exits non-zero fails the run (returncode 1, the command on stderr)."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
        "from edge_emo.cli import app\n"
        f"for args in {[[str(a) for a in c] for c in commands]!r}:\n"
        "    try: app(args)\n"
        "    except SystemExit as e: assert e.code in (0, None), (args[0], e.code)\n"
    )
    return python(code)


def read_terminal(master: int, proc: subprocess.Popen, timeout_s: float = 300) -> bytes:
    """Everything `proc` writes to the pseudo-terminal whose master side is `master`, until it closes the
    terminal or exits (or `timeout_s` passes)."""
    chunks, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)

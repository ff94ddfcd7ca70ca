"""Shared pieces of the firmware bridge tests: the spec's test vectors, the C programs built with gcc."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import firmware_bridge

PACKAGE = Path(firmware_bridge.__file__).parent
C_DIR = PACKAGE / "c"
GCC_FLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
EMOTIONS = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")


@dataclass(frozen=True)
class Vector:
    name: str
    body: bytes
    wire: bytes
    frame: str | None  # canonical line of the decoded frame
    rejected: str | None  # or the DecoderStats counter that rejects it


def load_vectors(path: Path = PACKAGE / "PROTOCOL.md") -> list[Vector]:
    """The ```vector blocks of PROTOCOL.md: `key: value` lines, values continued on indented lines."""
    vectors = []
    for block in re.findall(r"^```vector\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith(" "):
                fields[key] += " " + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        vectors.append(
            Vector(
                fields["name"],
                bytes.fromhex(fields["body"]),
                bytes.fromhex(fields["wire"]),
                fields.get("frame"),
                fields.get("rejected"),
            )
        )
    return vectors


@pytest.fixture(scope="session")
def vectors() -> list[Vector]:
    found = load_vectors()
    assert len(found) >= 8, "PROTOCOL.md lost its test vectors"
    return found


def compile_c(source: str, out_dir: Path, extra: Sequence[str] = ()) -> Path:
    """gcc with the CI flags and sanitizers; fails the test with gcc's message."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required to test the C decoder"
    exe = out_dir / Path(source).stem
    cmd = [gcc, *GCC_FLAGS, *SANITIZERS, *extra, "-o", str(exe), str(C_DIR / source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    return exe


@pytest.fixture(scope="session")
def bridge_tool(tmp_path_factory) -> Path:
    return compile_c("bridge_tool.c", tmp_path_factory.mktemp("c"))


def run_tool(tool: Path, mode: str, data: bytes) -> bytes:
    result = subprocess.run([str(tool), mode], input=data, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr, result.stderr.decode()  # sanitizer reports
    return result.stdout

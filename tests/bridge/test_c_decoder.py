"""The C99 header compiled with gcc -std=c99 -Wall -Wextra -Werror and ASan/UBSan: the spec's vectors, byte
for byte agreement with the Python encoder and decoder, and a seeded fuzz loop."""

from __future__ import annotations

import random
import subprocess

import pytest
from cobs import cobs

from firmware_bridge.protocol import (
    CRC,
    MAX_ENCODED,
    Encoder,
    Hello,
    StreamDecoder,
    Unknown,
    Update,
    crc16,
    encode_body,
    encode_frame,
    format_frame,
)
from tests.bridge.conftest import C_DIR, EMOTIONS, GCC_FLAGS, SANITIZERS, compile_c, run_tool


def python_decode(data: bytes) -> str:
    decoder = StreamDecoder()
    lines = [format_frame(f) for f in decoder.feed(data)]
    return "".join(line + "\n" for line in [*lines, decoder.stats.line()])


def other_version(message, seq: int, version: int, extra: bytes) -> bytes:
    """A frame as a sender of another protocol version might write it: extra payload bytes appended."""
    body = bytearray(encode_body(message, seq)[: -CRC.size])
    body[0] = version
    body[4] = min(255, body[4] + len(extra))
    body += extra[: 255 - (len(body) - 5)]
    return cobs.encode(bytes(body) + CRC.pack(crc16(bytes(body)))) + b"\x00"


def random_session(rng: random.Random, n: int) -> list:
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-0123456789") for _ in range(rng.randint(1, 15)))]
    messages: list = [Hello.from_values("edge-emo-0.1.0", EMOTIONS, 12.5), Hello(f"v{n}", tuple(names), 0)]
    for i in range(n):
        k = rng.choice([6, 6, 6, 1, 16])
        levels = tuple(rng.randrange(256) for _ in range(k))
        dominant = rng.choice([None, rng.randrange(k)])
        messages.append(
            Update(rng.randrange(2**32) if i % 10 == 0 else 100 * i, levels, dominant, rng.random() < 0.7)
        )
    return messages


def test_selftest(bridge_tool):
    assert run_tool(bridge_tool, "selftest", b"") == b"selftest ok\n"


def test_the_header_links_into_two_translation_units(tmp_path):
    """Header-only: every file includes it, exactly one defines EEB_IMPLEMENTATION."""
    (tmp_path / "user.c").write_text(
        '#include "edge_emo_bridge.h"\nuint16_t user_crc(const uint8_t *p, size_t n) { return eeb_crc16(p, n); }\n'
    )
    (tmp_path / "main.c").write_text(
        '#define EEB_IMPLEMENTATION\n#include "edge_emo_bridge.h"\n'
        "uint16_t user_crc(const uint8_t *p, size_t n);\n"
        'int main(void) { return user_crc((const uint8_t *)"123456789", 9) == 0x29B1u ? 0 : 1; }\n'
    )
    exe = tmp_path / "two_units"
    cmd = [
        "gcc",
        *GCC_FLAGS,
        *SANITIZERS,
        "-I",
        str(C_DIR),
        "-o",
        str(exe),
        str(tmp_path / "main.c"),
        str(tmp_path / "user.c"),
    ]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert subprocess.run([str(exe)]).returncode == 0


def test_vectors_decode_the_same_in_c(bridge_tool, vectors):
    stream = b"".join(v.wire for v in vectors)
    out = run_tool(bridge_tool, "decode", stream).decode()
    *lines, stats = out.splitlines()
    assert lines == [v.frame for v in vectors if v.frame is not None]
    assert out == python_decode(stream)
    for counter in ("crc_errors", "version_errors", "malformed"):
        assert f" {counter}={sum(v.rejected == counter for v in vectors)} " in stats + " "


def test_vectors_encode_the_same_in_c(bridge_tool, vectors):
    canonical = [
        v for v in vectors if v.frame is not None and " minor=0 " in v.frame and "unknown" not in v.frame
    ]
    stream = b"".join(v.wire for v in canonical)
    assert run_tool(bridge_tool, "reencode", stream) == stream


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_encoder_writes_what_python_writes(bridge_tool, seed):
    encoder = Encoder()
    stream = b"".join(encoder.encode(m) for m in random_session(random.Random(seed), 300))
    assert run_tool(bridge_tool, "reencode", stream) == stream
    assert run_tool(bridge_tool, "decode", stream).decode() == python_decode(stream)


@pytest.mark.parametrize("seed", range(6))
def test_c_and_python_decoders_agree_on_damaged_streams(bridge_tool, seed):
    """Same frames, same counters, whatever the damage: noise, flips, cuts, overlong runs, newer versions."""
    rng = random.Random(seed)
    parts = []
    for i, message in enumerate(random_session(rng, 200)):
        frame = bytearray(encode_frame(message, rng.randrange(0x10000) if i % 17 == 0 else i))
        roll = rng.random()
        if roll < 0.1:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif roll < 0.15:
            frame = frame[: rng.randrange(len(frame))]
        elif roll < 0.2:
            frame[rng.randrange(len(frame))] = 0
        elif roll < 0.25:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(60))))
        elif roll < 0.27:
            parts.append(bytes(rng.randrange(1, 256) for _ in range(MAX_ENCODED + rng.randrange(-2, 40))))
        elif roll < 0.3:
            parts.append(encode_frame(Unknown(rng.randrange(3, 256), bytes(rng.randrange(30))), i))
        elif roll < 0.35:
            version = rng.choice([0x11, 0x1F, 0x20, 0x00])
            frame = bytearray(
                other_version(message, i, version, bytes(rng.randrange(1, 256) for _ in range(5)))
            )
        parts.append(bytes(frame))
    stream = b"".join(parts)
    assert run_tool(bridge_tool, "decode", stream).decode() == python_decode(stream)


def test_seeded_fuzz_loop_under_sanitizers(tmp_path):
    """At least 10**5 random and mutated inputs (a few seconds); longer runs: benchmarks/fuzz_bridge.sh."""
    fuzz = compile_c("fuzz_bridge.c", tmp_path)
    result = subprocess.run([str(fuzz), "20240611", "200000"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr
    assert result.stdout.startswith("fuzz_bridge ok: 200000 inputs"), result.stdout

"""The Python encoder and streaming decoder against the spec (PROTOCOL.md) and its rules."""

from __future__ import annotations

import binascii
import math

import pytest
from cobs import cobs

from firmware_bridge.protocol import (
    MAX_ENCODED,
    DecoderStats,
    Encoder,
    FrameError,
    Hello,
    StreamDecoder,
    Unknown,
    Update,
    crc16,
    decode_body,
    encode_body,
    encode_frame,
    format_frame,
    quantise,
)
from firmware_bridge.transports import Endpoint, parse_url
from tests.bridge.conftest import EMOTIONS

HELLO = Hello.from_values("edge-emo-0.1.0", EMOTIONS, 10.0)


def updates(n: int, start_ms: int = 0) -> list[Update]:
    return [
        Update(start_ms + 100 * i, tuple((i * 37 + k * 11) % 256 for k in range(6)), i % 6 or None, i % 3 > 0)
        for i in range(n)
    ]


def decode_stream(data: bytes, chunk: int | None = None) -> tuple[list[str], DecoderStats]:
    decoder = StreamDecoder()
    step = chunk or max(1, len(data))
    frames = [f for i in range(0, len(data), step) for f in decoder.feed(data[i : i + step])]
    return [format_frame(f) for f in frames], decoder.stats


def test_crc_is_ccitt_false_with_its_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1  # an independent implementation


def test_every_vector_decodes_as_the_spec_says(vectors):
    for v in vectors:
        assert v.wire.endswith(b"\x00") and b"\x00" not in v.wire[:-1], v.name
        assert cobs.decode(v.wire[:-1]) == v.body, v.name
        assert crc16(v.body[:-2]) == int.from_bytes(v.body[-2:], "little") or v.rejected == "crc_errors"
        if v.frame is not None:
            assert format_frame(decode_body(v.body)) == v.frame, v.name
        else:
            with pytest.raises(FrameError) as error:
                decode_body(v.body)
            assert error.value.counter == v.rejected, v.name


def test_the_encoder_writes_the_vectors_bytes(vectors):
    canonical = [v for v in vectors if v.frame is not None and " minor=0 " in v.frame]
    assert {"hello", "update", "update-wrap", "hello-long", "unknown-type"} <= {v.name for v in canonical}
    for v in canonical:
        frame = decode_body(v.body)
        assert encode_body(frame.message, frame.seq) == v.body, v.name
        assert encode_frame(frame.message, frame.seq) == v.wire, v.name


def test_cobs_long_run_vector_uses_a_full_block(vectors):
    (long,) = [v for v in vectors if v.name == "hello-long"]
    assert long.wire[0] == 0xFF and len(long.wire) <= MAX_ENCODED + 1


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, None])
def test_stream_of_all_vectors_in_any_chunking(vectors, chunk):
    lines, stats = decode_stream(b"".join(v.wire for v in vectors), chunk)
    assert lines == [v.frame for v in vectors if v.frame is not None]
    for counter in ("crc_errors", "version_errors", "malformed"):
        assert getattr(stats, counter) == sum(v.rejected == counter for v in vectors)
    assert stats.unknown_types == sum(v.frame.startswith("unknown") for v in vectors if v.frame)


def test_roundtrip_of_a_session():
    encoder = Encoder()
    messages = [HELLO, *updates(50)]
    lines, stats = decode_stream(b"".join(encoder.encode(m) for m in messages), chunk=5)
    assert lines == [format_frame(decode_body(encode_body(m, i))) for i, m in enumerate(messages)]
    assert stats == DecoderStats(frames=51)
    assert encoder.seq == 51


def test_garbage_costs_only_the_frames_it_touches():
    encoder = Encoder()
    frames = [encoder.encode(m) for m in [HELLO, *updates(6)]]
    noise = bytes(range(1, 200)) + b"\x00\x17\x00\x00\x05\x01\x00"  # 3 bad frames and an empty one
    stream = noise + frames[0] + frames[1] + frames[2][3:] + frames[3] + noise + frames[4]
    stream += frames[5][:-1] + b"\x42" + frames[6]  # frame 5 loses its delimiter and merges into 6
    lines, stats = decode_stream(stream)
    assert [line.split()[1] for line in lines] == ["seq=0", "seq=1", "seq=3", "seq=4"]
    assert stats.frames == 4
    assert stats.framing_errors + stats.crc_errors == 8  # 2 x noise, the tail of frame 2, frames 5+6 glued
    assert stats.seq_gaps == 1 and stats.lost_frames == 1


def test_overlong_run_is_dropped_up_to_the_next_delimiter():
    frame = encode_frame(updates(1)[0], 0)
    lines, stats = decode_stream(b"\x11" * (MAX_ENCODED + 1) + frame + frame)
    assert len(lines) == 1 and stats.overruns == 1
    lines, stats = decode_stream(b"\x00" * 3 + b"\x11" * MAX_ENCODED + b"\x00" + frame)
    assert len(lines) == 1 and stats.overruns == 0 and stats.framing_errors + stats.crc_errors == 1


def test_sequence_tracking():
    stream = b"".join(encode_frame(u, seq) for u, seq in zip(updates(7), [10, 11, 14, 14, 2, 3, 65535]))
    stream += encode_frame(HELLO, 500) + encode_frame(updates(1)[0], 501) + encode_frame(updates(1)[0], 3)
    _, stats = decode_stream(stream)
    # 11->14: gap of 2; 14->14 repeat, 14->2 backwards; 3->65535 backwards; hello 500 restarts; 501->3 back
    assert (stats.seq_gaps, stats.lost_frames, stats.out_of_order) == (1, 2, 4)


def test_versioning_newer_minor_longer_payload_unknown_type_other_major():
    update = updates(2)[1]
    longer = encode_body(update, 7)[:-2]
    longer = bytes([0x17, longer[1], longer[2], longer[3], longer[4] + 3]) + longer[5:] + b"\x01\x02\x03"
    longer += crc16(longer).to_bytes(2, "little")
    frame = decode_body(longer)
    assert frame.minor == 7 and frame.message == update  # the extra bytes are ignored

    unknown = decode_body(encode_body(Unknown(0x42, b"xyz"), 9))
    assert unknown.message == Unknown(0x42, b"xyz")

    major2 = bytes([0x20]) + encode_body(update, 1)[1:-2]
    with pytest.raises(FrameError, match="version_errors"):
        decode_body(major2 + crc16(major2).to_bytes(2, "little"))


def test_quantisation():
    assert [quantise(x) for x in (0.0, 3.0, 1.5, 0.5 / 85, 0.49 / 85, -1.0, 7.0, math.nan, math.inf)] == [
        0,
        255,
        128,  # 127.5 rounds half up
        1,
        0,
        0,
        255,
        0,
        255,
    ]
    for level in range(256):  # a level survives intensity and back
        assert quantise(level / 85) == level
    u = Update.from_values(1.2344, [0.0, 0.5, 3.0, 1.25, 2.999, 0.01], 2, True)
    assert u == Update(1234, (0, 43, 255, 106, 255, 1), 2, True)
    assert Update.from_values(u.timestamp_s, u.intensities, u.dominant, u.speech) == u


@pytest.mark.parametrize(
    "message, match",
    [
        (Update(0, (), None, False), "1..16 intensities"),
        (Update(0, (1,) * 17, None, False), "1..16 intensities"),
        (Update(0, (1, 2, 300), None, False), "levels"),
        (Update(0, (1, 2, 3), 3, False), "dominant"),
        (Hello("m", ("happiness", "has space"), 1000), "emotion name"),
        (Hello("m", ("a,b",), 1000), "emotion name"),
        (Hello("m", ("x" * 16,), 1000), "emotion name"),
        (Hello("é", ("a",), 1000), "model_version"),
        (Hello("m", (), 1000), "1..16 emotions"),
        (Hello("m", ("n" * 15,) * 16, 1000), "exceeds 255"),
        (Hello("m", ("a",), 70000), "update_rate"),
    ],
)
def test_encoder_rejects_invalid_messages(message, match):
    with pytest.raises(ValueError, match=match):
        encode_frame(message, 0)


def test_from_values_rejects_bad_numbers():
    with pytest.raises(ValueError, match="timestamp_s"):
        Update.from_values(-1.0, [0.0] * 6, None, False)
    with pytest.raises(ValueError, match="update_rate_hz"):
        Hello.from_values("m", EMOTIONS, 1000.0)


@pytest.mark.parametrize(
    "url, endpoint",
    [
        ("serial:///dev/ttyUSB0?baud=115200", Endpoint("serial", "/dev/ttyUSB0", baudrate=115200)),
        ("serial:///dev/ttyACM1", Endpoint("serial", "/dev/ttyACM1")),
        ("serial://COM3?baud=9600", Endpoint("serial", "COM3", baudrate=9600)),
        ("udp://127.0.0.1:9999", Endpoint("udp", "127.0.0.1", port=9999)),
        ("udp://[::1]:9999", Endpoint("udp", "::1", port=9999)),
        ("stdout://", Endpoint("stdout")),
        ("stdout://?format=hex", Endpoint("stdout", hex_lines=True)),
        ("-", Endpoint("stdin")),
        ("stdin://", Endpoint("stdin")),
    ],
)
def test_parse_url(url, endpoint):
    assert parse_url(url) == endpoint


@pytest.mark.parametrize(
    "url, match",
    [
        ("serial://?baud=115200", "no serial device"),
        ("serial:///dev/ttyUSB0?baud=fast", "baud"),
        ("serial:///dev/ttyUSB0?parity=E", "unknown option 'parity'"),
        ("udp://127.0.0.1", "udp://HOST:PORT"),
        ("udp://127.0.0.1:99999", "bad UDP port"),
        ("tcp://127.0.0.1:9", "unsupported"),
        ("stdout://?format=json", "raw or hex"),
        ("/dev/ttyUSB0", "unsupported"),
    ],
)
def test_parse_url_errors_name_the_problem(url, match):
    with pytest.raises(ValueError, match=match):
        parse_url(url)

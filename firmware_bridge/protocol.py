"""The bridge wire format, version 1 (the spec is PROTOCOL.md next to this file).

On the wire a frame is COBS(body) followed by one 0x00 delimiter, where
body = header (version, type, seq, payload length) | payload | CRC-16/CCITT-FALSE of header and payload.
Everything is little-endian. Messages here hold the exact wire values (quantised levels, centihertz), so
encode(decode(x)) == x; `Update.from_values` and `Hello.from_values` convert from the runtime's floats.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Union

import crcmod.predefined
from cobs import cobs

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0

MSG_HELLO = 0x01
MSG_UPDATE = 0x02

HEADER = struct.Struct("<BBHB")  # version (major << 4 | minor), message type, sequence number, payload length
UPDATE_FIXED = struct.Struct("<IBBB")  # timestamp_ms, flags, dominant, number of emotions
HELLO_FIXED = struct.Struct("<H")  # update rate in centihertz
CRC = struct.Struct("<H")

MAX_PAYLOAD = 255
MAX_BODY = HEADER.size + MAX_PAYLOAD + CRC.size  # 262
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1  # 264: COBS adds one code byte per started run of 254
DELIMITER = 0x00

MAX_EMOTIONS = 16
MAX_NAME = 15
MAX_MODEL_VERSION = 31
NO_DOMINANT = 0xFF
FLAG_SPEECH = 0x01
INTENSITY_MAX = 3.0
LEVELS_PER_UNIT = 85  # level 0..255 <-> intensity 0..3 exactly: 255 / 3 = 85

crc16 = crcmod.predefined.mkCrcFun("crc-ccitt-false")  # poly 0x1021, init 0xFFFF, no reflection, check 0x29B1


@dataclass(frozen=True)
class Update:
    """One emotion update: quantised intensities (level / 85 = intensity 0..3) in the hello's emotion order."""

    timestamp_ms: int  # since the start of the stream, modulo 2**32
    levels: tuple[int, ...]
    dominant: int | None  # index into levels; None when nothing dominates (e.g. no speech)
    speech: bool

    @classmethod
    def from_values(
        cls, timestamp_s: float, intensities: Sequence[float], dominant: int | None, speech: bool
    ) -> Update:
        """Quantise runtime values: intensities are clamped to 0..3 (NaN counts as 0), rounded half up."""
        if not math.isfinite(timestamp_s) or timestamp_s < 0:
            raise ValueError(f"timestamp_s must be a finite time >= 0, got {timestamp_s!r}")
        levels = tuple(quantise(float(v)) for v in intensities)
        timestamp_ms = math.floor(timestamp_s * 1000.0 + 0.5) % 2**32
        return cls(timestamp_ms, levels, None if dominant is None else int(dominant), bool(speech))

    @property
    def timestamp_s(self) -> float:
        return self.timestamp_ms / 1000.0

    @property
    def intensities(self) -> tuple[float, ...]:
        return tuple(level / LEVELS_PER_UNIT for level in self.levels)


@dataclass(frozen=True)
class Hello:
    """Sent first on every (re)connection: what the following updates mean."""

    model_version: str
    emotions: tuple[str, ...]
    update_rate_centihz: int  # 0 when updates are irregular

    @classmethod
    def from_values(cls, model_version: str, emotions: Sequence[str], update_rate_hz: float) -> Hello:
        if not math.isfinite(update_rate_hz) or not 0 <= update_rate_hz <= 655.35:
            raise ValueError(f"update_rate_hz must be within 0..655.35, got {update_rate_hz!r}")
        return cls(model_version, tuple(emotions), math.floor(update_rate_hz * 100.0 + 0.5))

    @property
    def update_rate_hz(self) -> float:
        return self.update_rate_centihz / 100.0


@dataclass(frozen=True)
class Unknown:
    """A well-formed frame of a message type this decoder does not know (from a newer sender)."""

    type: int
    payload: bytes


Message = Union[Update, Hello, Unknown]


@dataclass(frozen=True)
class Frame:
    seq: int
    minor: int  # the sender's protocol minor version
    message: Message


class FrameError(ValueError):
    """A frame the decoder rejects; `counter` names the DecoderStats field it counts in."""

    def __init__(self, counter: str, detail: str) -> None:
        super().__init__(f"{counter}: {detail}")
        self.counter = counter


def quantise(intensity: float) -> int:
    """Intensity 0..3 -> level 0..255 (round half up, clamped, NaN -> 0)."""
    if math.isnan(intensity):
        return 0
    return min(255, max(0, math.floor(min(intensity, INTENSITY_MAX) * LEVELS_PER_UNIT + 0.5)))


# --- encoding -----------------------------------------------------------------------------------------


def _check_text(what: str, text: str, min_len: int, max_len: int, forbidden: bytes = b"") -> bytes:
    raw = text.encode("utf-8")
    if not (min_len <= len(raw) <= max_len and _printable(raw, forbidden)):
        extra = f" or {forbidden.decode()!r}" if forbidden else ""
        raise ValueError(
            f"{what} must be {min_len}..{max_len} printable ASCII characters without spaces{extra}, got {text!r}"
        )
    return raw


def _printable(raw: bytes, forbidden: bytes = b"") -> bool:
    return all(0x21 <= b <= 0x7E and b not in forbidden for b in raw)


def _payload(message: Message) -> tuple[int, bytes]:
    if isinstance(message, Update):
        n = len(message.levels)
        if not 1 <= n <= MAX_EMOTIONS:
            raise ValueError(f"an update carries 1..{MAX_EMOTIONS} intensities, got {n}")
        if not all(0 <= level <= 255 for level in message.levels):
            raise ValueError(f"levels must be within 0..255, got {message.levels}")
        dominant = NO_DOMINANT if message.dominant is None else message.dominant
        if dominant != NO_DOMINANT and not 0 <= dominant < n:
            raise ValueError(f"dominant must be None or an index below {n}, got {message.dominant}")
        flags = FLAG_SPEECH if message.speech else 0
        fixed = UPDATE_FIXED.pack(message.timestamp_ms % 2**32, flags, dominant, n)
        return MSG_UPDATE, fixed + bytes(message.levels)
    if isinstance(message, Hello):
        if not 0 <= message.update_rate_centihz <= 0xFFFF:
            raise ValueError(
                f"update_rate_centihz must be within 0..65535, got {message.update_rate_centihz}"
            )
        if not 1 <= len(message.emotions) <= MAX_EMOTIONS:
            raise ValueError(f"a hello names 1..{MAX_EMOTIONS} emotions, got {len(message.emotions)}")
        version = _check_text("model_version", message.model_version, 0, MAX_MODEL_VERSION)
        parts = [HELLO_FIXED.pack(message.update_rate_centihz), bytes([len(version)]), version]
        parts.append(bytes([len(message.emotions)]))
        for name in message.emotions:
            raw = _check_text("an emotion name", name, 1, MAX_NAME, forbidden=b",")
            parts += [bytes([len(raw)]), raw]
        return MSG_HELLO, b"".join(parts)
    if isinstance(message, Unknown):
        return message.type, bytes(message.payload)
    raise TypeError(f"cannot encode {type(message).__name__}")


def encode_body(message: Message, seq: int, minor: int = PROTOCOL_MINOR) -> bytes:
    """Header, payload and CRC: the bytes the CRC protects, before COBS."""
    msg_type, payload = _payload(message)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} (names too long?)")
    head = HEADER.pack(PROTOCOL_MAJOR << 4 | minor, msg_type, seq & 0xFFFF, len(payload)) + payload
    return head + CRC.pack(crc16(head))


def encode_frame(message: Message, seq: int) -> bytes:
    """The complete wire bytes of one frame: COBS(body) and the 0x00 delimiter."""
    return cobs.encode(encode_body(message, seq)) + bytes([DELIMITER])


class Encoder:
    """Numbers frames: every message gets the next sequence number (mod 2**16)."""

    def __init__(self) -> None:
        self.seq = 0

    def encode(self, message: Message) -> bytes:
        frame = encode_frame(message, self.seq)
        self.seq = (self.seq + 1) & 0xFFFF
        return frame


# --- decoding -----------------------------------------------------------------------------------------


def _take_text(
    payload: bytes, at: int, min_len: int, max_len: int, forbidden: bytes = b""
) -> tuple[str, int]:
    if at >= len(payload):
        raise FrameError("malformed", "payload ends before a text field")
    n = payload[at]
    raw = payload[at + 1 : at + 1 + n]
    if len(raw) < n:
        raise FrameError("malformed", "text field runs past the payload")
    if not min_len <= n <= max_len or not _printable(raw, forbidden):
        raise FrameError("malformed", f"text field {raw!r} is not {min_len}..{max_len} printable ASCII")
    return raw.decode("ascii"), at + 1 + n


def _parse_update(payload: bytes) -> Update:
    if len(payload) < UPDATE_FIXED.size:
        raise FrameError("malformed", f"update payload of {len(payload)} bytes is too short")
    timestamp_ms, flags, dominant, n = UPDATE_FIXED.unpack_from(payload)
    if not 1 <= n <= MAX_EMOTIONS or len(payload) < UPDATE_FIXED.size + n:
        raise FrameError("malformed", f"update with {n} intensities in {len(payload)} bytes")
    if dominant != NO_DOMINANT and dominant >= n:
        raise FrameError("malformed", f"dominant index {dominant} with {n} emotions")
    levels = tuple(payload[UPDATE_FIXED.size : UPDATE_FIXED.size + n])
    return Update(
        timestamp_ms, levels, None if dominant == NO_DOMINANT else dominant, bool(flags & FLAG_SPEECH)
    )


def _parse_hello(payload: bytes) -> Hello:
    if len(payload) < HELLO_FIXED.size:
        raise FrameError("malformed", f"hello payload of {len(payload)} bytes is too short")
    (rate,) = HELLO_FIXED.unpack_from(payload)
    version, at = _take_text(payload, HELLO_FIXED.size, 0, MAX_MODEL_VERSION)
    if at >= len(payload) or not 1 <= payload[at] <= MAX_EMOTIONS:
        raise FrameError("malformed", "hello without a valid number of emotions")
    count, at = payload[at], at + 1
    names = []
    for _ in range(count):
        name, at = _take_text(payload, at, 1, MAX_NAME, b",")
        names.append(name)
    return Hello(version, tuple(names), rate)


def decode_body(body: bytes) -> Frame:
    """Check and parse one unstuffed frame body; raises FrameError naming the failed check."""
    if len(body) < HEADER.size + CRC.size:
        raise FrameError("framing_errors", f"frame of {len(body)} bytes is shorter than header and CRC")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if crc16(body[: -CRC.size]) != crc:
        raise FrameError("crc_errors", "CRC mismatch")
    version, msg_type, seq, payload_len = HEADER.unpack_from(body)
    if version >> 4 != PROTOCOL_MAJOR:
        raise FrameError("version_errors", f"protocol major version {version >> 4}")
    if HEADER.size + payload_len + CRC.size != len(body):
        raise FrameError("malformed", f"payload length {payload_len} in a frame of {len(body)} bytes")
    payload = body[HEADER.size : HEADER.size + payload_len]
    message: Message
    if msg_type == MSG_UPDATE:
        message = _parse_update(payload)
    elif msg_type == MSG_HELLO:
        message = _parse_hello(payload)
    else:
        message = Unknown(msg_type, payload)
    return Frame(seq, version & 0x0F, message)


@dataclass
class DecoderStats:
    frames: int = 0  # valid frames of known types
    unknown_types: int = 0  # valid frames of unknown types (skipped)
    crc_errors: int = 0
    framing_errors: int = 0  # COBS invalid, or too short for header and CRC
    overruns: int = 0  # more than MAX_ENCODED bytes without a delimiter
    version_errors: int = 0  # another major version
    malformed: int = 0  # CRC fine but lengths or values impossible
    seq_gaps: int = 0  # jumps forward in the sequence numbers
    lost_frames: int = 0  # frames missing in those jumps
    out_of_order: int = 0  # repeated or backward sequence numbers

    def errors(self) -> int:
        return self.crc_errors + self.framing_errors + self.overruns + self.version_errors + self.malformed

    def line(self) -> str:
        """The canonical one-line form, identical to the C tool's."""
        return "stats " + " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class StreamDecoder:
    """Turns bytes in chunks of any size into frames; never raises, counts everything it drops.

    Resynchronises at every 0x00: garbage costs at most the frame it touches.
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._discarding = False  # inside an overlong run, until the next delimiter
        self._last_seq: int | None = None

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        start = 0
        while True:
            end = data.find(DELIMITER, start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._discarding:
                if len(self._buffer) + len(piece) > MAX_ENCODED:
                    self.stats.overruns += 1
                    self._discarding = True
                    self._buffer.clear()
                else:
                    self._buffer += piece
            if end < 0:
                return frames
            if not self._discarding and self._buffer:
                frame = self._decode(bytes(self._buffer))
                if frame is not None:
                    frames.append(frame)
            self._buffer.clear()
            self._discarding = False
            start = end + 1

    def _decode(self, encoded: bytes) -> Frame | None:
        try:
            body = cobs.decode(encoded)
        except cobs.DecodeError:
            self.stats.framing_errors += 1
            return None
        try:
            frame = decode_body(body)
        except FrameError as error:
            setattr(self.stats, error.counter, getattr(self.stats, error.counter) + 1)
            return None
        self._track(frame)
        return frame

    def _track(self, frame: Frame) -> None:
        if isinstance(frame.message, Unknown):
            self.stats.unknown_types += 1
        else:
            self.stats.frames += 1
        # A hello starts a new session (the sender may have restarted), so it never counts as a gap.
        if self._last_seq is not None and not isinstance(frame.message, Hello):
            step = (frame.seq - self._last_seq) & 0xFFFF
            if step == 0 or step > 0x8000:
                self.stats.out_of_order += 1
            elif step > 1:
                self.stats.seq_gaps += 1
                self.stats.lost_frames += step - 1
        self._last_seq = frame.seq


def format_frame(frame: Frame) -> str:
    """The canonical one-line form of a frame, identical to the C tool's (`bridge_tool decode`)."""
    m = frame.message
    head = f"seq={frame.seq} minor={frame.minor}"
    if isinstance(m, Update):
        dominant = "-" if m.dominant is None else str(m.dominant)
        levels = ",".join(map(str, m.levels))
        return (
            f"update {head} t_ms={m.timestamp_ms} speech={int(m.speech)} dominant={dominant} levels={levels}"
        )
    if isinstance(m, Hello):
        names = ",".join(m.emotions)
        return f"hello {head} rate_centihz={m.update_rate_centihz} model={m.model_version} emotions={names}"
    return f"unknown {head} type={m.type} len={len(m.payload)}"

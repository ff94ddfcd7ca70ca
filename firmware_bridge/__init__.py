"""Firmware bridge: sends edge-emo's emotion updates to a wearable's firmware over serial, UDP or stdout.

Self-contained (no edge_emo, torch or onnx). The wire format is specified in PROTOCOL.md; c/ holds a C99
header-only encoder/decoder for the firmware side.

    link = firmware_bridge.connect("udp://127.0.0.1:9999", model_version="edge-emo-0.1.0",
                                   emotions=EMOTIONS, update_rate_hz=10.0)
    link.send_update(update)   # edge-emo's EmotionUpdate: .time_s, .intensities, .dominant (a name), .speech
    link.close()
"""

from __future__ import annotations

from .protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    DecoderStats,
    Encoder,
    Frame,
    FrameError,
    Hello,
    StreamDecoder,
    Unknown,
    Update,
    decode_body,
    encode_body,
    encode_frame,
    format_frame,
)
from .transports import Link, LinkStats, UpdateLike, connect, open_link, parse_url

__all__ = [
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "DecoderStats",
    "Encoder",
    "Frame",
    "FrameError",
    "Hello",
    "Link",
    "LinkStats",
    "StreamDecoder",
    "Unknown",
    "Update",
    "UpdateLike",
    "connect",
    "decode_body",
    "encode_body",
    "encode_frame",
    "format_frame",
    "open_link",
    "parse_url",
]

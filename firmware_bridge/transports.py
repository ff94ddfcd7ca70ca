"""Links to the wearable, chosen by URL, and the byte sources `edge-emo bridge-monitor` reads.

    serial:///dev/ttyUSB0?baud=115200   a serial port (serial://COM3?baud=115200 on Windows); baud defaults to 115200
    udp://HOST:PORT                     sending: one datagram per frame to HOST:PORT; monitor: bind HOST:PORT
    stdout://  stdout://?format=hex     sending only: raw frames, or one frame per line in hex
    stdin://  or  -                     monitor only: read a raw stream, e.g. piped from stdout://

A Link never raises into its caller once open: a lost port or socket is logged, counted in `link.stats`
and reopened on a later send, with exponential backoff. Only programming errors (a bad URL, an invalid
message) raise ValueError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import serial

from .protocol import Encoder, Hello, Message, Update

log = logging.getLogger("firmware_bridge")

DEFAULT_BAUDRATE = 115200


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "serial", "udp", "stdout" or "stdin"
    address: str = ""  # serial device, or UDP host
    port: int = 0  # UDP port
    baudrate: int = DEFAULT_BAUDRATE
    hex_lines: bool = False  # stdout only


def parse_url(url: str) -> Endpoint:
    """Parse a bridge URL; raises ValueError naming what is wrong."""
    if url.strip() == "-":
        return Endpoint("stdin")
    parts = urlsplit(url.strip())
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = {"serial": {"baud"}, "stdout": {"format"}}.get(parts.scheme, set())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} in bridge URL {url!r}")
    if parts.scheme == "serial":
        device = parts.netloc + parts.path
        if not device:
            raise ValueError(f"no serial device in {url!r}; expected e.g. serial:///dev/ttyUSB0?baud=115200")
        baud = query.get("baud", str(DEFAULT_BAUDRATE))
        if not baud.isdigit() or int(baud) <= 0:
            raise ValueError(f"baud must be a positive integer, got {baud!r} in {url!r}")
        return Endpoint("serial", device, baudrate=int(baud))
    if parts.scheme == "udp":
        try:
            port = parts.port
        except ValueError as error:
            raise ValueError(f"bad UDP port in {url!r}: {error}") from None
        if not parts.hostname or port is None:
            raise ValueError(f"expected udp://HOST:PORT, got {url!r}")
        return Endpoint("udp", parts.hostname, port=port)
    if parts.scheme in ("stdout", "stdin") and not (parts.netloc or parts.path):
        fmt = query.get("format", "raw")
        if fmt not in ("raw", "hex"):
            raise ValueError(f"format must be raw or hex, got {fmt!r} in {url!r}")
        return Endpoint(parts.scheme, hex_lines=fmt == "hex")
    raise ValueError(
        f"unsupported bridge URL {url!r}; expected serial:///dev/ttyUSB0?baud=115200, udp://HOST:PORT, "
        "stdout:// or (monitor only) stdin://"
    )


# --- sending ------------------------------------------------------------------------------------------


class Transport(Protocol):
    stream: bool  # a byte stream (not datagrams): a delimiter on (re)open ends any half-sent frame

    def open(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    stream = True

    def __init__(self, device: str, baudrate: int, write_timeout_s: float) -> None:
        self.device, self.baudrate, self.write_timeout_s = device, baudrate, write_timeout_s
        self._port: serial.Serial | None = None

    def open(self) -> None:
        self._port = serial.Serial(self.device, self.baudrate, timeout=0, write_timeout=self.write_timeout_s)

    def write(self, data: bytes) -> None:
        if self._port is None:
            raise serial.PortNotOpenError()
        self._port.write(data)

    def close(self) -> None:
        _close_port(self._port)
        self._port = None


def _close_port(port: serial.Serial | None) -> None:
    if port is not None:  # closing a port whose device vanished may fail; it is closed anyway
        with contextlib.suppress(OSError):
            port.close()


def _udp_socket(host: str, port: int, attach: Callable[[socket.socket, Any], None]) -> socket.socket:
    """A UDP socket for host:port (IPv4 or IPv6), connected or bound by `attach`."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        attach(sock, address)
    except OSError:
        sock.close()
        raise
    return sock


class UdpTransport:
    stream = False

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None

    def open(self) -> None:
        # connected, so that an unreachable receiver is reported on a later send
        self._sock = _udp_socket(self.host, self.port, socket.socket.connect)

    def write(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionError("socket closed")
        self._sock.send(data)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class StdoutTransport:
    def __init__(self, hex_lines: bool) -> None:
        self.hex_lines = hex_lines
        self.stream = not hex_lines

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        out = sys.stdout.buffer
        out.write(data.hex().encode() + b"\n" if self.hex_lines else data)
        out.flush()

    def close(self) -> None:
        pass


class UpdateLike(Protocol):
    """What `Link.send_update` reads from an update: the fields of edge-emo's EmotionUpdate it needs."""

    time_s: float  # seconds since the start of the stream
    intensities: Sequence[float]  # one per emotion, 0..3, in the hello's order
    dominant: str | None  # name of the dominant emotion (one of the hello's), or None
    speech: bool


@dataclass
class LinkStats:
    sent: int = 0  # frames written
    dropped: int = 0  # frames not written because the link was down
    failures: int = 0  # failed writes and failed (re)opens
    reconnects: int = 0  # times the link came back after a failure


class Link:
    """A one-way connection to the wearable. Sends never raise on I/O errors; they return False.

    A failed write or open is logged once per outage and counted; the link is reopened on a later send
    after a backoff (doubling from retry_initial_s up to retry_max_s). After every (re)open, and every
    hello_every_s, the last hello goes out before the next update.
    """

    def __init__(
        self,
        transport: Transport,
        url: str,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        hello_every_s: float = 5.0,
    ) -> None:
        self.url = url
        self.stats = LinkStats()
        self._transport = transport
        self._encoder = Encoder()
        self._hello: Hello | None = None
        self._hello_every_s = hello_every_s
        self._hello_due = 0.0  # time.monotonic() at which the hello is to be repeated
        self._connected = False
        self._closed = False
        self._failed = False  # since the last successful open
        self._retry_initial_s, self._retry_max_s = retry_initial_s, retry_max_s
        self._backoff_s = retry_initial_s
        self._retry_at = 0.0
        self._reopen()

    @property
    def connected(self) -> bool:
        return self._connected

    def send_hello(self, model_version: str, emotions: Sequence[str], update_rate_hz: float) -> bool:
        """Announce the model; repeated after every reconnection and every hello_every_s."""
        self._hello = Hello.from_values(model_version, emotions, update_rate_hz)
        return self.send(self._hello)

    def send_update(self, update: UpdateLike) -> bool:
        """Send one update (after the hello when that is due); False if it was dropped. The dominant
        emotion goes on the wire as its index in the hello's emotions, so a hello must have been sent."""
        if self._hello is None:
            raise ValueError("send_hello first: an update's emotions are the hello's")
        if update.dominant is not None and update.dominant not in self._hello.emotions:
            raise ValueError(f"dominant emotion {update.dominant!r} is not one of {self._hello.emotions}")
        dominant = None if update.dominant is None else self._hello.emotions.index(update.dominant)
        message = Update.from_values(update.time_s, update.intensities, dominant, update.speech)
        if self._hello is not None and self._ready() and time.monotonic() >= self._hello_due:
            self.send(self._hello)
        return self.send(message)

    def send(self, message: Message) -> bool:
        """Write one message; False if it was dropped because the link is down (see `stats`)."""
        frame = self._encoder.encode(message)  # an invalid message raises ValueError here, before any I/O
        if not self._ready():
            self.stats.dropped += 1
            return False
        try:
            self._transport.write(frame)
        except OSError as error:  # serial.SerialException, socket errors, a broken pipe
            self._lost(error)
            self.stats.dropped += 1
            return False
        self.stats.sent += 1
        if isinstance(message, Hello):
            self._hello_due = time.monotonic() + self._hello_every_s
        return True

    def close(self) -> None:
        """Close the port or socket; later sends are dropped."""
        self._transport.close()
        self._connected = False
        self._closed = True

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ready(self) -> bool:
        return self._connected or (not self._closed and self._reopen())

    def _reopen(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._transport.open()
            if self._transport.stream:
                self._transport.write(b"\x00")  # the receiver drops any half frame it holds
        except OSError as error:
            self._lost(error)
            return False
        self._connected = True
        self._backoff_s = self._retry_initial_s
        self._hello_due = 0.0  # the wearable may have restarted: tell it again
        if self._failed:
            self._failed = False
            self.stats.reconnects += 1
            log.warning("bridge %s: link is back (%d frames dropped so far)", self.url, self.stats.dropped)
        return True

    def _lost(self, error: OSError) -> None:
        self.stats.failures += 1
        if not self._failed:
            log.warning("bridge %s: link down (%s); will reopen it on a later send", self.url, error)
        self._failed = True
        self._connected = False
        self._transport.close()
        self._retry_at = time.monotonic() + self._backoff_s
        self._backoff_s = min(2.0 * self._backoff_s, self._retry_max_s)


def open_link(
    url: str,
    *,
    retry_initial_s: float = 0.5,
    retry_max_s: float = 10.0,
    hello_every_s: float = 5.0,
    write_timeout_s: float = 0.2,
) -> Link:
    """Open a link to the wearable. A bad URL raises ValueError; an absent device does not (it is retried).

    write_timeout_s bounds how long a serial write may block (a stalled device counts as a lost link).
    """
    endpoint = parse_url(url)
    transport: Transport
    if endpoint.kind == "serial":
        transport = SerialTransport(endpoint.address, endpoint.baudrate, write_timeout_s)
    elif endpoint.kind == "udp":
        transport = UdpTransport(endpoint.address, endpoint.port)
    elif endpoint.kind == "stdout":
        transport = StdoutTransport(endpoint.hex_lines)
    else:
        raise ValueError(f"{url!r} can only be read (bridge-monitor), not sent to")
    return Link(
        transport, url, retry_initial_s=retry_initial_s, retry_max_s=retry_max_s, hello_every_s=hello_every_s
    )


def connect(
    url: str | None, *, model_version: str, emotions: Sequence[str], update_rate_hz: float, **options: float
) -> Link | None:
    """What `edge-emo listen --bridge URL` calls: open the link and send the hello; None without a URL."""
    if not url:
        return None
    link = open_link(url, **options)
    link.send_hello(model_version, emotions, update_rate_hz)
    return link


# --- receiving (bridge-monitor) -----------------------------------------------------------------------


class Source(Protocol):
    def open(self) -> None: ...

    def read(self, timeout_s: float) -> bytes | None:
        """Bytes received within timeout_s (maybe none); None at the end of the stream."""

    def close(self) -> None: ...

    def describe(self) -> str: ...


class UdpSource:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None

    def open(self) -> None:
        self._sock = _udp_socket(self.host, self.port, socket.socket.bind)

    def read(self, timeout_s: float) -> bytes | None:
        assert self._sock is not None
        self._sock.settimeout(max(timeout_s, 1e-3))
        try:
            return self._sock.recv(65536)
        except socket.timeout:
            return b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def describe(self) -> str:
        host, port = self._sock.getsockname()[:2] if self._sock else (self.host, self.port)
        return f"udp://{f'[{host}]' if ':' in host else host}:{port}"


class SerialSource:
    def __init__(self, device: str, baudrate: int) -> None:
        self.device, self.baudrate = device, baudrate
        self._port: serial.Serial | None = None

    def open(self) -> None:
        self._port = serial.Serial(self.device, self.baudrate, timeout=0)

    def read(self, timeout_s: float) -> bytes | None:
        assert self._port is not None
        if self._port.timeout != timeout_s:  # reconfigures the port: only when it changes
            self._port.timeout = timeout_s
        data = self._port.read(1)
        return data + self._port.read(self._port.in_waiting) if data else data

    def close(self) -> None:
        _close_port(self._port)
        self._port = None

    def describe(self) -> str:
        return f"serial://{self.device}?baud={self.baudrate}"


class StdinSource:
    def open(self) -> None:
        pass

    def read(self, timeout_s: float) -> bytes | None:
        fd = sys.stdin.fileno()
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return b""
        return os.read(fd, 65536) or None

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "stdin"


def open_source(url: str) -> Source:
    """The monitor's input for a URL (not yet opened); raises ValueError for a bad or send-only URL."""
    endpoint = parse_url(url)
    if endpoint.kind == "udp":
        return UdpSource(endpoint.address, endpoint.port)
    if endpoint.kind == "serial":
        return SerialSource(endpoint.address, endpoint.baudrate)
    if endpoint.kind == "stdin":
        return StdinSource()
    raise ValueError(f"{url!r} can only be sent to, not monitored")

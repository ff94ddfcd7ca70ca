"""The live web view of `edge-emo listen --serve`: an HTTP server in a thread of the listen process, one page
(assets/live.*, inlined) and a Server-Sent Events stream of the updates.

    view = WebView("127.0.0.1:8765", None, bundle.version, bundle.emotions, say=print)  # prints the address
    view.start_stream("sample.flac")
    ... view.publish(update, summary) for every EmotionUpdate ...
    view.close()                                                  # browsers are told listen has ended

The live loop never waits on a browser: `publish` appends to each client's bounded outbox (the oldest
update is dropped and counted when a client lags `OUTBOX` updates behind) and returns; the client's own
thread writes to its socket, and gives up on a client that takes nothing for `SEND_TIMEOUT_S`. Every request
needs the access token (`?token=` in the address, or an `Authorization: Bearer` header), generated unless
given: a phone on the same network, or another user of the board, sees nothing without it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

from edge_emo.emotions import MAX_INTENSITY
from edge_emo.web import colors

DEFAULT_ADDRESS = "127.0.0.1:8765"
ASSETS = Path(__file__).parent / "assets"
HISTORY_S = 60.0  # what a browser that connects late is sent first: the page's timeline span
OUTBOX = 100  # updates a browser may lag behind before the oldest are dropped (10 s at the default rate)
KEEPALIVE_S = 5.0  # a comment line this often: proxies keep the stream open, dead clients are noticed
SEND_TIMEOUT_S = 20.0  # a browser that takes no data for this long is disconnected
SEND_BUFFER = 16384  # bytes of socket buffer per event stream (Linux doubles it)
MAX_CLIENTS = 8  # event streams at once; each is a thread on a small board
CLOSE_WAIT_S = 1.0  # at the end, how long browsers get to receive the last updates


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, HOST, :PORT or [IPv6]:PORT; the missing part from DEFAULT_ADDRESS."""
    default_host, default_port = DEFAULT_ADDRESS.rsplit(":", 1)
    text = text.strip()
    if text.startswith("["):  # [::1]:8765
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a host alone, or a bare IPv6 address
        host, port = text, ""
    if (port and not port.isdigit()) or int(port or 0) > 65535:
        raise ValueError(f"--serve-address {text!r}: not HOST:PORT (e.g. {DEFAULT_ADDRESS} or 0.0.0.0:8765)")
    return host or default_host, int(port or default_port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: whatever it resolves to, it was asked for explicitly
        return False


def _lan_address() -> str | None:
    """This machine's address on the network of its default route (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never reached
            return s.getsockname()[0]
        except OSError:
            return None


def _event(kind: str, data: str) -> bytes:
    """One Server-Sent Event (data is a single line of JSON)."""
    return f"event: {kind}\ndata: {data}\n\n".encode()


class _Outbox:
    """What one browser has yet to receive; `put` never waits for the browser."""

    def __init__(self, size: int) -> None:
        self.items: deque[bytes] = deque(maxlen=size)
        self.ready = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: bytes) -> None:
        with self.ready:
            if len(self.items) == self.items.maxlen:
                self.dropped += 1  # the oldest goes: the page catches up on the newest state
            self.items.append(item)
            self.ready.notify()

    def take(self, timeout: float) -> list[bytes]:
        """Everything queued, after waiting up to `timeout` for something (empty: nothing came)."""
        with self.ready:
            self.ready.wait_for(lambda: self.items or self.closed, timeout)
            items = list(self.items)
            self.items.clear()
            return items

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()


class WebView:
    """The server; `publish` is called from the listen loop, everything else runs in the server's threads."""

    def __init__(
        self,
        address: str,
        token: str | None,
        model: str,
        emotions: tuple[str, ...],
        say: Callable[[str], None],
    ) -> None:
        host, port = parse_address(address)
        self.token = token or secrets.token_urlsafe(9)
        self.model = model
        self.page = _page()
        self.source = ""
        self.emotions = emotions
        self.clients: set[_Outbox] = set()
        self.connections = 0  # event streams opened in all
        self.dropped = 0  # updates dropped for browsers that disconnected
        self._history: deque[tuple[float, bytes]] = deque()  # (t, event) of the last HISTORY_S
        self._offset = self._last = 0.0  # start of the current stream, newest update (s since the first)
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family})
        try:
            self.httpd = server_class((host, port), _Handler)
        except OSError as e:
            raise ValueError(
                f"--serve-address {host}:{port}: cannot serve there: {e.strerror or e}"
            ) from None
        self.httpd.view = self
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edge-emo web", daemon=True)
        self._thread.start()
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        say(f"web view: {self.url(shown)}")
        if not is_loopback(host):
            lan = _lan_address() if host in ("0.0.0.0", "::", "") else None
            where = f" (from a phone: {self.url(lan)})" if lan else ""
            say(f"warning: the web view is open to the network at {host}:{self.port}{where}; anyone with "
                "the address and its token can watch")  # fmt: skip

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}/?token={quote(self.token, safe='')}"

    def authorized(self, query: str, authorization: str | None) -> bool:
        given = parse_qs(query).get("token", [""])[0]
        if authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :]
        return hmac.compare_digest(given.encode(), self.token.encode())

    # --- the listen loop's side: never blocks on a browser ---------------------------------------------

    def start_stream(self, source: str) -> None:
        """A new stream (the next of several files): its time starts again at 0, the page's timeline goes
        on (`t`: seconds since the first stream began, as `edge-emo timeline` draws several streams)."""
        self._send("stream", json.dumps({"source": source, "t": round(self._last, 3)}), self._last)
        self._offset = self._last
        self.source = source

    def publish(self, update, summary) -> None:
        """Send an EmotionUpdate and listen's counters to every browser."""
        self._last = self._offset + update.time_s
        data = (
            f'{{"t": {self._last:.3f}, "update": {update.to_json()}, "utterances": {summary.utterances}, '
            f'"dropped_blocks": {summary.dropped_blocks}}}'
        )
        self._send("update", data, self._last)

    def _send(self, kind: str, data: str, t: float) -> None:
        message = _event(kind, data)
        with self._lock:
            self._history.append((t, message))
            while self._history[0][0] < t - HISTORY_S:
                self._history.popleft()
            clients = list(self.clients)
        for client in clients:
            client.put(message)

    def close(self) -> None:
        """Tell every browser that listen has ended, give them CLOSE_WAIT_S to receive it, stop serving."""
        with self._lock:
            clients = list(self.clients)
        for client in clients:
            client.close()
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self.clients and time.monotonic() < deadline:
            time.sleep(0.02)
        self.httpd.shutdown()
        self.httpd.server_close()

    def describe(self) -> str:
        dropped = self.dropped + sum(c.dropped for c in list(self.clients))
        return (
            f"web view: {self.connections} browser connection{'s' * (self.connections != 1)}, "
            f"{dropped} updates dropped for slow browsers"
        )

    # --- the server's side ------------------------------------------------------------------------------

    def hello(self) -> tuple[_Outbox, list[bytes]]:
        """A new browser's outbox, and what it is sent first: the page's settings and the recent history.
        Registered under the same lock `publish` takes, so no update is missed or sent twice."""
        outbox = _Outbox(OUTBOX)
        with self._lock:
            settings = {
                "model": self.model,
                "source": self.source,
                "emotions": list(self.emotions),
                "colors": colors(self.emotions),
                "max_intensity": MAX_INTENSITY,
                "history_s": HISTORY_S,
            }
            first = [_event("hello", json.dumps(settings))] + [m for _, m in self._history]
            self.clients.add(outbox)
            self.connections += 1
        return outbox, first

    def goodbye(self, outbox: _Outbox) -> None:
        with self._lock:
            self.clients.discard(outbox)
            self.dropped += outbox.dropped


def _page() -> bytes:
    """live.html with its style sheet and script inlined: one request, nothing else to fetch."""
    html = (ASSETS / "live.html").read_text(encoding="utf-8")
    css = (ASSETS / "common.css").read_text(encoding="utf-8") + (ASSETS / "live.css").read_text(
        encoding="utf-8"
    )
    js = (ASSETS / "live.js").read_text(encoding="utf-8")
    return html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", js).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled browser's thread never keeps the process alive
    block_on_close = False
    view: WebView


# Everything inline, nothing from elsewhere: the browser itself refuses any other origin.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SEND_TIMEOUT_S  # the socket's: a write to a browser that stopped reading fails after this
    protocol_version = "HTTP/1.1"
    server_version = "edge-emo"
    sys_version = ""

    def log_message(self, format, *args) -> None:
        pass  # stderr belongs to listen (and its terminal view)

    def do_GET(self) -> None:
        view = self.server.view
        url = urlsplit(self.path)
        if url.path not in ("/", "/events"):
            return self._reply(404, "text/plain", b"not found\n")
        if not view.authorized(url.query, self.headers.get("Authorization")):
            return self._reply(
                401, "text/plain", b"token required: open the address edge-emo listen printed\n"
            )
        if url.path == "/":
            return self._reply(200, "text/html; charset=utf-8", view.page)
        if len(view.clients) >= MAX_CLIENTS:
            return self._reply(503, "text/plain", b"too many browsers are watching\n")
        self._stream(view)

    def _reply(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, view: WebView) -> None:
        self.close_connection = True
        # A small kernel buffer: a browser that stops reading holds little there; the rest is the
        # outbox's to drop and count.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        outbox, items = view.hello()
        sent_dropped = 0
        try:
            while True:
                if outbox.dropped != sent_dropped:
                    sent_dropped = outbox.dropped
                    items.insert(0, _event("dropped", str(sent_dropped)))
                if items:
                    self.wfile.write(b"".join(items))
                elif outbox.closed:
                    self.wfile.write(_event("end", "{}"))
                    return
                else:
                    self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                items = outbox.take(KEEPALIVE_S)
        except OSError:  # the browser went away, or stopped reading for SEND_TIMEOUT_S
            return
        finally:
            view.goodbye(outbox)

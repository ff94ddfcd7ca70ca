"""`edge-emo listen --serve`: the page in a real headless Chromium, the token, slow and vanished browsers."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from edge_emo.web.server import parse_address
from tests.cli import edge_emo, edge_emo_without_torch
from tests.web.conftest import Listening


def bars(driver, emotions) -> dict[str, str]:
    return {e: driver.find_element("id", f"value-{e}").text for e in emotions}


def test_the_page_loads_offline_and_follows_a_file_streamed_in_real_time(adapting_bundle, browser, tmp_path):
    bundle = adapting_bundle  # as the shipped default: it estimates its partner while it listens
    from selenium.webdriver.support.wait import WebDriverWait

    listen = Listening(
        "--model", bundle.path, "--input", "sample", "--json", "--serve-address", "127.0.0.1:0"
    )
    browser.get(listen.url)
    WebDriverWait(browser, 30).until(lambda d: d.find_elements("id", f"value-{bundle.emotions[0]}"))
    # the page itself records every state of the bars it shows (independent of how fast selenium polls)
    browser.execute_script(
        "window.seen = new Set(); new MutationObserver(() => window.seen.add($('bars').textContent))"
        ".observe($('bars'), {subtree: true, childList: true, characterData: true});"
    )
    out, err = listen.finish()
    assert listen.proc.returncode == 0, err
    time.sleep(1.0)  # the last updates and the end event reach the page
    assert browser.find_element("id", "status").text == "listen has ended"
    assert browser.execute_script("return window.seen.size") >= 5  # the bars moved as the updates came
    # the page shows exactly the last update listen printed
    last = json.loads(out.splitlines()[-1])
    assert bars(browser, bundle.emotions) == {e: f"{v:.2f}" for e, v in last["intensities"].items()}
    footer = browser.find_element("id", "footer").text
    assert f"t = {last['time_s']:.1f} s" in footer and "utterances:" in footer
    heard = re.search(r"speaker heard: (\d+) s", footer)  # what the speaker estimate rests on
    assert heard and abs(int(heard.group(1)) - last["speaker_heard_s"]) <= 0.5 and last["speaker_heard_s"] > 1
    # offline: one document and its event stream, both from listen; nothing the browser could not resolve
    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(listen.url))
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(origin) for r in resources), resources
    assert "web view: 1 browser connection, 0 updates dropped" in err
    browser.save_screenshot(str(tmp_path / "phone.png"))
    assert (tmp_path / "phone.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_token_is_enforced(bundle, browser):
    listen = Listening("--model", bundle.path, "--input", "sample", "--json", "--serve-address", "127.0.0.1:0",
                       "--serve-token", "s3cret Token")  # fmt: skip
    try:
        assert listen.url.endswith("/?token=s3cret%20Token")  # a token of any characters
        base = listen.url.split("?")[0]
        for path in ("", "?token=wrong", "events", "events?token=s3cret%20Toke"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 401, path
        # the right token, in the address or as a bearer header
        page = urllib.request.urlopen(listen.url, timeout=10).read().decode()
        assert "<title>edge-emo live</title>" in page
        assert not re.search(r"https?://|(src|href)=", page)  # every asset inline, nothing to fetch
        request = urllib.request.Request(base, headers={"Authorization": "Bearer s3cret Token"})
        assert urllib.request.urlopen(request, timeout=10).status == 200
        browser.get(base)
        assert "token required" in browser.find_element("tag name", "body").text
    finally:
        listen.proc.send_signal(signal.SIGINT)
        _, err = listen.finish()
    assert listen.proc.returncode == 0 and "stopped:" in err


def test_a_browser_that_stops_reading_does_not_stall_listen(bundle, long_clip):
    """A client connects to the event stream and never reads; another reads the start and vanishes.
    listen --fast still runs to the end, and counts the updates the stalled client missed."""
    listen = Listening("--model", bundle.path, "--input", long_clip, "--fast", "--json", "--update-interval",
                       "0.02", "--serve-address", "127.0.0.1:0")  # fmt: skip
    url = urlsplit(listen.url)
    request = f"GET /events?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((url.hostname, url.port))
    stalled.sendall(request)
    with socket.create_connection((url.hostname, url.port)) as vanished:
        vanished.sendall(request)
        received = b""
        while b"event: hello" not in received:
            received += vanished.recv(65536)
    out, err = listen.finish()
    stalled.close()
    assert listen.proc.returncode == 0, err
    assert len(out.splitlines()) > 1400  # every update (50 a second of audio) went to stdout
    dropped = int(re.search(r"web view: 2 browser connections, (\d+) updates dropped", err).group(1))
    assert dropped > 100, err


def test_serving_beyond_loopback_warns_and_bad_addresses_fail_clearly(bundle, clip_path):
    run = edge_emo("listen", "--model", bundle.path, "--input", clip_path, "--fast", "--json",
                   "--serve-address", "0.0.0.0:0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "warning: the web view is open to the network at 0.0.0.0:" in run.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for address, message in [
            ("127.0.0.1:port", "not HOST:PORT"),
            (f"127.0.0.1:{port}", "cannot serve there"),
        ]:
            run = edge_emo(
                "listen", "--model", bundle.path, "--input", clip_path, "--fast", "--serve-address", address
            )
            assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ("127.0.0.1", 8765)),
        (":9000", ("127.0.0.1", 9000)),
        ("0.0.0.0", ("0.0.0.0", 8765)),
        ("192.168.1.20:8080", ("192.168.1.20", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("::", ("::", 8765)),
    ],
)
def test_addresses(text, expected):
    assert parse_address(text) == expected


def test_serving_runs_without_torch(bundle, clip_path):
    run = edge_emo_without_torch(
        [
            "listen",
            "--model",
            bundle.path,
            "--input",
            clip_path,
            "--fast",
            "--json",
            "--serve-address",
            "127.0.0.1:0",
        ]
    )
    assert run.returncode == 0, run.stderr
    assert "web view: http://127.0.0.1:" in run.stderr and "0 updates dropped" in run.stderr

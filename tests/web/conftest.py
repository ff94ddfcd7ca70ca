"""The web view's tests run a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium). Without them they are skipped with the reason, except in CI (CI=true), where they fail."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading

import numpy as np
import pytest

from tests.cli import CLI, ROOT, cli_env
from tests.fixtures import synth_speech, write_wav
from tests.runtime.conftest import clip_path  # noqa: F401 (the 3 s clip, shared)

PHONE = (390, 844)  # CSS pixels of a common phone


def need_chromium(driver: bool = True) -> None:
    missing = [name for name in ("chromium", "chromedriver")[: 2 if driver else 1] if not shutil.which(name)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the dev extra)")
    if missing:
        reason = f"needs {', '.join(missing)}: bash scripts/system-packages.sh; pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"in CI the browser tests must run: {reason}")
        pytest.skip(reason)


def headless_chromium(size: tuple[int, int] = PHONE):
    """A headless Chromium showing pages at `size` CSS pixels (twice the pixel density, a phone's viewport
    when narrow) that can reach loopback only: any host name fails to resolve, so a page that needed the
    internet (a CDN) would show it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # fmt: skip
        options.add_argument(arg)
    if os.geteuid() == 0:  # Chromium's sandbox refuses root (containers, CI)
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    resize(driver, size)
    return driver


def resize(driver, size: tuple[int, int]) -> None:
    """The viewport exactly `size` (a window's size would include the browser's own bars)."""
    metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 2, "mobile": size[0] < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


@pytest.fixture
def browser():
    need_chromium()
    driver = headless_chromium()
    yield driver
    driver.quit()


class Listening:
    """`edge-emo listen ARGS` (with --serve-address) in a child process: its web address read from its
    stderr; stdout and stderr drained in threads, so a long --json run never blocks on a full pipe."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "listen", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env(),
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        address = queue.Queue()
        self._drains = [
            threading.Thread(target=self._drain, args=(stream, lines, address), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for drain in self._drains:
            drain.start()
        self.url = address.get(timeout=120)
        if self.url is None:
            raise AssertionError(f"listen ended before serving: {self.finish()[1]}")

    def _drain(self, stream, lines: list[str], address: queue.Queue) -> None:
        for line in stream:
            lines.append(line)
            if line.startswith("web view: http"):
                address.put(line.split()[-1])
        address.put(None)  # the pipe closed: listen exited (before serving, if this is the first put)

    def finish(self, timeout: float = 600) -> tuple[str, str]:
        """Wait for listen to end; its stdout and stderr."""
        self.proc.wait(timeout=timeout)
        for drain in self._drains:
            drain.join(timeout=30)
        return "".join(self.out), "".join(self.err)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """30 s of speech-like audio with pauses."""
    parts = []
    for i in range(6):
        parts += [synth_speech(3.5, seed=200 + i) * (0.2 + 0.1 * (i % 3)), np.zeros(24000, np.float32)]
    return write_wav(tmp_path_factory.mktemp("long") / "long.wav", np.concatenate(parts))

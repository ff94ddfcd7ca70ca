"""The web view's tests run a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium). Without them they are skipped with the reason, except in CI (CI=true), where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

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


@pytest.fixture
def browser():
    """A headless Chromium that can reach loopback only: any other host name fails to resolve, so a page
    that needed the internet (a CDN) would show it."""
    need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=2",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-first-run",
    ):  # fmt: skip
        options.add_argument(arg)
    if os.geteuid() == 0:  # Chromium's sandbox refuses root (containers, CI)
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_window_size(*PHONE)
    yield driver
    driver.quit()


class Listening:
    """`edge-emo listen ARGS --serve-address 127.0.0.1:0 ...` in a child process, its web address read from
    its stderr."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "listen", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env(),
        )  # fmt: skip
        self.err: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(
                    f"listen ended before serving: {''.join(self.err)}{self.proc.stderr.read()}"
                )
            self.err.append(line)
            if line.startswith("web view: http"):
                self.url = line.split()[-1]
                return
        raise AssertionError("listen printed no web address")

    def finish(self, timeout: float = 180) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return out, "".join(self.err) + err


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """90 s of speech-like audio with pauses: many updates for `listen --fast`."""
    parts = []
    for i in range(18):
        parts += [synth_speech(3.5, seed=200 + i) * (0.2 + 0.1 * (i % 3)), np.zeros(24000, np.float32)]
    return write_wav(tmp_path_factory.mktemp("long") / "long.wav", np.concatenate(parts))

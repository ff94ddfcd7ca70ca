"""The README's pictures of the web view, made with the commands the tests run (tests/web):

- docs/web-view.png: the live page of `edge-emo listen --serve` on a phone-sized viewport (390 x 844 CSS
  pixels), --at seconds into the audio (`--input A --input B ...`, the shipped sample unless --input is
  given) streamed in real time through the shipped model;
- docs/timeline.png: `edge-emo timeline LOG --png` of `edge-emo listen ... --fast --json > LOG` of the same
  audio;
- docs/timeline-phone.png: that timeline's HTML page on the phone-sized viewport.

Needs chromium, chromium-driver (bash scripts/system-packages.sh) and selenium (the dev extra).

    python scripts/web_screenshots.py [--input AUDIO ...] [--at SECONDS]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cli import edge_emo
from tests.web.conftest import PHONE, Listening, headless_chromium, resize

DOCS = Path(__file__).resolve().parents[1] / "docs"


def live_view(driver, inputs: list[str], at_s: float) -> None:
    listen = Listening("--model", "shipped", *[a for i in inputs for a in ("--input", i)], "--json",
                       "--serve-address", "127.0.0.1:0")  # fmt: skip
    driver.get(listen.url)
    newest = "return recent.length ? recent[recent.length - 1].t : 0"
    while driver.execute_script(newest) < at_s:
        time.sleep(0.05)
    driver.save_screenshot(str(DOCS / "web-view.png"))
    listen.finish()


def timeline(driver, inputs: list[str], tmp: Path) -> None:
    run = edge_emo("listen", "--model", "shipped", *[a for i in inputs for a in ("--input", i)], "--fast", "--json",
                   check=True)  # fmt: skip
    log = tmp / "session.jsonl"
    log.write_text(run.stdout)
    edge_emo("timeline", log, "--out", tmp / "timeline.html", "--png", check=True)
    shutil.copyfile(tmp / "timeline.png", DOCS / "timeline.png")
    driver.get((tmp / "timeline.html").as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    resize(driver, (PHONE[0], min(height, 2400)))
    driver.save_screenshot(str(DOCS / "timeline-phone.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", default=[], help="audio file of the timeline's log")
    parser.add_argument("--at", type=float, default=8.0, help="seconds of audio before the live picture")
    args = parser.parse_args()
    driver = headless_chromium(PHONE)
    try:
        live_view(driver, args.input or ["sample"], args.at)
        with tempfile.TemporaryDirectory() as tmp:
            timeline(driver, args.input or ["sample"], Path(tmp))
    finally:
        driver.quit()
    for name in ("web-view.png", "timeline.png", "timeline-phone.png"):
        print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main()

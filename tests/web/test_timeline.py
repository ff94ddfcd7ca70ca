"""`edge-emo timeline`: a listen JSON log as a self-contained HTML page and a PNG, read back in Chromium."""

from __future__ import annotations

import json
import re
import struct

import pytest

from tests.cli import edge_emo, edge_emo_without_torch
from tests.web.conftest import need_chromium, resize


@pytest.fixture(scope="module")
def two_stream_log(bundle, clip_path, tmp_path_factory):
    """`listen --json` of the clip twice (two streams: time starts again at 0)."""
    run = edge_emo("listen", "--model", bundle.path, "--input", clip_path, "--input", clip_path, "--fast",
                   "--json", check=True)  # fmt: skip
    log = tmp_path_factory.mktemp("log") / "session.jsonl"
    log.write_text(run.stdout)
    return log


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_page_and_png_show_every_utterance_and_its_dominant_emotion(two_stream_log, browser, tmp_path):
    run = edge_emo("timeline", two_stream_log, "--out", tmp_path / "day.html", "--png")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["wrote", str(tmp_path / "day.html"), "wrote", str(tmp_path / "day.png")]
    finals = [u for u in map(json.loads, two_stream_log.read_text().splitlines()) if u["final"]]
    assert len(finals) >= 2
    page = (tmp_path / "day.html").read_text()
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)|(src|href)=|<script", page)  # self-contained
    resize(browser, (1100, 900))
    browser.get((tmp_path / "day.html").as_uri())
    rows = browser.find_elements("css selector", "tbody tr")
    assert [r.find_elements("tag name", "td")[3].text for r in rows] == [
        u["dominant"] or "none" for u in finals
    ]
    assert len(browser.find_elements("css selector", "svg g title")) == len(finals)  # one mark each
    assert len(browser.find_elements("css selector", "svg line.stream")) == 1  # the second stream's start
    summary = browser.find_element("class name", "summary").text
    assert f"{len(finals)} utterances" in summary and "2 streams" in summary
    width, height = png_size(tmp_path / "day.png")
    assert width == 2400 and 1000 < height < 1600  # 1200 x ~650 CSS pixels at twice the density
    # drawn, not blank: the PNG holds far more than a single-colour image of that size compresses to
    assert (tmp_path / "day.png").stat().st_size > 50_000


def test_a_cut_off_last_line_is_skipped_with_a_warning(two_stream_log, tmp_path):
    log = tmp_path / "cut.jsonl"
    log.write_text(two_stream_log.read_text()[:-40])  # listen killed in the middle of a line
    run = edge_emo("timeline", log, "--out", tmp_path / "cut.html")
    assert run.returncode == 0, run.stderr
    assert f"warning: {log}:" in run.stderr and "skipped a cut-off last line" in run.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no updates in the log"),
        ('{"time_s": 0.1}\n', "not an update of `edge-emo listen --json` (no speech, dominant"),
        ("first\n{}\n", ":1: not an update"),
    ],
)
def test_bad_logs_get_a_clear_error_naming_the_line(tmp_path, content, message):
    (tmp_path / "log.jsonl").write_text(content)
    run = edge_emo("timeline", tmp_path / "log.jsonl", "--out", tmp_path / "t.html")
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "t.html").exists()


def test_a_file_it_did_not_write_is_never_overwritten(two_stream_log, tmp_path):
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    run = edge_emo("timeline", two_stream_log, "--out", mine)
    assert run.returncode == 2 and "was not written by edge-emo timeline" in run.stderr
    assert mine.read_text() == "<p>my notes</p>"
    ours = tmp_path / "day.html"
    edge_emo("timeline", two_stream_log, "--out", ours, check=True)
    edge_emo("timeline", two_stream_log, "--out", ours, check=True)  # its own output: replaced


def test_png_without_chromium_is_a_clear_error(two_stream_log, tmp_path):
    run = edge_emo(
        "timeline", two_stream_log, "--out", tmp_path / "t.html", "--png", env={"PATH": "/nonexistent"}
    )
    assert run.returncode == 2 and "--png needs Chromium" in run.stderr, run.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_timeline_runs_without_torch(two_stream_log, tmp_path):
    need_chromium(driver=False)
    run = edge_emo_without_torch(["timeline", two_stream_log, "--out", tmp_path / "t.html", "--png"])
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.png").is_file()


def test_an_hour_long_log_is_thinned_and_keeps_its_peaks(two_stream_log, tmp_path):
    """36 000 updates (an hour at the default rate), one spike: a page of bounded size, the spike drawn."""
    from edge_emo.web.timeline import MAX_POINTS

    template = json.loads(two_stream_log.read_text().splitlines()[0])
    first = next(iter(template["intensities"]))
    lines = []
    for i in range(36_000):
        update = {**template, "time_s": round(0.1 * (i + 1), 3), "speech": False, "final": False}
        update["intensities"] = {
            e: (3.0 if i == 20_000 and e == first else 0.0) for e in template["intensities"]
        }
        lines.append(json.dumps(update))
    log = tmp_path / "hour.jsonl"
    log.write_text("\n".join(lines) + "\n")
    edge_emo("timeline", log, "--out", tmp_path / "hour.html", check=True)
    page = (tmp_path / "hour.html").read_text()
    assert len(page) < 1_000_000 and "1:00:00" in page  # the axis reaches an hour
    lanes = re.findall(r'<polyline points="([^"]+)"', page)
    assert len(lanes) == len(template["intensities"])
    ys = [float(p.split(",")[1]) for p in lanes[0].split()]
    assert len(ys) <= MAX_POINTS and min(ys) < max(ys)  # thinned, and the spike survived

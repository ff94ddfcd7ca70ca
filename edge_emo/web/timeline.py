"""`edge-emo timeline LOG.jsonl --out day.html [--png]`: a listen JSON log (`edge-emo listen --json`) as a
readable timeline: one lane of intensities per emotion, speech shaded, each utterance marked with its
dominant emotion, and a table of the utterances. The HTML is one self-contained file (inline SVG and CSS, no
script, nothing fetched); the PNG is that page drawn by a headless Chromium, so both show the same picture
and no plotting library is needed.

Several streams in one log (`listen --input A --input B`: time starts again at 0) are drawn one after the
other, with a dashed line where a new one begins.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge_emo.files import replace_file
from edge_emo.web import colors
from edge_emo.web.server import ASSETS

MARKER = "<!-- written by edge-emo timeline -->"  # what may be overwritten: only what this command wrote
MAX_POINTS = 2400  # points per lane drawn (a long log is thinned to each interval's peak)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_WIDTH = 1200
KEYS = ("time_s", "speech", "dominant", "intensities", "utterance_start_s", "utterance_s", "final")


@dataclass(frozen=True)
class Utterance:
    start_s: float
    end_s: float
    dominant: str | None
    intensities: dict[str, float]


@dataclass
class Session:
    """A log on one time axis (streams after one another)."""

    emotions: tuple[str, ...]
    times: list[float] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)  # per update, in `emotions` order
    speech: list[bool] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    stream_starts: list[float] = field(default_factory=list)  # where each stream after the first begins

    @property
    def duration_s(self) -> float:
        return self.times[-1] if self.times else 0.0


def read_log(path: Path, say: Callable[[str], None]) -> Session:
    """Parse a listen JSON log; a line that is not one of its updates is an error naming the line, except
    a cut-off last line (listen killed mid-write), which is skipped with a warning."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the log: {getattr(e, 'strerror', None) or e}") from None
    session: Session | None = None
    offset = last = 0.0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            u = json.loads(line)
            missing = [k for k in KEYS if k not in u]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            if session is None:
                session = Session(tuple(u["intensities"]))
            if tuple(u["intensities"]) != session.emotions:
                raise ValueError(f"emotions {list(u['intensities'])}, not {list(session.emotions)} as before")
            t, values = float(u["time_s"]), [float(u["intensities"][e]) for e in session.emotions]
        except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            if n == len(lines) and session is not None:  # no newline after it: the write was cut off
                say(f"warning: {path}:{n}: skipped a cut-off last line")
                break
            raise ValueError(f"{path}:{n}: not an update of `edge-emo listen --json` ({e})") from None
        if session.times and t + offset < last:  # time went back: the next stream of the log
            offset = last
            session.stream_starts.append(offset)
        last = t + offset
        session.times.append(last)
        session.values.append(values)
        session.speech.append(bool(u["speech"]))
        if u["final"] and u["utterance_start_s"] is not None:
            start = offset + float(u["utterance_start_s"])
            intensities = dict(zip(session.emotions, values))
            session.utterances.append(
                Utterance(start, start + float(u["utterance_s"]), u["dominant"], intensities)
            )
    if session is None:
        raise ValueError(
            f"{path}: no updates in the log (make one with `edge-emo listen --json > LOG.jsonl`)"
        )
    return session


def clock(t: float) -> str:
    t = round(t)
    h, rest = divmod(t, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _tick_step(duration_s: float) -> float:
    """A round step giving at most about 10 ticks."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if duration_s / step <= 10:
            return step
    return 3600 * max(1, round(duration_s / 36000))


def _thin(session: Session) -> list[tuple[float, list[float], bool]]:
    """At most MAX_POINTS points: each interval's peak per emotion, speech if any of it was."""
    points = list(zip(session.times, session.values, session.speech))
    if len(points) <= MAX_POINTS:
        return points
    per = -(-len(points) // MAX_POINTS)
    thinned = []
    for i in range(0, len(points), per):
        chunk = points[i : i + per]
        peaks = [max(v[e] for _, v, _ in chunk) for e in range(len(session.emotions))]
        thinned.append((chunk[-1][0], peaks, any(s for _, _, s in chunk)))
    return thinned


def _fit(label: str, width: float, char_px: float = 7.2) -> str:
    """The label, or its start and an ellipsis, that fits in `width` (12 px bold); empty if under 3 letters do."""
    fits = int((width - 8) / char_px)
    if fits >= len(label):
        return label
    return label[: fits - 1] + "…" if fits >= 4 else ""


def svg(session: Session, max_intensity: float, width: int = 1000) -> str:
    """The chart: a strip of utterances coloured by dominant emotion, one lane per emotion, a time axis."""
    palette = colors(session.emotions)
    left, right, strip, lane, gap, axis = 96, 12, 30, 46, 8, 26
    top = strip + 12
    height = top + len(session.emotions) * (lane + gap) + axis
    span = max(session.duration_s, 1.0)
    plot = width - left - right
    x = lambda t: left + plot * t / span  # noqa: E731
    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="emotion intensities over time" xmlns="http://www.w3.org/2000/svg">'
    ]
    points = _thin(session)
    # speech, shaded through every lane
    bottom = height - axis
    start = None
    for i, (t, _, speaking) in enumerate(points):
        if speaking and start is None:
            start = points[i - 1][0] if i else t
        if start is not None and (not speaking or i == len(points) - 1):
            out.append(f'<rect class="speech" x="{x(start):.1f}" y="{top}" width="{max(x(t) - x(start), 1):.1f}" '
                       f'height="{bottom - top}"/>')  # fmt: skip
            start = None
    # the utterances: dominant emotion's colour, its name where it fits
    out.append(f'<text class="lane" x="{left - 8}" y="{strip / 2 + 5}" text-anchor="end">utterances</text>')
    for u in session.utterances:
        x0, w = x(u.start_s), max(x(u.end_s) - x(u.start_s), 2)
        fill = palette.get(u.dominant, "#9a9aa0")
        detail = ", ".join(f"{e} {v:.2f}" for e, v in u.intensities.items())
        out.append(
            f"<g><title>{clock(u.start_s)}–{clock(u.end_s)}: {html.escape(u.dominant or 'no dominant')} "
            f"({detail})</title>"
            f'<rect x="{x0:.1f}" y="2" width="{w:.1f}" height="{strip - 4}" rx="4" fill="{fill}"/>'
        )
        label = _fit(u.dominant or "–", w)
        if label:
            out.append(f'<text class="on-color" x="{x0 + w / 2:.1f}" y="{strip / 2 + 5}" text-anchor="middle">'
                       f"{html.escape(label)}</text>")  # fmt: skip
        out.append("</g>")
    # one lane per emotion: the intensity as an area, 0 at the lane's foot, max_intensity at its head
    for k, name in enumerate(session.emotions):
        y0 = top + k * (lane + gap)
        foot = y0 + lane
        y = lambda v: foot - lane * min(v, max_intensity) / max_intensity  # noqa: B023, E731
        out.append(f'<line class="base" x1="{left}" y1="{foot}" x2="{left + plot}" y2="{foot}"/>')
        out.append(f'<text class="lane" x="{left - 8}" y="{y0 + lane / 2 + 5}" text-anchor="end">{html.escape(name)}</text>')  # fmt: skip
        line = " ".join(f"{x(t):.1f},{y(v[k]):.1f}" for t, v, _ in points)
        out.append(f'<polygon points="{x(points[0][0]):.1f},{foot} {line} {x(points[-1][0]):.1f},{foot}" '
                   f'fill="{palette[name]}" fill-opacity="0.35" stroke="none"/>')  # fmt: skip
        out.append(f'<polyline points="{line}" fill="none" stroke="{palette[name]}" stroke-width="1.5"/>')
    for t in session.stream_starts:
        out.append(f'<line class="stream" x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{bottom}"/>')
    step = _tick_step(span)
    t = 0.0
    while t <= span + 1e-9:
        out.append(f'<line class="tick" x1="{x(t):.1f}" y1="{bottom}" x2="{x(t):.1f}" y2="{bottom + 5}"/>')
        out.append(
            f'<text class="axis" x="{x(t):.1f}" y="{bottom + 19}" text-anchor="middle">{clock(t)}</text>'
        )
        t += step
    out.append("</svg>")
    return "\n".join(out)


def render(session: Session, title: str, max_intensity: float, table: bool = True) -> str:
    """The page: summary, legend, chart and (unless for the PNG) a table of the utterances."""
    palette = colors(session.emotions)
    speech_s = sum(u.end_s - u.start_s for u in session.utterances)
    counts = {e: sum(u.dominant == e for u in session.utterances) for e in session.emotions}
    n = len(session.utterances)
    chips = "".join(
        f'<span><span class="swatch" style="background:{palette[e]}"></span>{html.escape(e)} '
        f'<span class="muted">{c}</span></span>'
        for e, c in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    summary = (
        f"{clock(session.duration_s)} of audio · {n} utterance{'s' * (n != 1)} ({speech_s:.0f} s of speech)"
        + (f" · {len(session.stream_starts) + 1} streams" if session.stream_starts else "")
    )
    rows = ""
    if table and session.utterances:
        body = "".join(_row(i, u, palette) for i, u in enumerate(session.utterances, 1))
        rows = (
            '<section class="card"><h2>Utterances</h2><div class="scroll"><table><thead><tr><th>#</th>'
            "<th>start</th><th>length</th><th>dominant</th><th class='strongest'>strongest</th></tr></thead>"
            f"<tbody>{body}</tbody></table></div></section>"
        )
    css = (ASSETS / "common.css").read_text(encoding="utf-8") + (ASSETS / "timeline.css").read_text(
        encoding="utf-8"
    )
    return (
        f"{MARKER}\n<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)} · edge-emo timeline</title><style>{css}</style></head>"
        f"<body class='{'page' if table else 'png'}'><main>"
        f"<header><h1>edge-emo timeline <span>{html.escape(title)}</span></h1></header>"
        f"<p class='summary'>{summary}</p>"
        f"<section class='card'><h2>Dominant emotion per utterance <span>· intensity 0–{max_intensity:g} "
        f"per emotion · shaded: speech{' · dashed: next stream' if session.stream_starts else ''}</span></h2>"
        f"<div class='scroll'>{svg(session, max_intensity)}</div>"
        "<p class='hint'>swipe the chart sideways to see all of it</p>"
        f"<div class='legend'><span class='muted'>utterances per dominant emotion:</span>{chips}</div></section>"
        f"{rows}</main></body></html>\n"
    )


def _row(i: int, u: Utterance, palette: dict[str, str]) -> str:
    """One utterance in the table: start, length, dominant emotion, its three strongest intensities."""
    if u.dominant:
        dominant = (
            f'<span class="swatch" style="background:{palette[u.dominant]}"></span>{html.escape(u.dominant)}'
        )
    else:
        dominant = '<span class="muted">none</span>'
    strongest = sorted(u.intensities.items(), key=lambda kv: -kv[1])[:3]
    detail = ", ".join(f"{html.escape(e)} {v:.1f}" for e, v in strongest)
    return (
        f"<tr><td>{i}</td><td>{clock(u.start_s)}</td><td>{u.end_s - u.start_s:.1f} s</td><td>{dominant}</td>"
        f"<td class='muted strongest'>{detail}</td></tr>"
    )


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise ValueError(
        "--png needs Chromium to draw the page (e.g. `apt install chromium`), or leave out --png"
    )


def screenshot(page: Path, png: Path, size: tuple[int, int], browser: str | None = None) -> None:
    """Draw `page` in a headless Chromium window of `size` (CSS pixels, at twice the pixel density)."""
    browser = browser or find_browser()
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        command = [
            browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=2",
            f"--window-size={size[0]},{size[1]}", f"--user-data-dir={tmp}/profile", f"--screenshot={shot}",
            "--no-first-run", "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
        ]  # fmt: skip
        if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root (containers, CI)
            command.append("--no-sandbox")
        run = subprocess.run([*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        if run.returncode != 0 or not shot.is_file():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise ValueError(f"{browser} could not draw {page}: {last}")
        replace_file(png, shot.read_bytes())


def _writable(path: Path, marker_file: Path) -> None:
    """Refuse to overwrite a file this command did not write (an HTML without MARKER, or its PNG)."""
    if not path.exists():
        return
    ours = marker_file.is_file() and marker_file.read_text(encoding="utf-8", errors="replace").startswith(
        MARKER
    )
    if not ours:
        raise ValueError(f"{path} exists and was not written by edge-emo timeline; choose another --out")


def write_timeline(log: Path, out: Path, png: bool, say: Callable[[str], None]) -> list[Path]:
    """The whole command; returns the files written."""
    from edge_emo.emotions import MAX_INTENSITY

    session = read_log(log, say)
    out, image = Path(out), Path(out).with_suffix(".png")
    _writable(out, out)
    if png:
        _writable(image, out)
        browser = find_browser()  # before anything is written
    replace_file(out, render(session, log.name, MAX_INTENSITY).encode())
    if not png:
        return [out]
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "timeline.html"
        page.write_text(render(session, log.name, MAX_INTENSITY, table=False), encoding="utf-8")
        screenshot(page, image, (PNG_WIDTH, png_height(session)), browser)
    return [out, image]


def png_height(session: Session) -> int:
    """The PNG page's height in CSS pixels: its layout (timeline.css, body.png) is fixed, so it is known."""
    chart = 30 + 12 + len(session.emotions) * (46 + 8) + 26
    return 24 + 44 + 36 + 24 + 30 + chart + 40 + 56

"""Which of a bundle's graphs this board runs: the faster one here, measured once and remembered.

An int8 bundle carries the int8 Scan graph (model.onnx, a quarter of the size) and the fp32 graph with
onnxruntime's fused GRU op (edge_emo/export/graph.py). Which steps the model faster depends on the CPU: int8
kernels (VNNI, ARM's dot product) against one fused kernel per layer instead of a dozen nodes per frame. So
the first `listen` on a machine (and every `edge-emo bench`) times a 10-frame chunk of each graph, rounds
interleaved, for a fraction of a second, and records the faster in a small per-user file, keyed by the
bundle (its version and manifest digest) and the machine; later runs read it. `--graph NAME` forces one; EDGE_EMO_GRAPH=NAME in the
environment does for every bundle that has a graph of that name (the tests and README examples pin int8).

`listen` measures in a short-lived child process (`python -m edge_emo.runtime.graph_choice BUNDLE`): the
graph it will not run (the fp32 one is twice the int8's size) then never enters the listening process,
whose memory would otherwise keep the freed session's pages for the rest of its life (about 15 MB here, a
peak of 102 MB against 76 MB on later runs).

The file is only a measurement of this board: the manifest stays the one source of truth about the model.
A file that is not one of ours, or is corrupt, is ignored with a one-line note and left as it is.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_emo.files import replace_file
from edge_emo.runtime.bundle import Bundle

FORMAT = "edge-emo-graph-choice/1"
FILE_NAME = "graph-choice.json"
ENV = "EDGE_EMO_GRAPH"  # a graph name: forces it, as --graph does
ROUNDS = 7  # interleaved rounds of the first-run measurement
CALLS = 10  # chunks timed per graph and round (about 0.1 s in all for the shipped 2 x 128 model)
MAX_ENTRIES = 32  # the file keeps the latest bundles' choices (personalizing makes a new version each time)


@dataclass(frozen=True)
class GraphChoice:
    """The graph a bundle runs here and why (shown in `listen`'s header)."""

    graph: str
    reason: str
    us_per_frame: dict[str, float] | None = None  # the measurement, if one was made or remembered

    def describe(self) -> str:
        return f"graph {self.graph}, {self.reason}"


def choice_path() -> Path:
    """$XDG_CACHE_HOME/edge-emo/graph-choice.json (default ~/.cache): a cache, rebuilt if deleted."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "edge-emo" / FILE_NAME


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86, Raspberry Pi, Jetson and others), else platform's guess."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_key() -> str:
    return f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores"


def _key(bundle: Bundle) -> str:
    """The bundle's version and manifest digest (a re-export of the same model with other graphs keeps its
    version but not its manifest) on this machine."""
    return f"{bundle.version} ({str(bundle.manifest.get('manifest_sha256', ''))[:12]}) on {machine_key()}"


def measure(bundle: Bundle, rounds: int = ROUNDS, calls: int = CALLS, threads: int = 1) -> dict[str, float]:
    """Median microseconds per frame of each graph of `bundle`, one chunk of `chunk_frames` frames per call,
    graphs interleaved round by round (a loaded machine slows both alike); the median of the rounds'
    medians."""
    # Speech-like standardised frames without numpy.random: importing it costs a listening process 6.6 MB.
    frames = bundle.chunk_frames * bundle.spec.dim
    x = np.sin(np.arange(frames, dtype=np.float32) * 0.7).reshape(1, bundle.chunk_frames, bundle.spec.dim)
    state = 0.3 * np.cos(np.arange(np.prod(bundle.state_shape), dtype=np.float32)).reshape(bundle.state_shape)
    sessions = {g.name: bundle.with_graph(g.name).session(threads) for g in bundle.graphs}
    medians: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            feeds = {"features": x, "state": state}
            session.run(None, feeds)  # warm
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                session.run(None, feeds)
                times.append(time.perf_counter() - t0)
            medians[name].append(float(np.median(times)))
    return {name: round(float(np.median(m)) / bundle.chunk_frames * 1e6, 2) for name, m in medians.items()}


def measure_apart(bundle: Bundle, say: Callable[[str], None]) -> dict[str, float]:
    """`measure` run in a child process (see the module's docstring); in this one if the child fails, with a
    note."""
    command = [sys.executable, "-m", __name__, str(bundle.path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        times = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        times = None
    if isinstance(times, dict) and set(times) == {g.name for g in bundle.graphs}:
        return {name: float(us) for name, us in times.items()}
    say("note: could not measure the graphs in a separate process; measuring them in this one")
    return measure(bundle)


def _read(path: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The file's choices; None (and a note) if it is not ours or is corrupt; {} if there is none."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        say(
            f"note: ignoring {path}: not a readable graph choice ({type(e).__name__}); remove it to record one"
        )
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        say(f"note: ignoring {path}: not an edge-emo graph choice file; remove it to record one")
        return None
    choices = document.get("choices")
    if not isinstance(choices, dict):
        say(f"note: ignoring {path}: its choices are unreadable; remove it to record one")
        return None
    return choices


def _reason(graph: str, times: dict[str, float], when: str) -> str:
    others = [(name, us) for name, us in times.items() if name != graph]
    if not others:
        return f"measured {when}"
    name, us = min(others, key=lambda o: o[1])
    return f"measured {us / times[graph]:.1f}x as fast here as {name} ({when})"


def _fastest(times: dict[str, float]) -> GraphChoice:
    graph = min(times, key=times.get)
    return GraphChoice(graph, _reason(graph, times, "just now"), times)


def _write(bundle: Bundle, choice: GraphChoice, choices: dict[str, Any], path: Path, say) -> None:
    """Add `choice` to `choices` (newest last, the oldest beyond MAX_ENTRIES dropped) and replace the file
    atomically; a file that cannot be written costs a note and a measurement next time."""
    choices.pop(_key(bundle), None)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    choices[_key(bundle)] = {"graph": choice.graph, "us_per_frame": choice.us_per_frame, "measured": day}
    kept = dict(list(choices.items())[-MAX_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, (json.dumps({"format": FORMAT, "choices": kept}, indent=1) + "\n").encode())
    except OSError as e:
        say(
            f"note: could not record the graph choice in {path} ({e.strerror or e}); measured again next time"
        )


def _remembered(bundle: Bundle, choices: dict[str, Any]) -> GraphChoice | None:
    """The choice recorded for this bundle on this machine, if it is still one of the bundle's graphs."""
    entry = choices.get(_key(bundle))
    names = {g.name for g in bundle.graphs}
    if not isinstance(entry, dict) or entry.get("graph") not in names:
        return None
    times = entry.get("us_per_frame")
    if not isinstance(times, dict) or set(times) != names:
        return None
    if not all(isinstance(v, (int, float)) and v > 0 for v in times.values()):
        return None
    return GraphChoice(
        entry["graph"], _reason(entry["graph"], times, f"on {entry.get('measured', '?')}"), times
    )


def record(
    bundle: Bundle, times: dict[str, float], say: Callable[[str], None], path: Path | None = None
) -> GraphChoice:
    """The fastest graph of `times` (us per frame by name), recorded for this bundle and machine in the
    choice file (`edge-emo bench` measures and records)."""
    path = path or choice_path()
    choice = _fastest(times)
    choices = _read(path, say)
    if choices is not None:
        _write(bundle, choice, choices, path, say)
    return choice


def choose(
    bundle: Bundle, forced: str | None, say: Callable[[str], None], path: Path | None = None
) -> tuple[Bundle, GraphChoice]:
    """The bundle running the graph for this board, and why: `forced` (--graph; BundleError if the bundle has
    no such graph), $EDGE_EMO_GRAPH if the bundle has it, the only graph of a one-graph bundle, the remembered choice, or else a short measurement now, recorded."""
    if forced:
        return bundle.with_graph(forced), GraphChoice(forced, "forced with --graph")
    preferred = os.environ.get(ENV)  # a preference of this machine: bundles without that graph choose
    if preferred and preferred in {g.name for g in bundle.graphs}:
        return bundle.with_graph(preferred), GraphChoice(preferred, f"forced with {ENV}")
    if len(bundle.graphs) == 1:
        return bundle, GraphChoice(bundle.graph, "the bundle's only graph")
    path = path or choice_path()
    choices = _read(path, say)
    choice = _remembered(bundle, choices or {})
    if choice is None:
        choice = _fastest(measure_apart(bundle, say))
        if choices is not None:
            _write(bundle, choice, choices, path, say)
    return bundle.with_graph(choice.graph), choice


if __name__ == "__main__":  # the child of `measure_apart`: the bundle's times as JSON on stdout
    from edge_emo.runtime.bundle import load_bundle

    print(json.dumps(measure(load_bundle(sys.argv[1]))))

"""The live CPU share of `edge-emo listen`: the whole process, paced in real time, as % of one core.

What the wearer's battery pays is not the pipeline's compute alone but the whole listening process: the
audio thread, polling and sleeping, per-update formatting, the terminal view. So `listen` runs here as a
user runs it, in a child process, in four cases: from a file (paced like a microphone) and from the
microphone path (PortAudio capturing from an ALSA file-plugin device whose input is a pipe this process
fills in real time), each with `--json` and with the live view (on a pseudo-terminal). After start-up (the
first output, then `settle_s`) the process's CPU time (/proc: user + system, all threads) is read over a
window of `window_s` wall seconds; share = CPU / wall. The same window gives each thread's share (main,
openSMILE, PortAudio), so the cost has an address.

A stage breakdown runs the same stages in this process over the same audio, one after another, each timed
by the CPU clock of the thread that does the work: resampling (a 48 kHz microphone), openSMILE (the
writes and openSMILE's own thread), the model step, formatting an update, drawing the view. Each is CPU
seconds per second of audio, i.e. % of a core when live. What the whole process uses beyond their sum is
the live loop itself (waiting, waking, queues, the interpreter).

Linux only (/proc). Nothing here judges a time: the numbers go to the JSON and the tables.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emo.runtime.audio_input import LIVE_BLOCK_S
from edge_emo.runtime.bundle import Bundle

RATE = 16000
BLOCK_S = 0.01
# The pipe behind the ALSA device is filled a microphone block at a time: ALSA's file plugin reads a whole
# period (PortAudio asks for one block per period) and counts a short read as a whole period, which ran the
# "microphone" 3x faster than real time when fed 10 ms at a time for 30 ms periods (and 2x, 30 ms for 60).
# `audio_per_wall` in the results checks the pace.
PIPE_WRITE_S = LIVE_BLOCK_S
MIC_DEVICE = "edgeemobench"  # the ALSA device name the microphone cases capture from
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class LiveCase:
    name: str
    microphone: bool  # PortAudio from the ALSA pipe device, else --input FILE
    view: bool  # the live view on a pseudo-terminal, else --json to a pipe


CASES = (
    LiveCase("file, --json", microphone=False, view=False),
    LiveCase("microphone, --json", microphone=True, view=False),
    LiveCase("file, live view", microphone=False, view=True),
    LiveCase("microphone, live view", microphone=True, view=True),
)


# -- /proc ---------------------------------------------------------------------------------------------------


def _stat_cpu_s(path: str) -> float:
    """utime + stime of a /proc stat file, seconds (fields 14 and 15; the name may contain spaces)."""
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process, all its threads (finished ones included)."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per live thread, keyed 'main' or by the thread's name (/proc comm) and id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            cpu = _stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")
        except OSError:  # the thread ended meanwhile
            continue
        out["main" if int(tid) == pid else f"{name}:{tid}"] = cpu
    return out


# -- the audio and the child process ------------------------------------------------------------------------


def _alsa_config(fifo: Path) -> str:
    return f"""
pcm.edgeemobenchfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "{fifo}"; format "raw" }}
pcm.{MIC_DEVICE} {{ type plug; slave {{ pcm "edgeemobenchfile"; format S16_LE; rate {RATE}; channels 1 }} }}
"""


def _feed_pipe(fifo: Path, pcm: np.ndarray, stop: threading.Event, write_s: float) -> None:
    """Write the audio into the pipe in blocks at the rate a microphone records it, then silence.
    PortAudio opens and closes the device while it looks for devices: the pipe is opened again each time,
    and the clock restarts with each reader."""
    step = int(write_s * RATE)
    silence = np.zeros(step, np.int16).tobytes()
    k = 0
    while not stop.is_set():
        try:
            with open(fifo, "wb", buffering=0) as f:  # blocks until the device opens the pipe
                start, written = time.monotonic(), 0
                while not stop.is_set():
                    block = pcm[k * step : (k + 1) * step]
                    f.write(block.tobytes() if len(block) == step else silence)
                    k, written = k + 1, written + 1
                    delay = start + written * write_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except OSError:  # BrokenPipeError: the reader closed the device
            continue


def start_microphone(
    folder: Path, pcm: np.ndarray, stop: threading.Event, env: dict[str, str], write_s: float = PIPE_WRITE_S
) -> threading.Thread:
    """The bench's microphone: the ALSA device MIC_DEVICE (set up in `env`) reads a pipe in `folder` that the
    returned thread (started) fills with `pcm` in real time until `stop`."""
    fifo = folder / "mic.raw"
    os.mkfifo(fifo)
    conf = folder / "asound.conf"
    conf.write_text(_alsa_config(fifo))
    env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"
    feeder = threading.Thread(target=_feed_pipe, args=(fifo, pcm, stop, write_s), daemon=True)
    feeder.start()
    return feeder


def _drain(fd: int, first: threading.Event, stop: threading.Event, lines: list[int]) -> None:
    """Read and discard the child's output (a pipe or a terminal), noting when the first bytes came and
    counting lines (with --json: updates) in lines[0]."""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the terminal's other side closed
            return
        if not data:
            return
        lines[0] += data.count(b"\n")
        first.set()


def measure_case(
    case: LiveCase,
    bundle: Bundle,
    pcm: np.ndarray,
    settle_s: float,
    window_s: float,
    env: dict[str, str],
    pipe_write_s: float = PIPE_WRITE_S,
) -> dict[str, Any]:
    """Run `edge-emo listen` for one case; its CPU share over the window after start-up. pipe_write_s: the
    microphone's audio arrives in pieces of this length (the device period the listening code asks for)."""
    import soundfile

    update_s = bundle.chunk_s  # listen's default: one JSON line per model chunk

    with tempfile.TemporaryDirectory(prefix="edge_emo_live_") as tmp:
        args = [sys.executable, "-m", "edge_emo", "listen", "--model", str(bundle.path)]
        args += [] if case.view else ["--json"]
        child_env = dict(env)
        feeder = None
        stop = threading.Event()
        if case.microphone:
            feeder = start_microphone(Path(tmp), pcm, stop, child_env, pipe_write_s)
            args += ["--device", MIC_DEVICE]
        else:
            wav = Path(tmp) / "speech.wav"
            soundfile.write(str(wav), pcm, RATE)
            args += ["--input", str(wav)]
        errors = open(Path(tmp) / "stderr.txt", "wb")  # noqa: SIM115 (closed with the child, below)
        if case.view:  # a real terminal, as the view needs; 100 x 30 cells
            out_fd, slave = pty.openpty()
            import fcntl
            import struct
            import termios

            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            child_env["TERM"] = "xterm-256color"
            child_env.pop("COLUMNS", None)
            proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=errors, env=child_env, cwd=tmp)
            os.close(slave)
        else:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, env=child_env, cwd=tmp)
            out_fd = proc.stdout.fileno()
        first, lines = threading.Event(), [0]
        drainer = threading.Thread(target=_drain, args=(out_fd, first, stop, lines), daemon=True)
        drainer.start()
        try:
            started = time.monotonic()
            while not first.wait(0.1) and proc.poll() is None and time.monotonic() - started < 60:
                pass
            if not first.is_set() or proc.poll() is not None:
                said = (Path(tmp) / "stderr.txt").read_text(errors="replace").strip().splitlines()
                reason = f"edge-emo listen exited {proc.poll()}: {said[-1] if said else 'no output'}"
                if case.microphone and proc.poll() == 3:  # no PortAudio or no ALSA device (e.g. a board)
                    return {"case": case.name, "microphone": True, "view": case.view, "skipped": reason}
                raise RuntimeError(f"{case.name}: {reason}")
            startup_s = time.monotonic() - started
            time.sleep(settle_s)
            wall0, cpu0, threads0 = time.monotonic(), process_cpu_s(proc.pid), thread_cpu_s(proc.pid)
            lines0 = lines[0]
            time.sleep(window_s)
            wall1, cpu1, threads1 = time.monotonic(), process_cpu_s(proc.pid), thread_cpu_s(proc.pid)
            lines1 = lines[0]
            if proc.poll() is not None:
                raise RuntimeError(f"edge-emo listen ({case.name}) ended during the window")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stop.set()
            errors.close()
            drainer.join(2)
            if case.view:
                os.close(out_fd)
            if feeder is not None:
                feeder.join(2)
    wall = wall1 - wall0
    per_thread = {
        name: round(100 * (threads1[name] - threads0[name]) / wall, 2)
        for name in threads1
        if name in threads0
    }
    return {
        "case": case.name,
        "microphone": case.microphone,
        "view": case.view,
        "startup_s": round(startup_s, 2),
        "window_s": round(wall, 2),
        "cpu_share_pct": round(100 * (cpu1 - cpu0) / wall, 2),
        # seconds of audio analysed per wall second in the window (1.0: real time); the view's lines are not
        # updates, so only --json cases say
        "audio_per_wall": None if case.view else round((lines1 - lines0) * update_s / wall, 3),
        "thread_share_pct": dict(sorted(per_thread.items(), key=lambda kv: -kv[1])),
    }


# -- the stages, one at a time in this process ---------------------------------------------------------------


def _thread_cpu_of(thread: threading.Thread) -> float:
    return _stat_cpu_s(f"/proc/self/task/{thread.native_id}/stat")


def _caught_up_cpu(smile: threading.Thread) -> float:
    """openSMILE's thread's CPU time once it has analysed what it was given: read before end of input,
    which ends the thread (and its /proc entry); it catches up at many times real time."""
    time.sleep(0.5)
    return _thread_cpu_of(smile)


def stage_costs(bundle: Bundle, pcm: np.ndarray) -> dict[str, float]:
    """CPU seconds per second of audio of each stage of the live loop (x 100: % of a core when live)."""
    import soxr

    from edge_emo.features import StreamingExtractor
    from edge_emo.features.audio import RESAMPLE_QUALITY
    from edge_emo.runtime.recognizer import BATCH_S, EmotionRecognizer
    from edge_emo.runtime.view import ListenStatus, render

    audio_s = len(pcm) / RATE
    step = int(BLOCK_S * RATE)
    blocks = [pcm[k : k + step] for k in range(0, len(pcm), step)]
    out: dict[str, float] = {}

    # Resampling, as for a microphone that only offers 48 kHz: 10 ms blocks through the streaming resampler.
    pcm48 = soxr.resample(pcm.astype(np.float32) / 32768, RATE, 48000, RESAMPLE_QUALITY).astype(np.float32)
    resampler = soxr.ResampleStream(48000, RATE, 1, "float32", RESAMPLE_QUALITY)
    t = time.thread_time()
    for k in range(0, len(pcm48), 3 * step):
        resampler.resample_chunk(pcm48[k : k + 3 * step])
    out["resampling_48k"] = (time.thread_time() - t) / audio_s

    # openSMILE: the writes on this thread plus openSMILE's own thread.
    with StreamingExtractor(bundle.spec, batch_s=BATCH_S) as stream:
        engine = stream._engine
        t, t_smile = time.thread_time(), _thread_cpu_of(engine.thread)
        frames = []
        for block in blocks:
            stream.accept_waveform(block)
            frames.append(stream.frames())
        t_smile = _caught_up_cpu(engine.thread) - t_smile
        out["opensmile"] = (time.thread_time() - t + t_smile) / audio_s
        frames.append(stream.end_of_input())
    features = np.concatenate(frames)

    # The model step in the bundle's chunks, with the normalisation and the running mean.
    model = bundle.stream(bundle.session(1))
    t = time.thread_time()
    for k in range(0, len(features), bundle.chunk_frames):
        model.run_chunk(features[k : k + bundle.chunk_frames])
        model.utterance_intensities()
    out["model"] = (time.thread_time() - t) / audio_s

    # The recognizer's own work around them (detector, buffers, updates), then formatting and the view.
    with EmotionRecognizer(bundle) as recognizer:
        recognizer.accept_waveform(blocks[0][:0], RATE)  # starts openSMILE's thread
        smile = recognizer._extractor._engine.thread
        t, t_smile = time.thread_time(), _thread_cpu_of(smile)
        updates = []
        for block in blocks:
            recognizer.accept_waveform(block, RATE)
            updates.extend(recognizer.updates())
        t_smile = _caught_up_cpu(smile) - t_smile
        recognizer.end_of_input()
        updates.extend(recognizer.updates())
        out["recognizer_total"] = (time.thread_time() - t + t_smile) / audio_s
    out["recognizer_bookkeeping"] = max(0.0, out["recognizer_total"] - out["opensmile"] - out["model"])
    t = time.thread_time()
    for update in updates:
        update.to_json()
    out["json_formatting"] = (time.thread_time() - t) / audio_s

    with open(os.devnull, "w") as devnull:
        status = ListenStatus("bench", bundle.version)
        t = time.thread_time()
        for update in updates:
            devnull.write(render(update, status, color=True, width=100))  # what one refresh of the view draws
        out["view_drawing"] = (time.thread_time() - t) / audio_s
    return {k: round(100 * v, 3) for k, v in out.items()}  # % of one core


def live_share(
    bundle: Bundle, pcm: np.ndarray, settle_s: float, window_s: float, env: dict[str, str]
) -> dict:
    """Every case of `CASES`, then the stages; with the load average before and after."""
    if not Path("/proc/self/task").is_dir():
        return {"skipped": "the live share reads CPU times from /proc (Linux only)"}
    load_before = list(os.getloadavg())
    cases = [measure_case(c, bundle, pcm, settle_s, window_s, env) for c in CASES]
    return {
        "settle_s": settle_s,
        "window_s": window_s,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "cases": cases,
        "stages_pct_of_core": stage_costs(bundle, pcm[: int(min(len(pcm) / RATE, 60) * RATE)]),
        "frontends": frontend_costs(pcm[: int(min(len(pcm) / RATE, 60) * RATE)]),
    }


STAGE_NAMES = {
    "resampling_48k": "resampling (a 48 kHz microphone)",
    "opensmile": "openSMILE (writes + its thread)",
    "model": "model step (normalise, GRU, running mean)",
    "recognizer_bookkeeping": "recognizer bookkeeping (detector, buffers, updates)",
    "json_formatting": "formatting an update as JSON",
    "view_drawing": "drawing the live view, once per update",
}


def _thread_kind(name: str) -> str:
    name = name.split(":")[0]
    return name if name.startswith(("main", "edge-emo")) else "other"


def live_markdown(live: dict) -> list[str]:
    """The live share table and the stage breakdown (Markdown lines)."""
    if "skipped" in live:
        return [f"Live CPU share of `edge-emo listen`: skipped ({live['skipped']}).", ""]
    lines = [
        f"Live CPU share of `edge-emo listen`, paced in real time (whole process, % of one core over "
        f"{live['window_s']:g} s after start-up; load average {live['load_average_before'][0]:.1f} before, "
        f"{live['load_average_after'][0]:.1f} after):",
        "",
        "| case | whole process | by thread |",
        "|---|---|---|",
    ]
    for c in live["cases"]:
        if "skipped" in c:
            lines.append(f"| {c['case']} | skipped | {c['skipped']} |")
            continue
        threads = ", ".join(f"{_thread_kind(k)} {v:.1f}" for k, v in c["thread_share_pct"].items() if v > 0)
        lines.append(f"| {c['case']} | {c['cpu_share_pct']:.1f}% | {threads} |")
    stages = live["stages_pct_of_core"]
    lines += ["", "Stages, one at a time in one process (% of one core when live):", ""]
    lines += ["| stage | % of a core |", "|---|---|"]
    lines += [f"| {label} | {stages[key]:.2f} |" for key, label in STAGE_NAMES.items() if key in stages]
    lines += [
        "",
        "Front ends, streaming openSMILE fed as `listen` feeds it (% of one core when live; A B A B):",
        "",
    ]
    lines += [
        "| feature set | hop | values per frame | % of a core (median) | rounds | vs eGeMAPS at 10 ms |",
        "|---|---|---|---|---|---|",
    ]
    for f in live.get("frontends", []):
        rounds = ", ".join(f"{c:.2f}" for c in f["pct_of_core_rounds"])
        lines.append(
            f"| {f['feature_set']} | {f.get('hop_ms', 10)} ms | {f['values_per_frame']} | {f['pct_of_core_median']:.2f} | {rounds} | "
            f"{f['ratio_to_egemaps_median']:.2f}x |"
        )
    return [*lines, ""]


def frontend_costs(pcm: np.ndarray, rounds: int = 3) -> list[dict[str, Any]]:
    """Streaming openSMILE per feature set, fed as `listen` feeds it (30 ms hand-overs) as fast as it takes
    them: CPU seconds (this thread's writes + openSMILE's thread) per second of audio, x 100 (% of a core
    when live). Sets alternate round by round (A B A B) and the ratio to eGeMAPS is taken per round, so a
    machine whose speed drifts slows both alike."""
    from edge_emo.features import StreamingExtractor
    from edge_emo.features.smile import front_ends
    from edge_emo.runtime.recognizer import BATCH_S

    step = int(BATCH_S * RATE)
    audio_s = len(pcm) / RATE
    specs = front_ends()
    cost: list[list[float]] = [[] for _ in specs]
    for _ in range(rounds):
        for i, spec in enumerate(specs):
            with StreamingExtractor(spec) as stream:
                stream.accept_waveform(pcm[:0])
                smile = stream._engine.thread
                t, t_smile = time.thread_time(), _thread_cpu_of(smile)
                for k in range(0, len(pcm), step):
                    stream.accept_waveform(pcm[k : k + step])
                    stream.frames()
                cpu = time.thread_time() - t + _caught_up_cpu(smile) - t_smile
                stream.end_of_input()
            cost[i].append(100 * cpu / audio_s)
    base = np.asarray(cost[0])  # eGeMAPS at 10 ms
    return [
        {
            "feature_set": spec.name,
            "hop_ms": round(spec.hop_s * 1000),
            "values_per_frame": spec.dim,
            "pct_of_core_median": round(float(np.median(c)), 3),
            "pct_of_core_rounds": [round(x, 3) for x in c],
            "ratio_to_egemaps_median": round(float(np.median(np.asarray(c) / base)), 3),
        }
        for spec, c in zip(specs, cost)
    ]


def speech_clip(seconds: float) -> np.ndarray:
    """int16 mono speech at 16 kHz: the shipped LibriSpeech sample, repeated to length."""
    from edge_emo.features import load_audio, resample, to_mono
    from edge_emo.runtime.shipped import sample_path

    signal, rate = load_audio(sample_path())
    signal = resample(to_mono(signal), rate, RATE)
    n = int(seconds * RATE)
    signal = np.tile(signal, n // len(signal) + 1)[:n]
    return (np.clip(signal, -1.0, 1.0 - 1.0 / 32768) * 32768).astype(np.int16)


def _microphone_period_s(env: dict[str, str]) -> float:
    """The audio per microphone block of the checkout on env's PYTHONPATH: LIVE_BLOCK_S, or 30 ms for
    checkouts before it (10 ms PortAudio blocks, for which ALSA chose 30 ms periods here)."""
    code = "from edge_emo.runtime import audio_input as a; print(getattr(a, 'LIVE_BLOCK_S', 0.03))"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd="/"
    )
    return max(0.03, float(run.stdout.strip()))


def side_by_side(roots: list[str], bundle: Bundle, rounds: int, window_s: float) -> list[dict[str, Any]]:
    """The live share of each case for two checkouts of edge-emo (their folders go first on PYTHONPATH),
    A B A B per round, with the ratio A/B pair by pair (how the before/after figures in benchmarks/README.md
    were made)."""
    pcm = speech_clip(window_s + 40)
    periods = {root: _microphone_period_s({**os.environ, "PYTHONPATH": root}) for root in roots}
    out = []
    for case in CASES:
        shares: dict[str, list[float]] = {root: [] for root in roots}
        for _ in range(rounds):
            for root in roots:
                env = {**os.environ, "PYTHONPATH": root}
                result = measure_case(case, bundle, pcm, 2.0, window_s, env, periods[root])
                shares[root].append(result["cpu_share_pct"])
        a, b = (np.asarray(shares[r]) for r in roots)
        out.append(
            {
                "case": case.name,
                **{f"{'AB'[i]}_pct": shares[r] for i, r in enumerate(roots)},
                "ratio_a_to_b": [round(float(x), 2) for x in a / b],
                "load_average": list(os.getloadavg()),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out

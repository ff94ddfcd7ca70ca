"""Where a live `edge-emo listen` spends its CPU: `perf record` on the whole process in steady state, from the
microphone path (the bench's ALSA file-plugin device fed in real time, as `edge_emo.bench.live` does) or a
file, then the samples by thread and by library (`perf report`). Linux, with `perf` installed and allowed
(perf_event_paranoid <= 1, or root).

    PYTHONPATH=. python -m benchmarks.profile_live [--file] [--view] [--seconds 25] [--keep perf.data]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge_emo.bench.live import MIC_DEVICE, RATE, speech_clip, start_microphone

SETTLE_S = 8.0  # start-up left out, as the live share leaves it out
RATE_HZ = 499  # perf's samples per second of CPU time


def perf_table(data: Path, sort: str) -> list[str]:
    """`perf report` lines (share, name) of the recording, sorted by `sort` (comm: thread, dso: library)."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "-g", "none", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]


def samples(data: Path) -> int:
    """How many samples the recording holds (perf's header line '# Samples: N of event ...')."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in report.stdout.splitlines():
        if line.startswith("# Samples:"):
            return int(float(line.split()[2].rstrip("KkMm")) * (1000 if line.split()[2][-1] in "Kk" else 1))
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", action="store_true", help="--input FILE (paced) instead of the microphone path")
    ap.add_argument("--view", action="store_true", help="the live view (to a pipe) instead of --json")
    ap.add_argument("--seconds", type=float, default=25.0, help="seconds recorded after start-up")
    ap.add_argument("--keep", type=Path, help="keep perf's recording here")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian/Ubuntu: linux-perf or linux-tools)")
    pcm = speech_clip(SETTLE_S + args.seconds + 20)
    with tempfile.TemporaryDirectory(prefix="edge_emo_profile_") as tmp:
        env = dict(os.environ)
        command = [sys.executable, "-m", "edge_emo", "listen", *([] if args.view else ["--json"])]
        stop = threading.Event()
        if args.file:
            import soundfile

            wav = Path(tmp) / "speech.wav"
            soundfile.write(str(wav), pcm, RATE)
            command += ["--input", str(wav)]
        else:
            start_microphone(Path(tmp), pcm, stop, env)
            command += ["--device", MIC_DEVICE]
        data = args.keep or Path(tmp) / "perf.data"
        with open(Path(tmp) / "stderr.txt", "wb") as errors:
            listen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=tmp)
            try:
                time.sleep(SETTLE_S)
                if listen.poll() is not None:
                    said = (Path(tmp) / "stderr.txt").read_text(errors="replace").strip()
                    raise SystemExit(f"edge-emo listen ended at start-up: {said.splitlines()[-1:]}")
                record = ["perf", "record", "-F", str(RATE_HZ), "-g", "-p", str(listen.pid), "-o", str(data)]
                done = subprocess.run(
                    [*record, "--", "sleep", str(args.seconds)], capture_output=True, text=True
                )
                if done.returncode != 0:  # e.g. perf_event_paranoid forbids it: perf's own reason, one line
                    said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
                    reason = next((line for line in said if "paranoid" in line), said[0] if said else "")
                    raise SystemExit(f"perf record failed: {reason or done.returncode}")
            finally:
                listen.send_signal(2)
                listen.wait(20)
                stop.set()
        n = samples(data)
        print(f"{n} samples in {args.seconds:g} s: {100 * n / RATE_HZ / args.seconds:.1f}% of one core")
        for sort, title in (("comm", "by thread"), ("dso", "by library")):
            print(f"{title}:")
            for line in perf_table(data, sort)[:12]:
                print(f"  {line}")


if __name__ == "__main__":
    main()

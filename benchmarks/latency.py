"""Audio-to-update latency of checkouts and bundles side by side: `edge_emo.bench.core.paced_latency` (speech
paced in real time in 10 ms blocks, one thread) for each CHECKOUT=BUNDLE in turn, A B A B, in a fresh
interpreter with the checkout first on PYTHONPATH (how benchmarks/README.md compares code before and after).

python -m benchmarks.latency [--rounds 2] [--seconds 20] CHECKOUT=BUNDLE [CHECKOUT=BUNDLE ...]

e.g. `git worktree add ../prev 391f7e0` then
python -m benchmarks.latency ../prev=../prev/edge_emo/models/default.bundle .=edge_emo/models/default.bundle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Run inside each checkout: only what every checkout since 2026-12-01 has.
_MEASURE = """
import json, sys
from edge_emo.bench.core import paced_latency, speech_clip
from edge_emo.runtime.bundle import load_bundle
bundle = load_bundle(sys.argv[1])
result = paced_latency(bundle, speech_clip(float(sys.argv[2])))
print(json.dumps({"chunk_frames": bundle.chunk_frames, "hop_s": bundle.spec.hop_s, **result}))
"""


def measure(checkout: Path, bundle: Path, seconds: float) -> dict:
    """paced_latency of `bundle` with the code of `checkout`, in a child interpreter."""
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bundle.resolve()), str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,
    )
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{checkout} with {bundle}: {last}")
    return json.loads(run.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", metavar="CHECKOUT=BUNDLE")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="speech paced per measurement")
    args = ap.parse_args()
    pairs = []
    for text in args.pairs:
        checkout, sep, bundle = text.partition("=")
        if not sep or not (Path(checkout) / "edge_emo").is_dir() or not Path(bundle).is_dir():
            ap.error(f"{text}: expected CHECKOUT=BUNDLE, an edge-emo checkout and a bundle folder")
        pairs.append((Path(checkout), Path(bundle)))
    if not (args.rounds >= 1 and 1 <= args.seconds <= 600):
        ap.error("--rounds must be >= 1 and --seconds within 1..600")
    for k in range(args.rounds):
        for checkout, bundle in pairs:
            r = measure(checkout, bundle, args.seconds)
            print(
                json.dumps(
                    {
                        "round": k,
                        "checkout": str(checkout),
                        "bundle": str(bundle),
                        "chunk_frames": r["chunk_frames"],
                        "every_frame_median_ms": r["every_frame_ms"]["median"],
                        "newest_frame_median_ms": r["newest_frame_ms"]["median"],
                        "waiting_for_audio_median_ms": r["newest_frame_waiting_for_audio_ms"]["median"],
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

"""False cues as the wearer sees them live: every update of every utterance, not only its final result.

Each audio file of a folder (manifest.csv or labels.csv; labeled folders keep only their neutral clips: no
intensity >= 0.5, calm included) is streamed through the real `EmotionRecognizer` with the voice detector, as
`edge-emo listen --fast` does. Per utterance: did its final result name an emotion (intensity >= 0.5), and
did any update on the way? The second is what the live view, the JSON lines and the bridge show. Both as
shares of utterances with 95% Wilson intervals, for each `--cue-after` (seconds of speech an utterance needs
before its estimate is shown; the final result is always shown).

Usage:
    python -m benchmarks.live_cues BUNDLE DATA_DIR [--files 60] [--speakers a,b] [--cue-after 0,0.5,1,1.5] [--out x.json]
A bundle trained on DATA_DIR's speakers scores speech it learned from: say so beside its numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_emo.data.labels import read_labels, read_manifest
from edge_emo.emotions import PRESENT
from edge_emo.features import load_audio
from edge_emo.metrics import proportion
from edge_emo.runtime.bundle import Bundle, load_bundle
from edge_emo.runtime.recognizer import EmotionRecognizer

BLOCK_S = 0.1  # audio handed to the recognizer at once, as the microphone does


def neutral_files(data_dir: Path, n_files: int | None, speakers: set[str] | None = None) -> list[Path]:
    """The first `n_files` audio files of a folder (of `speakers` only, if given): all of an unlabeled one,
    the neutral clips of a labeled one."""
    if (data_dir / "labels.csv").is_file():
        table = [r for r in read_labels(data_dir / "labels.csv") if max(r.intensities) < PRESENT]
    else:
        table = read_manifest(data_dir / "manifest.csv")
    return [r.path for r in table if speakers is None or r.speaker in speakers][:n_files]


def utterance_cues(bundle: Bundle, path: Path, cue_after_s: float) -> list[tuple[bool, bool]]:
    """(final result names an emotion, some update names one) for each utterance of one file."""
    x, rate = load_audio(path)
    recognizer = EmotionRecognizer(bundle, cue_after_s=cue_after_s)
    block = max(1, round(BLOCK_S * rate))
    out, shown = [], False
    blocks = [x[start : start + block] for start in range(0, len(x), block)]
    for b in [*blocks, None]:  # None: the end of the input, which closes the last utterance
        if b is None:
            recognizer.end_of_input()
        else:
            recognizer.accept_waveform(b, rate)
        for u in recognizer.updates():
            shown |= bool(u.speech and u.intensities.max() >= PRESENT)
            if u.final:
                out.append((bool(u.intensities.max() >= PRESENT), shown))
                shown = False
    recognizer.close()
    return out


def measure(bundle: Bundle, files: list[Path], cue_after: list[float]) -> list[dict]:
    rows = []
    for c in cue_after:
        cues = np.array([cue for f in files for cue in utterance_cues(bundle, f, c)], dtype=bool).reshape(
            -1, 2
        )
        rows.append(
            {
                "cue_after_s": c,
                "utterances": len(cues),
                "final": proportion(cues[:, 0].sum(), len(cues)),
                "any_update": proportion(cues[:, 1].sum(), len(cues)),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    def rate(p: dict) -> str:
        lo, hi = p["ci95"]
        return f"{100 * p['rate']:.1f}% [{100 * lo:.1f}%, {100 * hi:.1f}%] ({p['k']} of {p['n']})"

    lines = [
        "| shown after (s of speech) | utterances | final result names an emotion | some update names one |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['cue_after_s']:g} | {r['utterances']} | {rate(r['final'])} | {rate(r['any_update'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--files", type=int, default=None, help="the first N audio files (default: all)")
    ap.add_argument(
        "--speakers", help="only these speakers (comma-separated), e.g. a CV fold's held-out ones"
    )
    ap.add_argument("--cue-after", default="0,0.5,1,1.5")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    files = neutral_files(args.data_dir, args.files, set(args.speakers.split(",")) if args.speakers else None)
    if not files:
        raise SystemExit(
            f"{args.data_dir}: no neutral audio files" + (" of those speakers" if args.speakers else "")
        )
    rows = measure(bundle, files, [float(c) for c in args.cue_after.split(",")])
    report = {"bundle": bundle.version, "data": str(args.data_dir), "files": len(files), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(f"{bundle.version} on {len(files)} files of {args.data_dir}\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()

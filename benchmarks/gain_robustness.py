"""Robustness to microphone gain: the same clips at -20 dB, 0 dB and +12 dB (no clip ever clips: a clip
that would is turned up less, and the report counts them), at a random gain per clip, and at 0 dB in a noisy
room (pink noise 5..20 dB below the speech, drawn per clip: `edge_emo.data.gain`).

Features come from the real openSMILE pipeline on the gained audio (cached per gain like all features). For a
model (bundle or checkpoint) it reports, against 0 dB:
- the mean absolute change of the six intensities, overall and per emotion (target: <= 0.1),
- macro-F1, 4-class accuracy and MAE at each gain and under a random gain in [-20, +12] dB per clip,
  beside the all-zeros reference;
and, model-free, which feature columns move with gain: the mean absolute change of each column's clip mean,
in standard deviations of that column (over the 0 dB frames).

With `--cut speech` (what the device does) each clip is cut, at each gain, to the speech the voice detector
finds in the gained audio, and a clip in which it finds none predicts nothing (all zeros), as the live view
would show: the detector's misses count against the model.

A speaker-adapting model standardises each speaker's clips at each gain by that speaker's estimate at that
gain (the device after hearing them through that microphone); `--cold` scores every clip with the prior
alone instead (a stranger's first words, where the gain is not yet known).

Usage:
    python -m benchmarks.gain_robustness MODEL DATA_DIR [--speakers a,b] [--gains -20,0,12] [--cut speech]
        [--cold] [--out x.json]
A model trained on DATA_DIR's clips scores its own training data: the intensity changes are meaningful,
the F1 values are not (use `edge-emo experiment --cv speakers` for F1 on unseen speakers).
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_emo.data.clips import ClipSet
from edge_emo.data.corpus import SpeechCut, cut_speech, load_corpus, speech_segments_of
from edge_emo.data.gain import Gain, apply_gain, parse_gain
from edge_emo.data.labels import read_labels
from edge_emo.features import FeatureSpec, NormStats, load_audio
from edge_emo.metrics import report
from edge_emo.predictor import load_predictor

RANDOM = Gain(db=None, low=-20.0, high=12.0, seed=0)
# Another draw of noise than training's `+noisy` renditions (seed 0): a model trained in the noisy room is
# measured on noise it has not heard, not on the same samples at another gain.
NOISY = replace(parse_gain("noisy"), seed=1)


def applied_gains(data_dir: Path, names: list[str], gain: Gain) -> tuple[np.ndarray, np.ndarray]:
    """The gain asked for each clip and the gain it really got (less where it would have clipped)."""
    asked = np.asarray([gain.for_clip(str(data_dir / name)) for name in names])
    applied = [apply_gain(load_audio(data_dir / n)[0], a)[1] for n, a in zip(names, asked)]
    return asked, np.asarray(applied)


def column_shift(base: list[np.ndarray], gained: list[np.ndarray], columns, std: np.ndarray) -> dict:
    """Per column: mean over clips of |clip mean at this gain - clip mean at 0 dB| / std (NaN-safe)."""
    shift = np.stack(
        [np.abs(np.nanmean(g, 0) - np.nanmean(b, 0)) / std for b, g in zip(base, gained)]
    )  # (clips, F)
    values = np.nanmean(shift, 0)
    return dict(sorted(((c, round(float(v), 4)) for c, v in zip(columns, values)), key=lambda kv: -kv[1]))


@functools.lru_cache(maxsize=8)
def _corpus(data_dir: Path, spec: FeatureSpec, gain: Gain | None) -> ClipSet:
    """A corpus at a gain, loaded once per process: benchmarks/heldout.py measures every fold's model on it."""
    return load_corpus(data_dir, spec, gain=gain)


@functools.lru_cache(maxsize=8)
def _segments(data_dir: Path, spec: FeatureSpec, gain: Gain | None) -> list[np.ndarray]:
    """The detector's utterances in every clip of a corpus at a gain, read once per process."""
    return speech_segments_of(data_dir, read_labels(data_dir / "labels.csv"), spec, gain=gain)


def measure(
    model_path: Path,
    data_dir: Path,
    gains: list[float],
    speakers: set[str] | None = None,
    cut: str = "whole",
    cold: bool = False,
) -> dict:
    """The report of the module docstring for one model on `data_dir` (only `speakers`' clips if given)."""
    model = load_predictor(model_path)
    spec, emotions, predict = model.spec, model.emotions, model.predict
    records = read_labels(data_dir / "labels.csv")
    keep = [i for i, r in enumerate(records) if speakers is None or r.speaker in speakers]

    def clips(gain: Gain | None):
        return _corpus(data_dir, spec, gain).subset(keep)

    def segments(gain: Gain | None) -> list[np.ndarray]:
        """The utterances the detector finds in each kept clip at this gain."""
        found = _segments(data_dir, spec, gain)
        return [found[i] for i in keep]

    def heard(gain: Gain | None) -> np.ndarray:
        """Per clip, how many frames the detector calls speech at this gain."""
        return np.array([sum(int(b - a) for a, b in seg) for seg in segments(gain)])

    def predicted(gain: Gain | None) -> tuple[np.ndarray, int]:
        """Predictions at this gain, and how many clips the detector found no speech in."""
        c = clips(gain)
        if cut == "whole":
            return predict(c.features, speakers=None if cold else c.speakers), 0
        spans = segments(gain)
        found = [i for i, seg in enumerate(spans) if len(seg)]
        spoken = cut_speech(c.subset(found), [spans[i] for i in found], SpeechCut.speech, spec.hop_s)
        pred = np.zeros((len(c), len(emotions)), np.float32)
        pred[found] = predict(spoken.features, speakers=None if cold else spoken.speakers)
        return pred, len(c) - len(found)

    base = clips(None)
    std = NormStats.fit(base.features).std
    pred0, missed0 = predicted(None)
    speech0 = heard(None)
    result = {
        "model": str(model_path),
        "data": str(data_dir),
        "n_clips": len(base),
        "speakers": sorted(set(base.speakers)),
        "cut": cut,
        "speaker_estimate": not cold,
        "gains": {},
    }
    for gain in [Gain(db=g) for g in gains if g != 0.0] + [RANDOM, NOISY]:
        gained = clips(gain)
        pred, missed = predicted(gain)
        asked, applied = applied_gains(data_dir, gained.names, gain)
        change = np.abs(pred - pred0)
        entry = {
            "asked_db": gain.db if gain.db is not None else [gain.low, gain.high],
            "noise_snr_db": list(gain.noise) if gain.noise else None,
            "applied_db_mean": round(float(applied.mean()), 2),
            "clips_turned_down_to_avoid_clipping": int(np.sum(applied < asked - 1e-6)),
            "intensity_change_mean": round(float(change.mean()), 4),
            "intensity_change_per_emotion": {e: round(float(v), 4) for e, v in zip(emotions, change.mean(0))},
            "intensity_change_p95": round(float(np.percentile(change, 95)), 4),
            "clips_without_speech": missed,
            # speech the detector still finds at this gain, against what it finds at 0 dB
            "clips_heard_under_half": int(np.sum(heard(gain) < 0.5 * speech0)),
            "metrics": report(gained.labels, pred, emotions),
            "feature_column_shift_std": column_shift(base.features, gained.features, spec.columns, std),
        }
        result["gains"][gain.name] = entry
    result["gains"]["gain+0dB"] = {
        "clips_without_speech": missed0,
        "metrics": report(base.labels, pred0, emotions),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="bundle directory or checkpoint (.safetensors)")
    parser.add_argument("data_dir", type=Path, help="labeled corpus (labels.csv)")
    parser.add_argument("--gains", default="-20,0,12", help="fixed gains in dB, 0 among them")
    parser.add_argument("--speakers", help="only these speakers (comma-separated), e.g. a CV fold's")
    parser.add_argument(
        "--cut",
        choices=["whole", "speech"],
        default="whole",
        help="whole clips, or the speech the detector finds at each gain",
    )
    parser.add_argument("--cold", action="store_true", help="no speaker estimate (a stranger's first words)")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args()

    gains = [float(g) for g in args.gains.split(",")]
    if 0.0 not in gains:
        parser.error("--gains must include 0 (the reference)")
    speakers = set(args.speakers.split(",")) if args.speakers else None
    known = {r.speaker for r in read_labels(args.data_dir / "labels.csv")}
    if speakers and not speakers <= known:
        parser.error(f"unknown speakers {sorted(speakers - known)}")
    result = measure(args.model, args.data_dir, gains, speakers, args.cut, args.cold)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def markdown(result: dict) -> str:
    lines = [
        f"{result['n_clips']} clips of {len(result['speakers'])} speakers; model {result['model']}; "
        f"cut: {result['cut']}",
        "",
        "| gain | applied (mean dB) | clips turned down | clips without speech | clips with under half their "
        "0 dB speech | mean abs intensity change vs 0 dB | p95 change | macro-F1 | acc4 | MAE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["gains"].items():
        m = e["metrics"]["model"]
        lines.append(
            f"| {name} | {e.get('applied_db_mean', 0.0)} | {e.get('clips_turned_down_to_avoid_clipping', '')} "
            f"| {e.get('clips_without_speech', 0)} | {e.get('clips_heard_under_half', 0)} "
            f"| {e.get('intensity_change_mean', 0.0)} | {e.get('intensity_change_p95', 0.0)} "
            f"| {m['macro_f1']:.3f} | {m['acc4']:.3f} | {m['mae']:.3f} |"
        )
    for name, e in result["gains"].items():
        if "feature_column_shift_std" in e:
            top = list(e["feature_column_shift_std"].items())[:8]
            lines.append(
                f"\ncolumns that move most at {name} (std of the column): "
                + ", ".join(f"{c} {v}" for c, v in top)
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

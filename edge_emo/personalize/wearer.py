"""Personalizing a bundle's emotion head to its wearer, on the device: no torch, nothing lost.

    result = personalize("default.bundle", "labels.csv", "personal.bundle")
    rollback("personal.bundle")                    # back to the bundle it replaced

Steps: read the wearer's labels.csv (every clip must exist, hold speech and be labeled 0..3); extract the
clips' features with the bundle's own feature spec; embed them with the bundle's graph (onnxruntime); fit the
head in closed form toward the shipped one (ridge.py); write the new bundle next to its destination, validate
it there (loads, hashes match, runs on the wearer's clips with finite outputs in range, equal to the fitted
head's) and only then swap it in, keeping the bundle it replaces as NAME.bundle.prev.

Before/after metrics are on held-out clips: every clip is predicted by a head fitted without it (the
strength chosen without it too), beside the shipped head on the same clips.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_emo.data.labels import EMOTIONS, read_labels
from edge_emo.features import audio_seconds, extract, load_audio
from edge_emo.files import fsync_dir
from edge_emo.metrics import report
from edge_emo.personalize.record import check_clip_length, recover_labels
from edge_emo.personalize.ridge import HeadFit, fit_head, held_out_predictions, predict
from edge_emo.runtime.bundle import (
    HEAD_BIAS,
    HEAD_WEIGHT,
    Bundle,
    BundleError,
    check_replaceable,
    load_bundle,
    recover_bundle,
)
from edge_emo.runtime.recognizer import Vad

# Leave-one-out needs a few clips to tell a useful strength from noise: with 5 clips every fold still fits
# on 4, one per emotion at best. Fewer than that and the shrinkage nearly always keeps the shipped head
# while the held-out report would be too noisy to mean anything.
MIN_CLIPS = 5
# The new head's raw utterance outputs on the wearer's clips must stay within this margin of 0..3 (the
# runtime clips to 0..3; a head far outside it is broken, not personal).
RANGE_MARGIN = 1.0
MAX_INTENSITY = 3.0


class PersonalizeError(ValueError):
    """Personalization cannot run on this input; nothing was changed."""


@dataclass(frozen=True)
class WearerClips:
    paths: list[Path]
    features: list[np.ndarray]  # raw frames (T_i, F) in the bundle's feature spec
    labels: np.ndarray  # (n, E) in the bundle's emotion order


@dataclass(frozen=True)
class PersonalizeResult:
    bundle: Bundle  # the new bundle, in place at its destination
    fit: HeadFit
    before: dict[str, Any]  # metrics.report of the shipped head on the wearer's clips
    after: dict[str, Any]  # metrics.report of leave-one-out predictions of the personalized head
    n_clips: int


def personal_bundle_path() -> Path:
    """Where personalized bundles go by default: $XDG_DATA_HOME/edge-emo/personal.bundle (user-writable,
    outside the installed package)."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edge-emo" / "personal.bundle"


def read_head(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's fp32 head: weight (H, E) and bias (E,)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model(str(bundle.graph_path))
    found = {
        i.name: numpy_helper.to_array(i)
        for i in model.graph.initializer
        if i.name in (HEAD_WEIGHT, HEAD_BIAS)
    }
    if set(found) != {HEAD_WEIGHT, HEAD_BIAS}:
        raise BundleError(f"{bundle.graph_path}: graph has no fp32 head ({HEAD_WEIGHT}, {HEAD_BIAS})")
    return found[HEAD_WEIGHT].astype(np.float32), found[HEAD_BIAS].astype(np.float32)


def speech_seconds(signal: np.ndarray, rate: int, threshold_db: float = Vad.threshold_db) -> float:
    """Longest run of 10 ms frames at or above `threshold_db` (the recognizer's speech level), in seconds."""
    hop = max(1, round(0.01 * rate))
    n = len(signal) // hop
    frames = np.asarray(signal[: n * hop], np.float64).reshape(n, hop)
    loud = 10 * np.log10(np.maximum((frames**2).mean(1), 1e-12)) >= threshold_db
    longest = run = 0
    for flag in loud:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest * hop / rate


def load_wearer_clips(labels_csv: str | os.PathLike, bundle: Bundle) -> WearerClips:
    """The wearer's labeled clips as features of the bundle's spec, checked: enough clips, each with speech,
    labels in range (read_labels), emotions the bundle knows."""
    records = read_labels(Path(labels_csv))
    if len(records) < MIN_CLIPS:
        raise PersonalizeError(
            f"{labels_csv}: {len(records)} labeled clip(s); personalization needs at least {MIN_CLIPS} "
            "(record more with `edge-emo record`)"
        )
    unknown = [e for e in bundle.emotions if e not in EMOTIONS]
    if unknown:
        raise PersonalizeError(f"{bundle.path} predicts {unknown}, which labels.csv does not have")
    order = [EMOTIONS.index(e) for e in bundle.emotions]
    vad = Vad()
    features = []
    for record in records:
        check_clip_length(audio_seconds(record.path), str(record.path))  # before decoding a 2-hour file
        signal, rate = load_audio(record.path)
        if speech_seconds(signal, rate, vad.threshold_db) < vad.min_speech_s:
            raise PersonalizeError(
                f"{record.path}: no speech (never {vad.min_speech_s * 1000:g} ms above {vad.threshold_db:g} dBFS)"
            )
        features.append(extract(signal, rate, bundle.spec, source=str(record.path)))
    labels = np.array([[r.intensities[i] for i in order] for r in records], dtype=np.float32)
    return WearerClips([r.path for r in records], features, labels)


def check_outputs(bundle: Bundle, features: list[np.ndarray], expected: np.ndarray) -> None:
    """The bundle runs on the clips, its outputs are finite, within RANGE_MARGIN of 0..3 and equal to
    `expected` (the fitted head's); else BundleError."""
    got = bundle.predict_utterances(features)
    if not np.all(np.isfinite(got)):
        raise BundleError(f"{bundle.path}: non-finite outputs on the wearer's clips")
    low, high = float(got.min()), float(got.max())
    if low < -RANGE_MARGIN or high > MAX_INTENSITY + RANGE_MARGIN:
        raise BundleError(
            f"{bundle.path}: outputs {low:.2f}..{high:.2f} on the wearer's clips are far outside 0..3; "
            "the labels may be inconsistent"
        )
    if np.abs(got - expected).max() > 1e-3:
        raise BundleError(
            f"{bundle.path}: outputs differ from the fitted head's (max {np.abs(got - expected).max():.2g})"
        )


def check_writable(out: Path) -> None:
    """Fail before any work when the destination's folder cannot take the new bundle."""
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    probe = folder / f".edge-emo-write-test-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise PersonalizeError(
            f"cannot write {out}: {folder} is not writable ({e.strerror}); pass --out to a writable path"
        ) from None


def personalize(
    model: str | os.PathLike,
    labels_csv: str | os.PathLike,
    out: str | os.PathLike,
    sign: Callable[[bytes], bytes] | None = None,
) -> PersonalizeResult:
    """Fit the head of the bundle at `model` to the clips of `labels_csv` and put the new bundle at `out`
    (which may be `model` itself), signed by `sign` if given (edge_emo/signing.signer); a bundle already at
    `out` is kept as `out`.prev. Bad input raises
    PersonalizeError, BundleError or another ValueError/OSError, and nothing is written."""
    from edge_emo.runtime.bundle import write_bundle_with_head

    out = Path(out)
    bundle = load_bundle(model)
    weight0, bias0 = read_head(bundle)
    check_writable(out)
    check_replaceable(out)
    clips = load_wearer_clips(labels_csv, bundle)
    x = bundle.embed_utterances(clips.features)
    fit = fit_head(x, clips.labels, weight0, bias0)
    held_out = held_out_predictions(x, clips.labels, weight0, bias0)
    before = report(clips.labels, predict(x, weight0, bias0), bundle.emotions)
    after = report(clips.labels, held_out, bundle.emotions)
    expected = predict(x, fit.weight, fit.bias)
    provenance = {
        "labels": str(Path(labels_csv).resolve()),
        "clips": len(clips.paths),
        "strength": fit.strength if not fit.shipped else "inf (shipped head kept)",
        "held_out_macro_f1": {"before": before["model"]["macro_f1"], "after": after["model"]["macro_f1"]},
        "held_out_mae": {"before": before["model"]["mae"], "after": after["model"]["mae"]},
    }
    new = write_bundle_with_head(
        bundle,
        fit.weight,
        fit.bias,
        out,
        provenance=provenance,
        check=lambda b: check_outputs(b, clips.features, expected),
        sign=sign,
    )
    return PersonalizeResult(new, fit, before, after, len(clips.paths))


def recover(bundles: list[Path], labels_csv: Path | None = None) -> list[str]:
    """At the start of listen, record and personalize: finish or undo what a killed run left at these
    bundle paths (see runtime.bundle.recover_bundle) and beside labels.csv; one line per thing done."""
    said = []
    for path in dict.fromkeys(Path(b) for b in bundles):
        said += recover_bundle(path)
    if labels_csv is not None:
        said += recover_labels(Path(labels_csv))
    return said


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def rollback(path: str | os.PathLike) -> Bundle:
    """Put the bundle that `path` replaced (path.prev) back at `path`; the current one becomes path.prev, so a
    second rollback re-applies it. Both are verified first; an interrupted rollback (path missing) finishes
    by moving path.prev into place."""
    path = Path(path)
    prev = previous_path(path)
    if not prev.exists():
        raise PersonalizeError(f"{path}: no previous bundle to roll back to ({prev.name} does not exist)")
    load_bundle(prev)
    check_writable(path)
    if not path.exists():
        os.replace(prev, path)
        return load_bundle(path)
    load_bundle(path)
    aside = path.with_name(f"{path.name}.rollback-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    # A kill between these renames is finished by recover_bundle (runtime/bundle.py) at the next start.
    os.replace(path, aside)  # from here until the next line, path.prev is the valid bundle to roll back to
    os.replace(prev, path)
    os.replace(aside, prev)
    fsync_dir(path.parent)
    return load_bundle(path)

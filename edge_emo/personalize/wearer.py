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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_emo.data.labels import read_labels
from edge_emo.emotions import EMOTIONS, MAX_INTENSITY
from edge_emo.features import audio_seconds, extract, load_audio
from edge_emo.features.normalization import speaker_adapted
from edge_emo.features.speech import Vad, utterance_spans
from edge_emo.files import fsync_dir
from edge_emo.metrics import false_cues, report
from edge_emo.personalize.adapt import PersonalizeError, SpeakerNorm, load_unlabeled, speaker_norm, with_norm
from edge_emo.personalize.guard import accept
from edge_emo.personalize.method import DEFAULT, HeadFit, Method, fit
from edge_emo.personalize.record import check_clip_length, recover_labels
from edge_emo.personalize.ridge import predict
from edge_emo.runtime.bundle import (
    HEAD_BIAS,
    HEAD_WEIGHT,
    Bundle,
    BundleError,
    check_replaceable,
    load_bundle,
    recover_bundle,
)

# Leave-one-out needs a few clips to tell a useful strength from noise: with 5 clips every fold still fits
# on 4, one per emotion at best. Fewer than that and the shrinkage nearly always keeps the shipped head
# while the held-out report would be too noisy to mean anything.
MIN_CLIPS = 5
# The new head's raw utterance outputs on the wearer's clips must stay within this margin of 0..3 (the
# runtime clips to 0..3; a head far outside it is broken, not personal).
RANGE_MARGIN = 1.0


@dataclass(frozen=True)
class WearerClips:
    paths: list[Path]
    features: list[np.ndarray]  # raw frames (T_i, F) in the bundle's feature spec
    labels: np.ndarray  # (n, E) in the bundle's emotion order


@dataclass(frozen=True)
class PersonalizeResult:
    bundle: Bundle  # the bundle in place at the destination (the current one when `kept`)
    method: Method  # what was fitted (head shipped: only the normalisation, or nothing)
    before: dict[str, Any] | None  # metrics.report of the current bundle on the wearer's labeled clips
    after: dict[str, Any] | None  # metrics.report of the new bundle, held out (None without labels)
    n_clips: int  # labeled clips
    unlabeled_s: float  # seconds of unlabeled speech the normalisation came from (0: none)
    kept: bool  # the held-out check found the new bundle not better: nothing was written


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
    vad, hop_s = Vad(), bundle.spec.hop_s
    features = []
    for record in records:
        check_clip_length(audio_seconds(record.path), str(record.path))  # before decoding a 2-hour file
        signal, rate = load_audio(record.path)
        spans = utterance_spans(signal, rate, vad, hop_s)
        if max((end - start for start, end in spans), default=0) * hop_s < vad.min_speech_s:
            raise PersonalizeError(f"{record.path}: no speech (voice-activity detector: {vad.describe})")
        # From the first to the last frame the detector calls speech, as the model was trained (--cut
        # speech) and as the device hears an utterance: a recording's silence before and after is not the
        # partner's voice.
        frames = extract(signal, rate, bundle.spec, source=str(record.path))
        features.append(frames[spans[0][0] : spans[-1][1]])
    labels = np.array([[r.intensities[i] for i in order] for r in records], dtype=np.float32)
    return WearerClips([r.path for r in records], features, labels)


def device_view(bundle: Bundle, features: list[np.ndarray], heard: list[np.ndarray]) -> list[np.ndarray]:
    """The wearer's clips as the device running `bundle` sees them once it has heard their one partner.
    A speaker-adapting bundle standardises them by that partner's estimate from all of the partner's speech
    at hand: the labeled clips and the logged speech `heard` (re-expressed for the bundle's own
    normalisation, features/normalization.py: speaker_adapted). Any other bundle: the clips unchanged."""
    if bundle.adaptation is None:
        return list(features)
    speech = [*features, *heard]
    adapted = speaker_adapted(
        speech, ["partner"] * len(speech), bundle.norm, bundle.adaptation, bundle.spec.hop_s
    )
    return adapted[: len(features)]


def check_outputs(bundle: Bundle, features: list[np.ndarray], expected: np.ndarray) -> None:
    """The bundle runs on the clips (as device_view gives them), its outputs are finite, within RANGE_MARGIN
    of 0..3 and equal to `expected` (the fitted head's); else BundleError."""
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


def current_bundle(model: Bundle, out: Path) -> Bundle:
    """The bundle the wearer is using now: the one at `out` if it is valid and derives from the same trained
    model, else `model` itself."""
    try:
        current = load_bundle(out) if out.exists() else model
    except BundleError:
        return model
    return current if current.base_version == model.base_version else model


def personalize(
    model: str | os.PathLike,
    labels_csv: str | os.PathLike | None,
    out: str | os.PathLike,
    unlabeled: str | os.PathLike | None = None,
    method: Method = DEFAULT,
    sign: Callable[[bytes], bytes] | None = None,
) -> PersonalizeResult:
    """Personalize the bundle at `model` for the wearer's partner and put it at `out` (which may be `model`
    itself; a bundle already there is kept as `out`.prev), signed by `sign` if given (edge_emo/signing.signer):
    the input normalisation from the unlabeled feature log `unlabeled`, the head from the clips of
    `labels_csv` (either may be None, not both). With labels, the new bundle is written only if its held-out
    predictions on them beat the current bundle's (else `kept`, nothing written). Bad input raises
    PersonalizeError, BundleError or another ValueError/OSError, and nothing is written."""
    from edge_emo.runtime.bundle import write_bundle_with_head

    if labels_csv is None and unlabeled is None:
        raise PersonalizeError("give the wearer's labels.csv, an unlabeled feature log, or both")
    out = Path(out)
    bundle = load_bundle(model)
    weight0, bias0 = read_head(bundle)
    check_writable(out)
    check_replaceable(out)
    norm, seconds, frames = bundle.norm, 0.0, []
    if bundle.adaptation is not None:
        # The device estimates its partner's statistics as it listens: the bundle's normalisation stays
        # its prior, and the logged speech only makes the estimate the labeled clips are seen with.
        method = replace(method, norm=SpeakerNorm.global_)
        if labels_csv is None:
            raise PersonalizeError(
                f"{bundle.path} adapts to its partner's speech on its own while listening: --unlabeled "
                "alone changes nothing (add --labels: the logged speech then sets how they are heard)"
            )
    if unlabeled is not None:
        frames = load_unlabeled(unlabeled, bundle)
        norm = speaker_norm(bundle.norm, frames, method.norm)
        seconds = sum(len(f) for f in frames) * bundle.spec.hop_s
    adapted = with_norm(bundle, norm)
    if labels_csv is None:
        fitted = replace(method, head=HeadFit.shipped)
        new = write_bundle_with_head(
            adapted, weight0, bias0, out, provenance=_provenance(fitted, 0, seconds), sign=sign
        )
        return PersonalizeResult(new, fitted, None, None, 0, seconds, kept=False)

    clips = load_wearer_clips(labels_csv, bundle)
    current = current_bundle(bundle, out)
    now = current.predict_utterances(device_view(current, clips.features, frames))
    seen = device_view(adapted, clips.features, frames)
    x = adapted.embed_utterances(seen)
    fitted = method if unlabeled is not None else replace(method, norm=SpeakerNorm.global_)
    weight, bias, held_out = fit(fitted, x, clips.labels, weight0, bias0, bundle.cue_margin)
    if not accept(clips.labels, now, held_out, bundle.emotions, bundle.cue_margin) and unlabeled is not None:
        # the labels did not help: does the unlabeled normalisation alone (not fitted on them)?
        fitted = replace(method, head=HeadFit.shipped)
        weight, bias, held_out = fit(fitted, x, clips.labels, weight0, bias0, bundle.cue_margin)
    before = report(clips.labels, now, bundle.emotions)
    after = report(clips.labels, held_out, bundle.emotions)
    before["false_cues_on_neutral"] = false_cues(clips.labels, now)
    after["false_cues_on_neutral"] = false_cues(clips.labels, held_out)
    if not accept(clips.labels, now, held_out, bundle.emotions, bundle.cue_margin):
        return PersonalizeResult(current, fitted, before, after, len(clips.paths), seconds, kept=True)
    provenance = {
        **_provenance(fitted, len(clips.paths), seconds),
        "labels": str(Path(labels_csv).resolve()),
        "held_out_macro_f1": {"before": before["model"]["macro_f1"], "after": after["model"]["macro_f1"]},
        "held_out_mae": {"before": before["model"]["mae"], "after": after["model"]["mae"]},
    }
    expected = predict(x, weight, bias)
    new = write_bundle_with_head(
        adapted,
        weight,
        bias,
        out,
        provenance=provenance,
        check=lambda b: check_outputs(b, device_view(b, clips.features, frames), expected),
        sign=sign,
    )
    return PersonalizeResult(new, fitted, before, after, len(clips.paths), seconds, kept=False)


def _provenance(method: Method, clips: int, unlabeled_s: float) -> dict[str, Any]:
    return {
        "method": {"norm": method.norm.value, "head": method.head.value, "strength": method.strength},
        "clips": clips,
        "unlabeled_s": round(unlabeled_s, 1),
    }


def result_dict(result: PersonalizeResult) -> dict[str, Any]:
    """The result as JSON-ready values (`personalize --json`)."""
    m = result.method
    return {
        "bundle": str(result.bundle.path),
        "version": result.bundle.version,
        "kept": result.kept,
        "clips": result.n_clips,
        "unlabeled_s": round(result.unlabeled_s, 1),
        "method": {"norm": m.norm.value, "head": m.head.value, "strength": m.strength},
        "before": result.before,
        "after": result.after,
    }


# Measured (docs/PERSONALIZATION.md): 5-clip draws without a calm clip, which the guard cannot check for
# false cues, raised the partner's false cues by 28 points.
NO_NEUTRAL_CLIPS = (
    "warning: no labeled clip is calm or neutral, so the check could not count false cues; heads fitted "
    "without calm clips cued on many more of a partner's calm clips: label a few calm ones too"
)


def _false_cues(rep: dict[str, Any]) -> str:
    cues = rep.get("false_cues_on_neutral")
    return "-" if cues is None else f"{cues:.0%}"


def describe(result: PersonalizeResult, out: Path) -> str:
    """What personalize did, for a person: the held-out table, what changed, where it went."""
    lines = []
    if result.unlabeled_s:
        lines.append(f"input normalisation from {result.unlabeled_s:.0f} s of your partner's logged speech")
    if result.before is not None and result.after is not None:
        b, a, z = result.before["model"], result.after["model"], result.before["zeros"]
        lines += [
            f"{result.n_clips} labeled clips; held out: each clip predicted by a head fitted without it\n",
            "| metric | current | personalized (held out) | all-zeros |",
            "|---|---|---|---|",
            f"| macro-F1 | {b['macro_f1']:.3f} | {a['macro_f1']:.3f} | {z['macro_f1']:.3f} |",
            f"| 4-class accuracy | {b['acc4']:.3f} | {a['acc4']:.3f} | {z['acc4']:.3f} |",
            f"| MAE | {b['mae']:.3f} | {a['mae']:.3f} | {z['mae']:.3f} |",
            f"| false cues on neutral clips | {_false_cues(result.before)} | {_false_cues(result.after)} | 0% |",
            "",
        ]
        if result.before.get("false_cues_on_neutral") is None:
            lines.append(NO_NEUTRAL_CLIPS)
    else:
        lines.append("no labeled clips: nothing to check the adaptation against (add --labels to check it)")
    if result.kept:
        lines.append(
            f"not better on your held-out clips: kept the current bundle {result.bundle.path} "
            f"(version {result.bundle.version}); nothing written"
        )
        return "\n".join(lines)
    m = result.method
    head = {
        HeadFit.shipped: "head unchanged",
        HeadFit.ridge: f"head refitted toward the current one (strength {m.strength:g})",
        HeadFit.bias: f"head bias refitted (strength {m.strength:g} clips)",
        HeadFit.calib: f"each emotion's output rescaled and shifted (strength {m.strength:g} clips)",
    }[m.head]
    lines.append(f"{head}; normalisation {m.norm.value}")
    lines.append(
        f"wrote {result.bundle.path}, version {result.bundle.version}; undo: edge-emo personalize --rollback --out {out}"
    )
    return "\n".join(lines)


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


@dataclass(frozen=True)
class Rollback:
    # The bundle now at the path; None: it was removed (back to the model it was made from).
    restored: Bundle | None
    undone: str  # version of the personalized bundle that was undone
    from_version: str  # the model that bundle was personalized from

    def describe(self, path: Path, default: bool) -> str:
        """What happened, for the wearer; `default`: `path` is where `listen` looks for a personalized model."""
        if self.restored is not None:
            return (
                f"rolled back {path}: removed {self.undone}; the bundle it replaced is back "
                f"(version {self.restored.version})"
            )
        back = "listen now uses the shipped model" if default else f"{path} no longer exists"
        return f"rolled back: removed {path} ({self.undone}, made from {self.from_version}); {back}"


def rollback(path: str | os.PathLike) -> Rollback:
    """Undo the last personalization at `path`: put the bundle it replaced (path.prev) back, or, when it
    replaced none, remove it (so `listen` uses the model it was made from again). The undone bundle is
    deleted (`edge-emo personalize` made it and remakes it from the same labels), so a second rollback goes
    one step further back instead of toggling. Only a personalized bundle is ever removed. An interrupted
    rollback (path missing, path.prev there) finishes by moving path.prev into place."""
    path = Path(path)
    prev = previous_path(path)
    if not path.exists() and prev.exists():
        load_bundle(prev)
        os.replace(prev, path)
        restored = load_bundle(path)
        return Rollback(restored, "(interrupted rollback)", restored.version)
    if not path.exists():
        raise PersonalizeError(f"{path} does not exist: nothing to roll back (the shipped model is in use)")
    restored = load_bundle(prev) if prev.exists() else None
    try:
        current = load_bundle(path)
    except BundleError as err:
        if restored is None:
            raise PersonalizeError(
                f"{err}; there is no bundle before it to roll back to: `edge-emo personalize` makes a new "
                f"one, or delete {path} (`rm -r`) to use the shipped model"
            ) from None
        current = None  # a damaged bundle with a valid one before it: the one before it comes back
    made = current.provenance.get("personalization") if current else {}
    if current is not None and (
        current.provenance.get("stage") != "personalized" or not isinstance(made, dict)
    ):
        raise PersonalizeError(
            f"{path} is not a personalized bundle and has no {prev.name}: nothing to roll back"
        )
    check_writable(path)
    aside = path.with_name(f"{path.name}.rollback-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    # A kill between these renames is finished by recover_bundle (runtime/bundle.py) at the next start.
    os.replace(path, aside)  # from here until the next line, path.prev is the valid bundle to roll back to
    if restored is not None:
        os.replace(prev, path)
        restored = load_bundle(path)
    shutil.rmtree(aside)
    fsync_dir(path.parent)
    undone = current.version if current else "a damaged bundle"
    return Rollback(restored, undone, str(made.get("from_version", "unknown")))

"""`edge-emo evaluate MODEL DIR`: score a model on any folder, labeled or not, as the device would show it.

- Labeled (labels.csv, CMU-MOSEI): every metric of edge_emo.metrics beside the all-zeros reference, and the
  same per corpus when the folder's `corpus` column names more than one.
- Unlabeled (manifest.csv, or a feature log of `edge-emo listen --log-features`): all of it is taken as
  ordinary speech, so every cue is a false one. Rates per clip and, for a bundle on audio, per utterance as
  the live detector cuts them: the files are streamed through the runtime's own `EmotionRecognizer` (its
  voice-activity detector, as `edge-emo listen --input FILE --fast` runs) and every utterance's final update
  counts. A feature log's segments already are the detector's utterances.

No torch here: a bundle is evaluated on the device path; a checkpoint's `predict` comes from
edge_emo/predictor.py (with the training extra).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_emo.data.clips import ClipSet
from edge_emo.data.labels import CorpusError
from edge_emo.metrics import (
    categories,
    class_names,
    cue_report,
    device_output,
    format_cue_report,
    format_report,
    report,
)


def check_output_path(path: Path) -> None:
    """Fail before any work when a file cannot be written there (its folder is missing)."""
    if not Path(path).parent.is_dir():
        raise ValueError(f"{path}: folder {Path(path).parent} does not exist")
    if Path(path).is_dir():
        raise ValueError(f"{path}: is a folder, not a file name")


def corpus_names(data_dir: Path | None, clips: ClipSet) -> list[str]:
    """The `corpus` column of each clip's row in DIR's labels.csv or manifest.csv; without that column (or
    without such a file: MOSEI, a feature log) every clip is of one corpus named after the folder."""
    fallback = data_dir.name if data_dir is not None else "mosei"
    for name in ("labels.csv", "manifest.csv"):
        path = data_dir / name if data_dir is not None else None
        if path is not None and path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            if rows and "corpus" in rows[0]:
                by_path = {r["path"]: (r["corpus"] or "").strip() or fallback for r in rows}
                return [by_path.get(n, fallback) for n in clips.names]
            break
    return [fallback] * len(clips)


def utterance_predictions(bundle, paths: Sequence[Path]) -> np.ndarray:
    """(U, E) final intensities of every utterance the live recognizer cuts from the files, each file a
    stream of its own, streamed as `edge-emo listen --input FILE --fast` does."""
    from edge_emo.progress import progress
    from edge_emo.runtime import listen as listening
    from edge_emo.runtime.audio_input import AudioFileSource
    from edge_emo.runtime.recognizer import EmotionRecognizer

    finals: list[np.ndarray] = []

    def keep(update, _summary) -> None:
        if update.final:
            finals.append(update.intensities.copy())

    for path in progress(list(paths), "utterances as the live detector cuts them"):
        with EmotionRecognizer(bundle) as recognizer, AudioFileSource(path, fast=True) as source:
            listening.run(recognizer, source, keep)
    return np.asarray(finals, dtype=np.float64).reshape(-1, len(bundle.emotions))


def write_predictions(
    path: Path,
    clips: ClipSet,
    corpora: Sequence[str],
    pred: np.ndarray,
    emotions: Sequence[str],
) -> None:
    """One row per clip: path, speaker, corpus, the six clipped outputs, the readout (and the truth category
    when labeled). Written under a temporary name and renamed: never half a file."""
    names = class_names(emotions)
    shown = device_output(pred)
    readout = categories(shown)
    truth = None if clips.labels is None else categories(clips.labels)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    labeled = truth is not None
    writer.writerow(["path", "speaker", "corpus", *emotions, "readout", *(["truth"] if labeled else [])])
    for i, (name, speaker) in enumerate(zip(clips.names, clips.speakers)):
        outputs = [f"{v:.4f}" for v in shown[i]]
        truth_cell = [names[truth[i]]] if labeled else []
        writer.writerow([name, speaker, corpora[i], *outputs, names[readout[i]], *truth_cell])
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(out.getvalue())
    os.replace(tmp, path)


def evaluate_folder(
    model: Path,
    clips: ClipSet,
    data_dir: Path | None,
    emotions: Sequence[str],
    predict: Callable[[list[np.ndarray]], np.ndarray],
    predictions: Path | None = None,
    per_speaker: bool = False,
) -> tuple[dict, str]:
    """The report of `model` on `clips` (JSON-ready) and its Markdown text. `per_speaker`: hand `predict`
    the clips' speakers, for a speaker-adapting model's estimates."""
    if clips.labels is not None and tuple(emotions) != tuple(clips.emotions):
        raise ValueError(
            f"{model} predicts {list(emotions)} but the corpus is labeled {list(clips.emotions)}"
        )
    corpora = corpus_names(data_dir, clips)
    speakers = {"speakers": clips.speakers} if per_speaker else {}
    pred = np.asarray(predict(clips.features, **speakers), dtype=np.float64)
    if predictions is not None:
        write_predictions(predictions, clips, corpora, pred, emotions)
    if clips.labels is not None:
        rep = report(clips.labels, pred, emotions, corpora)
        text = format_report(rep)
    else:
        rep, note = _unlabeled(model, clips, data_dir, emotions, pred)
        text = format_cue_report(rep) + f"\n\n{note}"
    rep["model_path"] = str(model)
    if predictions is not None:
        rep["predictions_csv"] = str(predictions)
        text += f"\n\nwrote every clip's outputs and readout to {predictions}"
    return rep, text


def _unlabeled(model: Path, clips: ClipSet, data_dir, emotions, pred) -> tuple[dict, str]:
    from edge_emo.features.log_format import is_feature_log

    if data_dir is not None and is_feature_log(data_dir):
        rep = cue_report(pred, emotions, pred)
        rep["utterance_note"] = (
            "a feature log's segments are the live detector's utterances: clips = utterances"
        )
    elif Path(model).is_dir() and data_dir is not None:
        from edge_emo.runtime.bundle import load_bundle

        paths = [data_dir / n for n in clips.names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise CorpusError(f"{missing[0]}: audio file not found (listed in {data_dir})")
        rep = cue_report(pred, emotions, utterance_predictions(load_bundle(model), paths))
        rep["utterance_note"] = (
            "utterances: every file streamed through the runtime's EmotionRecognizer with its default "
            "voice-activity detector (as `edge-emo listen --input FILE --fast`), final update of each"
        )
    else:
        rep = cue_report(pred, emotions)
        rep["utterance_note"] = (
            "clip level only: utterances as the live detector cuts them need an exported bundle "
            "(`edge-emo export`), which runs the device's recognizer"
        )
    return rep, rep["utterance_note"]


CUT_NOTES = {
    "speech": "clips cut to the speech the device's voice detector finds (as `listen` analyses them)",
    "whole": "whole clips, silence included",
}


def evaluate_model(
    model: Path,
    data_dir: Path | None,
    mosei: tuple[Path | None, Path | None],
    split: str,
    split_seed: int,
    cut: str,
    predictions: Path | None,
    speaker_estimate: bool,
    warn: Callable[[str], None],
) -> tuple[dict, str]:
    """`edge-emo evaluate`: the checkpoint or bundle `model` on the one corpus named (see `evaluate_folder`),
    warning when it scores speakers the model was trained on. Returns the report and its text."""
    from edge_emo.data.sources import load_corpora, one_corpus
    from edge_emo.data.splits import trained_on, trained_on_warning
    from edge_emo.predictor import load_predictor

    if predictions is not None:
        check_output_path(predictions)
    spec, emotions, predict, provenance, adapts = load_predictor(model)
    dirs = [data_dir] if data_dir else []
    clips = one_corpus(load_corpora(dirs, *mosei, spec, split, split_seed, cut))
    seen = trained_on(provenance, clips.speakers)
    if seen:
        warn(trained_on_warning(seen, clips.speakers))
    per_speaker = adapts and speaker_estimate
    rep, text = evaluate_folder(model, clips, data_dir, emotions, predict, predictions, per_speaker)
    rep["cut"] = cut
    if adapts:
        rep["speaker_estimate"] = per_speaker
        text += "\n\n" + (
            "each speaker's clips standardised by the estimate from all of them (unknown speakers: each clip)"
            if per_speaker
            else "every clip standardised by the model's prior statistics (a stranger's first words)"
        )
    return rep, f"{text}\n\n{CUT_NOTES[cut]}"

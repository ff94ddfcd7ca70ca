"""A corpus on disk -> a `ClipSet` of raw feature frames, cached and reused while the audio is unchanged.

A DATA_DIR is one of:
- a folder with `labels.csv` (labeled audio),
- a folder with `manifest.csv` (unlabeled audio),
- a folder with `CMU_MOSEI_COVAREP.csd` and `CMU_MOSEI_Labels.csd` (precomputed COVAREP frames),
- a feature log of `edge-emo listen --log-features` (`features-NNNNNNNN.npz` shards; unlabeled frames).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict
from enum import Enum
from pathlib import Path

import numpy as np

from edge_emo.data.clips import ClipSet
from edge_emo.data.gain import Gain, gained_extract, hear
from edge_emo.data.labels import ClipRecord, CorpusError, read_labels, read_manifest
from edge_emo.data.splits import Split
from edge_emo.features import FeatureSpec, extract, load_audio
from edge_emo.features.speech import DEFAULT_VAD, DETECTOR_VERSION, Vad, utterance_spans
from edge_emo.progress import progress

# Peak amplitude (full scale 1.0) below which a clip is treated as silence, not speech.
SILENCE_PEAK = 1e-4
CACHE_FORMAT = 2
# Clips per cache shard: a shard is the unit of extraction (resumable) and of atomic writes.
SHARD_CLIPS = 256


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_EMO_CACHE", Path.home() / ".cache" / "edge-emo")) / "features"


class SpeechCut(str, Enum):
    """How much of each audio clip a model sees."""

    whole = "whole"  # every frame of the clip (what `edge-emo evaluate` scored before the speech detector)
    speech = "speech"  # from the first to the last frame the device's voice detector calls speech
    utterances = "utterances"  # each utterance the device's detector cuts, as a clip of its own


# Utterances shorter than this are not worth a training example or a false-cue count: the live view shows
# nothing for them either (its first update comes after one model chunk).
MIN_UTTERANCE_S = 0.3


def load_corpus(
    data_dir: str | Path,
    spec: FeatureSpec,
    split: Split | str = Split.all,
    seed: int = 0,
    workers: int = 0,
    gain: Gain | None = None,
    cut: SpeechCut | str = SpeechCut.whole,
    cut_at_gain: bool = False,
) -> ClipSet:
    """Load a DATA_DIR as a ClipSet of `spec` features. `split` applies to labeled corpora; unlabeled audio
    and feature logs are never evaluated on, so they are always used whole. With `gain`, audio clips are
    heard through that microphone gain (cached apart from the plain features). `cut` keeps the speech of
    audio clips as the device's voice detector finds it in the plain audio (`SpeechCut`); feature logs
    already hold only the detector's utterances and CMU-MOSEI only frames, so it does not apply to them.
    With `cut_at_gain` (cut `speech` and a `gain` only) each clip is cut as the detector hears it through
    that gain, as the device would; a clip in which it hears no speech at that gain is the plain clip, so
    that no label is lost and nothing the device would never hear is learned."""
    data_dir = Path(data_dir)
    cut = SpeechCut(cut)
    if cut_at_gain and (gain is None or cut is not SpeechCut.speech):
        raise ValueError("cutting at a gain needs a gain and the 'speech' cut")
    if not data_dir.exists():
        raise CorpusError(f"{data_dir} does not exist")
    if not data_dir.is_dir():
        raise CorpusError(f"{data_dir}: not a folder")
    for table, read in (("labels.csv", read_labels), ("manifest.csv", read_manifest)):
        if (data_dir / table).is_file():
            records = read(data_dir / table)
            clips = _audio_corpus(data_dir, records, spec, workers, gain)
            if cut is not SpeechCut.whole:
                segments = speech_segments_of(data_dir, records, spec, workers)
                if cut_at_gain:
                    clips, segments = _as_heard(data_dir, records, spec, workers, gain, clips, segments)
                clips = cut_speech(clips, segments, cut, spec.hop_s)
            return clips.split(split, seed) if table == "labels.csv" else clips
    if gain is not None:
        raise CorpusError(f"{data_dir}: a gain needs audio (labels.csv or manifest.csv)")
    from edge_emo.data.log_corpus import load_feature_log
    from edge_emo.data.mosei import find_mosei, load_mosei
    from edge_emo.features.log_format import is_feature_log

    if is_feature_log(data_dir):
        return load_feature_log(data_dir, spec)

    found = find_mosei(data_dir)
    if found:
        return load_mosei(*found, spec=spec).split(split, seed)
    raise CorpusError(
        f"{data_dir}: no labels.csv, manifest.csv or CMU-MOSEI .csd files, and no feature-log shards"
    )


def _audio_corpus(
    root: Path, records: list[ClipRecord], spec: FeatureSpec, workers: int, gain: Gain | None = None
) -> ClipSet:
    if spec.sample_rate is None:
        raise CorpusError(
            f"{root}: feature set '{spec.name}' is precomputed and cannot be extracted from audio"
        )
    names = [r.path.relative_to(root).as_posix() for r in records]
    if gain is None:
        name, key, compute = spec.name, spec.to_dict(), functools.partial(extract, spec=spec)
    else:
        name, key = f"{spec.name}-{gain.name}", {**spec.to_dict(), "gain": gain.key()}
        compute = functools.partial(gained_extract, spec=spec, gain=gain)
    features = cached_per_clip(root, records, name, key, compute, workers)
    labels = None
    if records[0].intensities is not None:
        labels = np.asarray([r.intensities for r in records], dtype=np.float32)
    return ClipSet(spec, features, [r.speaker for r in records], names, labels)


def _as_heard(
    root: Path,
    records: list[ClipRecord],
    spec: FeatureSpec,
    workers: int,
    gain: Gain,
    clips: ClipSet,
    plain_segments: list[np.ndarray],
) -> tuple[ClipSet, list[np.ndarray]]:
    """`clips` (heard through `gain`) with the segments the detector finds at that gain; where it finds none,
    the plain clip and its plain segments."""
    segments = speech_segments_of(root, records, spec, workers, gain=gain)
    unheard = [i for i, s in enumerate(segments) if not len(s)]
    if not unheard:
        return clips, segments
    plain = _audio_corpus(root, records, spec, workers)
    features = list(clips.features)
    for i in unheard:
        features[i], segments[i] = plain.features[i], plain_segments[i]
    return ClipSet(spec, features, clips.speakers, clips.names, clips.labels, clips.emotions), segments


def _segments(
    signal: np.ndarray, rate: int, source: str, vad: Vad, hop_s: float, gain: Gain | None = None
) -> np.ndarray:
    """(k, 2) float32 [start, end) frame indices of the utterances the device's detector finds in a clip
    (heard through `gain`, if given)."""
    if gain is not None:
        signal = hear(signal, source, gain)
    return np.asarray(utterance_spans(signal, rate, vad, hop_s), np.float32).reshape(-1, 2)


def speech_segments_of(
    root: Path,
    records: Sequence[ClipRecord],
    spec: FeatureSpec,
    workers: int = 0,
    vad: Vad = DEFAULT_VAD,
    gain: Gain | None = None,
) -> list[np.ndarray]:
    """Utterances of every clip of a corpus as (k, 2) frame spans (as heard through `gain`), cached like
    features."""
    key = {"vad": asdict(vad), "detector": DETECTOR_VERSION, "hop_s": spec.hop_s}
    key.update({"gain": gain.key()} if gain else {})
    compute = functools.partial(_segments, vad=vad, hop_s=spec.hop_s, gain=gain)
    name = "speech-segments" + (f"-{gain.name}" if gain else "")
    return cached_per_clip(root, records, name, key, compute, workers)


def cut_speech(clips: ClipSet, segments: Sequence[np.ndarray], cut: SpeechCut, hop_s: float) -> ClipSet:
    """The speech of every clip (`SpeechCut.speech`; a clip in which the detector finds none stays whole, so
    that no label is lost) or its utterances as clips of their own (`SpeechCut.utterances`, named
    `path#k`, each with its clip's labels; utterances under MIN_UTTERANCE_S are left out)."""
    features, speakers, names, rows = [], [], [], []
    for i, (f, seg) in enumerate(zip(clips.features, segments)):
        spans = [(int(a), int(b)) for a, b in seg]
        if cut is SpeechCut.speech:
            spans = [(spans[0][0], spans[-1][1])] if spans else [(0, len(f))]
        else:
            spans = [(a, b) for a, b in spans if (b - a) * hop_s >= MIN_UTTERANCE_S]
        for k, (a, b) in enumerate(spans):
            features.append(f[a : min(b, len(f))])
            speakers.append(clips.speakers[i])
            names.append(clips.names[i] if cut is SpeechCut.speech else f"{clips.names[i]}#{k}")
            rows.append(i)
    labels = None if clips.labels is None else clips.labels[rows]
    return ClipSet(clips.spec, features, speakers, names, labels, clips.emotions)


# compute(signal, sample_rate, source=...) -> one (n, d) array per clip: a module-level function or a partial
# of one, so that worker processes can receive it.
ClipFunction = Callable[..., np.ndarray]


def cached_per_clip(
    root: Path, records: Sequence[ClipRecord], name: str, key: object, compute: ClipFunction, workers: int = 0
) -> list[np.ndarray]:
    """`compute` of every clip's audio (frame-level features, functionals, ...), one array per clip, from the
    shard cache under `<cache>/<corpus>-<name>/`; missing or stale shards are computed first.

    A shard is valid while `key` (what is computed), openSMILE's version and its audio files are unchanged.
    Computation resumes where it stopped: every shard is written atomically once its clips are done. Clips
    are returned as views into memory-mapped shards, so a reader (e.g. one rank of a distributed run) pages
    in only the frames it touches."""
    for r in records:
        if not r.path.is_file():
            raise CorpusError(f"{r.path}: audio file not found (listed in {root})")
    folder = cache_dir() / f"{root.name}-{name}"
    groups = [records[i : i + SHARD_CLIPS] for i in range(0, len(records), SHARD_CLIPS)]
    shards = [folder / _shard_key(group, key) for group in groups]
    missing = [k for k, shard in enumerate(shards) if not _frames_file(shard).is_file()]
    if missing:
        paths = [r.path for k in missing for r in groups[k]]
        with closing(_computed(paths, compute, workers, f"{name} {root.name}")) as computed:
            for k in missing:
                _write_shard(shards[k], [next(computed) for _ in groups[k]])
    return [clip for shard in shards for clip in _read_shard(shard)]


def _computed(paths: Sequence[Path], compute: ClipFunction, workers: int, label: str) -> Iterator[np.ndarray]:
    """`compute` of the audio of `paths`, in order, as the worker processes finish them."""
    workers = workers or min(len(paths), os.cpu_count() or 1)
    jobs = [(p, compute) for p in paths]
    if workers <= 1:
        yield from progress((_compute_checked(j) for j in jobs), label, total=len(jobs), unit="clips")
        return
    with ProcessPoolExecutor(workers) as pool:
        computed = pool.map(_compute_checked, jobs, chunksize=8)
        yield from progress(computed, label, total=len(jobs), unit="clips")


def _compute_checked(job: tuple[Path, ClipFunction]) -> np.ndarray:
    path, compute = job
    signal, rate = load_audio(path)
    if float(np.max(np.abs(signal))) < SILENCE_PEAK:
        raise CorpusError(f"{path}: the clip is silent")
    return compute(signal, rate, source=str(path))


def _shard_key(records: Sequence[ClipRecord], key: object) -> str:
    """Changes whenever `key`, openSMILE or any audio file of the shard changes. Paths are resolved, so a
    corpus named by a relative path hits the same cache."""
    from edge_emo.features.smile import opensmile_version

    h = hashlib.sha256()
    h.update(json.dumps([CACHE_FORMAT, key, opensmile_version()]).encode())
    for r in records:
        st = r.path.stat()
        h.update(f"{r.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _frames_file(shard: Path) -> Path:
    return shard.with_name(shard.name + ".frames.npy")


def _offsets_file(shard: Path) -> Path:
    return shard.with_name(shard.name + ".offsets.npy")


def _write_shard(shard: Path, features: list[np.ndarray]) -> None:
    """Offsets first, frames last, each atomically: a shard counts as cached only once its frames file
    exists, so a crash never leaves a half shard that a later run would trust."""
    shard.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(f) for f in features])
    frames = np.concatenate(features).astype(np.float32)
    for path, array in ((_offsets_file(shard), offsets), (_frames_file(shard), frames)):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two runs may fill the same shard at once
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)


def _read_shard(shard: Path) -> list[np.ndarray]:
    offsets = np.load(_offsets_file(shard))
    frames = np.load(_frames_file(shard), mmap_mode="c")  # copy-on-write: callers may modify their copy
    return [frames[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

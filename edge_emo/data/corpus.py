"""A corpus on disk -> a `ClipSet` of raw feature frames, cached and reused while the audio is unchanged.

A DATA_DIR is one of:
- a folder with `labels.csv` (labeled audio),
- a folder with `manifest.csv` (unlabeled audio),
- a folder with `CMU_MOSEI_COVAREP.csd` and `CMU_MOSEI_Labels.csd` (precomputed COVAREP frames).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_emo.data.labels import EMOTIONS, ClipRecord, CorpusError, read_labels, read_manifest
from edge_emo.data.splits import Split, speaker_split
from edge_emo.features import FeatureSpec, extract, load_audio
from edge_emo.progress import progress

# Peak amplitude (full scale 1.0) below which a clip is treated as silence, not speech.
SILENCE_PEAK = 1e-4
CACHE_FORMAT = 2
# Clips per cache shard: a shard is the unit of extraction (resumable) and of atomic writes.
SHARD_CLIPS = 256


@dataclass
class ClipSet:
    """Raw (unnormalised) feature frames of a set of clips, with labels when the corpus has them."""

    spec: FeatureSpec
    features: list[np.ndarray]  # one (T_i, F) float32 array per clip
    speakers: list[str]
    names: list[str]
    labels: np.ndarray | None = None  # (N, 6) float32 intensities
    emotions: tuple[str, ...] = field(default=EMOTIONS)

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, indices: Sequence[int]) -> ClipSet:
        idx = [int(i) for i in indices]
        return ClipSet(
            self.spec,
            [self.features[i] for i in idx],
            [self.speakers[i] for i in idx],
            [self.names[i] for i in idx],
            None if self.labels is None else self.labels[idx],
            self.emotions,
        )

    def split(self, split: Split | str, seed: int = 0) -> ClipSet:
        return self.subset(speaker_split(self.speakers, split, seed))

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.features)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_EMO_CACHE", Path.home() / ".cache" / "edge-emo")) / "features"


def load_corpus(
    data_dir: str | Path, spec: FeatureSpec, split: Split | str = Split.all, seed: int = 0, workers: int = 0
) -> ClipSet:
    """Load a DATA_DIR as a ClipSet of `spec` features. `split` applies to labeled corpora; unlabeled audio
    is never evaluated on, so it is always used whole."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CorpusError(f"{data_dir}: not a folder")
    if (data_dir / "labels.csv").is_file():
        clips = _audio_corpus(data_dir, read_labels(data_dir / "labels.csv"), spec, workers)
        return clips.split(split, seed)
    if (data_dir / "manifest.csv").is_file():
        return _audio_corpus(data_dir, read_manifest(data_dir / "manifest.csv"), spec, workers)
    from edge_emo.data.mosei import find_mosei, load_mosei

    found = find_mosei(data_dir)
    if found:
        return load_mosei(*found, spec=spec).split(split, seed)
    raise CorpusError(f"{data_dir}: no labels.csv, manifest.csv or CMU-MOSEI .csd files")


def _audio_corpus(root: Path, records: list[ClipRecord], spec: FeatureSpec, workers: int) -> ClipSet:
    if spec.sample_rate is None:
        raise CorpusError(
            f"{root}: feature set '{spec.name}' is precomputed and cannot be extracted from audio"
        )
    for r in records:
        if not r.path.is_file():
            raise CorpusError(f"{r.path}: audio file not found (listed in {root})")
    names = [r.path.relative_to(root).as_posix() for r in records]
    features = _cached_features(root, records, spec, workers)
    labels = None
    if records[0].intensities is not None:
        labels = np.asarray([r.intensities for r in records], dtype=np.float32)
    return ClipSet(spec, features, [r.speaker for r in records], names, labels)


def extract_many(paths: Sequence[Path], spec: FeatureSpec, workers: int = 0, label: str = "features") -> list:
    """Extract features of many files in parallel processes, with a progress bar."""
    return list(_extracted(paths, spec, workers, label))


def _extracted(paths: Sequence[Path], spec: FeatureSpec, workers: int, label: str) -> Iterator[np.ndarray]:
    """Features of `paths`, in order, as the worker processes finish them."""
    workers = workers or min(len(paths), os.cpu_count() or 1)
    jobs = [(p, spec) for p in paths]
    if workers <= 1:
        yield from (_extract_checked(j) for j in progress(jobs, label))
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from progress(pool.map(_extract_checked, jobs, chunksize=8), label, total=len(jobs))


def _extract_checked(job: tuple[Path, FeatureSpec]) -> np.ndarray:
    path, spec = job
    signal, rate = load_audio(path)
    if float(np.max(np.abs(signal))) < SILENCE_PEAK:
        raise CorpusError(f"{path}: the clip is silent")
    return extract(signal, rate, spec)


def _cached_features(root: Path, records: list[ClipRecord], spec: FeatureSpec, workers: int) -> list:
    """Features of `records` from the shard cache; missing or stale shards are extracted first.

    Extraction resumes where it stopped: every shard is written atomically once its clips are done, and a
    shard whose audio is unchanged is never extracted again. Clips are returned as views into memory-mapped
    shards, so a reader (e.g. one rank of a distributed run) pages in only the frames it touches."""
    folder = cache_dir() / f"{root.name}-{spec.name}"
    groups = [records[i : i + SHARD_CLIPS] for i in range(0, len(records), SHARD_CLIPS)]
    shards = [folder / _shard_key(group, spec) for group in groups]
    missing = [k for k, shard in enumerate(shards) if not _frames_file(shard).is_file()]
    if missing:
        paths = [r.path for k in missing for r in groups[k]]
        with closing(_extracted(paths, spec, workers, f"features {root.name}")) as extracted:
            for k in missing:
                _write_shard(shards[k], [next(extracted) for _ in groups[k]])
    return [clip for shard in shards for clip in _read_shard(shard)]


def _shard_key(records: list[ClipRecord], spec: FeatureSpec) -> str:
    """Changes whenever the feature spec, openSMILE or any audio file of the shard changes."""
    import opensmile

    h = hashlib.sha256()
    h.update(json.dumps([CACHE_FORMAT, spec.to_dict(), opensmile.__version__]).encode())
    for r in records:
        st = r.path.stat()
        h.update(f"{r.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
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
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)


def _read_shard(shard: Path) -> list[np.ndarray]:
    offsets = np.load(_offsets_file(shard))
    frames = np.load(_frames_file(shard), mmap_mode="c")  # copy-on-write: callers may modify their copy
    return [frames[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

"""A corpus on disk -> a `ClipSet` of raw feature frames, cached and reused while the audio is unchanged.

A DATA_DIR is one of:
- a folder with `labels.csv` (labeled audio),
- a folder with `manifest.csv` (unlabeled audio),
- a folder with `CMU_MOSEI_COVAREP.csd` and `CMU_MOSEI_Labels.csd` (precomputed COVAREP frames).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_emo.data.labels import EMOTIONS, ClipRecord, CorpusError, read_labels, read_manifest
from edge_emo.data.splits import Split, speaker_split
from edge_emo.features import FeatureSpec, extract, load_audio
from edge_emo.progress import progress

# Peak amplitude (full scale 1.0) below which a clip is treated as silence, not speech.
SILENCE_PEAK = 1e-4
CACHE_FORMAT = 1


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
    names = [r.path.relative_to(root).as_posix() for r in records]
    extractor = functools.partial(extract, spec=spec)
    features = cached_per_clip(root, records, spec.name, spec.to_dict(), extractor, workers)
    labels = None
    if records[0].intensities is not None:
        labels = np.asarray([r.intensities for r in records], dtype=np.float32)
    return ClipSet(spec, features, [r.speaker for r in records], names, labels)


# compute(signal, sample_rate, source=...) -> one (n, d) array per clip; module-level or a partial of one, so
# that worker processes can receive it.
ClipFunction = Callable[..., np.ndarray]


def cached_per_clip(
    root: Path, records: Sequence[ClipRecord], name: str, key: object, compute: ClipFunction, workers: int = 0
) -> list[np.ndarray]:
    """`compute` of every clip's audio, one array per clip, cached under the feature cache while the audio
    files (paths, sizes, times), `key` (what is computed) and the openSMILE version stay the same."""
    for r in records:
        if not r.path.is_file():
            raise CorpusError(f"{r.path}: audio file not found (listed in {root})")
    cache = cache_dir() / f"{root.name}-{name}-{_cache_key(records, key)}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            frames, offsets = z["frames"], z["offsets"]
        return [frames[offsets[i] : offsets[i + 1]] for i in range(len(records))]
    arrays = compute_many([r.path for r in records], compute, workers, label=f"{name} {root.name}")
    _write_cache(cache, arrays)
    return arrays


def compute_many(
    paths: Sequence[Path], compute: ClipFunction, workers: int = 0, label: str = "features"
) -> list:
    """`compute` of many audio files in parallel processes, with a progress bar."""
    workers = workers or min(len(paths), os.cpu_count() or 1)
    jobs = [(p, compute) for p in paths]
    if workers <= 1:
        return [_compute_checked(j) for j in progress(jobs, label)]
    with ProcessPoolExecutor(workers) as pool:
        return list(progress(pool.map(_compute_checked, jobs, chunksize=8), label, total=len(jobs)))


def _compute_checked(job: tuple[Path, ClipFunction]) -> np.ndarray:
    path, compute = job
    signal, rate = load_audio(path)
    if float(np.max(np.abs(signal))) < SILENCE_PEAK:
        raise CorpusError(f"{path}: the clip is silent")
    return compute(signal, rate, source=str(path))


def _cache_key(records: Sequence[ClipRecord], key: object) -> str:
    import opensmile

    h = hashlib.sha256()
    h.update(json.dumps([CACHE_FORMAT, key, opensmile.__version__]).encode())
    for r in records:
        st = r.path.stat()  # the resolved path: a corpus named by a relative path hits the same cache
        h.update(f"{r.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _write_cache(path: Path, arrays: list[np.ndarray]) -> None:
    """Write atomically: a crash leaves no half-written cache that a later run would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=np.concatenate(arrays).astype(np.float32), offsets=offsets)
    os.replace(tmp, path)

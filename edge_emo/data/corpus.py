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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_emo.data.gain import Gain, gained_extract
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
    data_dir: str | Path,
    spec: FeatureSpec,
    split: Split | str = Split.all,
    seed: int = 0,
    workers: int = 0,
    gain: Gain | None = None,
) -> ClipSet:
    """Load a DATA_DIR as a ClipSet of `spec` features. `split` applies to labeled corpora; unlabeled audio
    and feature logs are never evaluated on, so they are always used whole. With `gain`, audio clips are
    heard through that microphone gain (cached apart from the plain features)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CorpusError(f"{data_dir}: not a folder")
    if (data_dir / "labels.csv").is_file():
        clips = _audio_corpus(data_dir, read_labels(data_dir / "labels.csv"), spec, workers, gain)
        return clips.split(split, seed)
    if (data_dir / "manifest.csv").is_file():
        return _audio_corpus(data_dir, read_manifest(data_dir / "manifest.csv"), spec, workers, gain)
    if gain is not None:
        raise CorpusError(f"{data_dir}: a gain needs audio (labels.csv or manifest.csv)")
    from edge_emo.data.feature_log import load_feature_log
    from edge_emo.data.mosei import find_mosei, load_mosei
    from edge_emo.features.feature_log import is_feature_log

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
        name, key = f"{spec.name}-{gain.name}", {**spec.to_dict(), "gain": asdict(gain)}
        compute = functools.partial(gained_extract, spec=spec, gain=gain)
    features = cached_per_clip(root, records, name, key, compute, workers)
    labels = None
    if records[0].intensities is not None:
        labels = np.asarray([r.intensities for r in records], dtype=np.float32)
    return ClipSet(spec, features, [r.speaker for r in records], names, labels)


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
        yield from (_compute_checked(j) for j in progress(jobs, label))
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from progress(pool.map(_compute_checked, jobs, chunksize=8), label, total=len(jobs))


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
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)


def _read_shard(shard: Path) -> list[np.ndarray]:
    offsets = np.load(_offsets_file(shard))
    frames = np.load(_frames_file(shard), mmap_mode="c")  # copy-on-write: callers may modify their copy
    return [frames[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

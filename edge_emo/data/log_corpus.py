"""A feature log (`edge-emo listen --log-features DIR`) as a corpus: every logged speech segment is an
unlabeled clip of raw frames, as an audio corpus gives them. Format: edge_emo/features/log_format.py."""

from __future__ import annotations

from pathlib import Path

from edge_emo.data.clips import ClipSet
from edge_emo.data.labels import CorpusError
from edge_emo.features import FeatureSpec
from edge_emo.features.log_format import FeatureLogError, read_shard, shard_paths


def _describe(spec: FeatureSpec) -> str:
    return f"'{spec.name}' ({spec.dim} values, hop {spec.hop_s * 1000:g} ms, {spec.sample_rate} Hz)"


def log_spec(folder: Path) -> FeatureSpec | None:
    """The feature spec of a feature-log folder's newest shard; None if `folder` is no feature log."""
    folder = Path(folder)
    shards = shard_paths(folder) if folder.is_dir() else []
    return read_shard(shards[-1]).spec if shards else None


def load_feature_log(folder: Path, spec: FeatureSpec) -> ClipSet:
    """All segments of all shards of `folder`, oldest first, checked against `spec` (the features of the
    other corpora of the run): a log of other features is a `FeatureLogError` naming the folder."""
    folder = Path(folder)
    shards = shard_paths(folder)
    if not shards:
        raise CorpusError(f"{folder}: no feature-log shards (features-NNNNNNNN.npz)")
    features, speakers, names = [], [], []
    for path in shards:
        shard = read_shard(path)
        if shard.spec != spec:
            raise FeatureLogError(
                f"{folder}: a feature log of {_describe(shard.spec)} ({path.name}) cannot be used with "
                f"{_describe(spec)} features"
            )
        for i, (segment, frames) in enumerate(zip(shard.header["segments"], shard.segments)):
            features.append(frames)
            speakers.append(f"{shard.header['session']}/{segment['stream']}")  # one stream: one wearer's day
            names.append(f"{path.name}#{i}")
    return ClipSet(spec, features, speakers, names)

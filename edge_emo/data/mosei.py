"""CMU-MOSEI computational sequences (.csd, HDF5): COVAREP frames + emotion labels.

Layout (see the CMU-MultimodalSDK): one top-level group (the root name), `<root>/data/<video>/features`
[n, d] and `<root>/data/<video>/intervals` [n, 2] in seconds, optional `<root>/metadata/<key>`.
A clip is one labeled segment: the COVAREP rows of its video whose start time lies inside the segment.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_emo.data.clips import ClipSet
from edge_emo.data.labels import CorpusError
from edge_emo.features import FeatureSpec

log = logging.getLogger(__name__)

COVAREP_FILE = "CMU_MOSEI_COVAREP.csd"
LABELS_FILE = "CMU_MOSEI_Labels.csd"
# Columns of the label features: sentiment, then the six emotions in our order.
EMOTION_LABEL_COLUMNS = slice(1, 7)
COVAREP_COLUMNS: tuple[str, ...] = (
    "F0", "VUV", "NAQ", "QOQ", "H1H2", "PSP", "MDQ", "peakSlope", "Rd", "Rd_conf", "creak",
    *(f"MCEP_{i}" for i in range(25)), *(f"HMPDM_{i}" for i in range(25)), *(f"HMPDD_{i}" for i in range(13)),
)  # fmt: skip


def find_mosei(data_dir: Path) -> tuple[Path, Path] | None:
    covarep, labels = data_dir / COVAREP_FILE, data_dir / LABELS_FILE
    return (covarep, labels) if covarep.is_file() and labels.is_file() else None


def covarep_spec(hop_s: float = 0.01) -> FeatureSpec:
    return FeatureSpec("covarep", COVAREP_COLUMNS, hop_s=hop_s, sample_rate=None)


def _open_root(path: Path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CorpusError(f"{path}: not a readable HDF5 .csd file ({e})") from e
    keys = list(f.keys())
    if len(keys) != 1 or "data" not in f[keys[0]]:
        f.close()
        raise CorpusError(f"{path}: expected one top-level group holding 'data', found {keys}")
    return f, f[keys[0]]["data"]


def load_mosei(covarep_path: Path, labels_path: Path, spec: FeatureSpec | None = None) -> ClipSet:
    """Read the COVAREP and label sequences into labeled clips. Segments with no COVAREP rows are dropped
    and counted in the log. `spec`, when given, must be the COVAREP spec."""
    fc, cdata = _open_root(covarep_path)
    fl, ldata = _open_root(labels_path)
    with fc, fl:
        hops = []
        features, labels, videos, names = [], [], [], []
        dropped = 0
        for vid in sorted(ldata.keys()):
            seg_labels = np.asarray(ldata[vid]["features"], dtype=np.float32)
            seg_times = np.asarray(ldata[vid]["intervals"], dtype=np.float64)
            if seg_labels.ndim != 2 or seg_labels.shape[1] < 7 or len(seg_labels) != len(seg_times):
                raise CorpusError(
                    f"{labels_path}: video {vid}: labels must be [n, 7] with matching intervals"
                )
            if vid not in cdata:
                dropped += len(seg_labels)
                continue
            frames = np.asarray(cdata[vid]["features"], dtype=np.float32)
            times = np.asarray(cdata[vid]["intervals"], dtype=np.float64)
            if frames.ndim != 2 or frames.shape[1] != len(COVAREP_COLUMNS) or len(frames) != len(times):
                raise CorpusError(
                    f"{covarep_path}: video {vid}: features must be [n, {len(COVAREP_COLUMNS)}] with matching "
                    f"intervals, got {frames.shape} and {times.shape}"
                )
            if len(times) > 1:
                hops.append(float(np.median(np.diff(times[:, 0]))))
            for k, (start, end) in enumerate(seg_times):
                inside = (times[:, 0] >= start) & (times[:, 0] < end)
                if not inside.any():
                    dropped += 1
                    continue
                features.append(frames[inside])
                labels.append(np.clip(seg_labels[k, EMOTION_LABEL_COLUMNS], 0.0, 3.0))
                videos.append(vid)
                names.append(f"{vid}[{start:.2f}-{end:.2f}]")
    if dropped:
        log.warning("CMU-MOSEI: dropped %d labeled segments with no COVAREP frames", dropped)
    if not features:
        raise CorpusError(f"{labels_path}: no labeled segment has COVAREP frames")
    found = covarep_spec(round(float(np.median(hops)), 4) if hops else 0.01)
    if spec is not None:
        spec.check_compatible(found, "the requested feature set")
    return ClipSet(found, features, videos, names, np.stack(labels))

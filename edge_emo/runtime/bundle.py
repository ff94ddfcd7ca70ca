"""The exported model bundle: what the device runs, and the one source of truth about the model.

A bundle is a directory `NAME.bundle/` holding

- `model.onnx`: the streaming GRU (see edge_emo/export/graph.py). Inputs `features` (1, T, F) standardised frames with
  T dynamic and `state` (L, 1, H); outputs `intensities` (1, T, E) per-frame head outputs, `state_out`
  (L, 1, H) and `hidden_sum` (1, H), the sum of the top layer's hidden vectors over the chunk. The head is
  fp32 with initializers `head.weight` (H, E) and `head.bias` (E,): `x @ head.weight + head.bias`.
- `manifest.json`: format version, model version, feature spec, normalisation statistics, emotion order,
  precision, state shape, chunk size, training provenance and the sha256 of model.onnx. Optionally `speaker_adaptation`:
  the model expects frames standardised by the speaker's own statistics, estimated while listening.
  Optionally `cue_margin`: every output was lowered by it after training (fewer false cues); a head fitted
  on the device keeps it (edge_emo/personalize/method.py).
- optionally more graphs of the same weights, listed in the manifest's `graphs` (name, file, precision,
  sha256, bytes; the first is model.onnx): an int8 export also carries `model-fp32-gru.onnx`, the fp32 model
  with onnxruntime's fused GRU op, which is faster than the int8 Scan graph on some CPUs. A loaded bundle
  runs one of them (`Bundle.graph`, model.onnx unless `with_graph` picks another; which one a board runs
  is chosen by measuring, edge_emo/runtime/graph_choice.py). Readers of bundles without `graphs` see one.

Normalisation happens here, in `BundleStream.run_chunk`, with the manifest's `NormStats`: the graph never
re-declares it. The utterance prediction is the mean of the per-frame intensities since the utterance
started (the head is linear, so this is the head of the mean hidden vector, as in training).

int8 graphs quantize each chunk's activations with a scale taken from the whole chunk, so results depend
(slightly) on how frames are grouped into chunks. Everything therefore runs chunks of `chunk_frames` frames
(the last chunk of an utterance may be shorter): offline evaluation and the live stream agree exactly.

This module never imports torch; `onnx` is imported only to rewrite a head (personalization): graphs are
checked with onnxruntime.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np

from edge_emo.emotions import MAX_INTENSITY
from edge_emo.features import FeatureSpec, NormStats
from edge_emo.features.normalization import SpeakerAdaptation, speaker_adapted
from edge_emo.files import (
    PRIVATE_FILE,
    PRIVATE_FOLDER,
    fsync_dir,
    leftover_pid,
    private_folder,
    sha256_file,
    sha256_hex,
    write_synced,
)
from edge_emo.signing import SIGNATURE, SignatureError, verify

FORMAT = "edge-emo-bundle"
FORMAT_VERSION = 1  # bump on any change a reader of version 1 would misread
MANIFEST = "manifest.json"
GRAPH = "model.onnx"
GRU_GRAPH = "model-fp32-gru.onnx"  # the fp32 graph with onnxruntime's fused GRU op
GRAPH_FILES = (GRAPH, GRU_GRAPH)  # the only names a manifest's graphs may have (no paths)
PRECISIONS = ("fp32", "int8")
HEAD_WEIGHT = "head.weight"
HEAD_BIAS = "head.bias"
INPUTS = ("features", "state")
OUTPUTS = ("intensities", "state_out", "hidden_sum")
REQUIRED = (
    "format",
    "format_version",
    "version",
    "precision",
    "feature_spec",
    "normalization",
    "emotions",
    "state_shape",
    "chunk_frames",
    "graph",
    "provenance",
    "manifest_sha256",
)
# Limits of what a manifest may say, so that a corrupt or hostile one is refused before it costs memory:
# the largest manifest exported (ComParE, 65 values of statistics and a long provenance) is about 20 kB;
# chunks are 80 ms of frames by default and a chunk of more than 10 s makes no streaming model; the
# recurrent state of the largest model we train is 2 x 256.
MAX_MANIFEST_BYTES = 1 << 20
MAX_CHUNK_FRAMES = 1000
MAX_STATE = (16, 4096)  # layers, hidden units


class BundleError(ValueError):
    """A path is not a usable edge-emo bundle: missing, modified, corrupted or of an unknown format."""


@dataclass(frozen=True)
class GraphEntry:
    """One graph of a bundle: all compute the same model; they differ in arithmetic, size and speed."""

    name: str  # "int8", "fp32" (model.onnx, named by its precision) or "fp32-gru"
    file: str
    precision: str
    bytes: int


def sha256_bytes(data: bytes) -> str:
    return sha256_hex(data)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field (catches edits by hand)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk. Create with `load_bundle`."""

    path: Path
    manifest: dict[str, Any]
    spec: FeatureSpec
    norm: NormStats
    emotions: tuple[str, ...]
    precision: str  # "fp32" or "int8"
    state_shape: tuple[int, int, int]  # (layers, 1, hidden)
    chunk_frames: int
    version: str
    provenance: dict[str, Any]
    # Present when the model expects frames standardised by the speaker's own statistics, which the device
    # estimates as it listens, starting from `norm` (features/normalization.py).
    adaptation: SpeakerAdaptation | None = None
    # What every output was lowered by after training (the head's bias carries it): a personalized head is
    # fitted to the labels lowered by it too, or it would undo the margin and cue more.
    cue_margin: float = 0.0
    graphs: tuple[GraphEntry, ...] = ()  # model.onnx first
    graph: str = ""  # the name of the graph this Bundle runs; "": model.onnx

    @property
    def graph_entry(self) -> GraphEntry:
        return next((g for g in self.graphs if g.name == self.graph), self.graphs[0])

    @property
    def graph_path(self) -> Path:
        return self.path / self.graph_entry.file

    def with_graph(self, name: str) -> Bundle:
        """The same bundle running its graph `name` (BundleError if it has none of that name, or if that graph
        does not fit the manifest). `load_bundle` checks model.onnx; another graph is checked here, when it is
        chosen: parsing the fp32 graph of a 2 x 512 network costs about 15 MB of peak memory, which a `listen`
        that runs the int8 graph never needs to pay."""
        names = [g.name for g in self.graphs]
        if name not in names:
            raise BundleError(f"{self.path} has no graph {name!r} (it has: {', '.join(names)})")
        chosen = replace(self, graph=name)
        if name != self.graphs[0].name:
            entry = chosen.graph_entry
            _check_graph(chosen.graph_path.read_bytes(), chosen, chosen.graph_path, entry.precision)
        return chosen

    @property
    def hidden(self) -> int:
        return self.state_shape[2]

    @property
    def chunk_s(self) -> float:
        """Audio per graph call (one live update by default), seconds."""
        return self.chunk_frames * self.spec.hop_s

    def short_version(self, limit: int) -> str:
        """The version in at most `limit` characters (e.g. a wire format's field), keeping what identifies
        the model: the graph hash at its end. The date goes first, then the start of the stage."""
        if len(self.version) <= limit:
            return self.version
        parts = self.version.split("-")
        if len(parts) == 4:  # stage-date-precision-hash (model_version)
            without_date = f"{parts[0]}-{parts[2]}-{parts[3]}"
            if len(without_date) <= limit:
                return without_date
        tail = self.version[-(limit // 2) :]
        return self.version[: limit - len(tail)] + tail

    @property
    def base_version(self) -> str:
        """The version of the trained (shipped) bundle this one derives from: its own unless personalized.
        A personalized head only fits the backbone it was fitted on."""
        return self.provenance.get("personalization", {}).get("base_version", self.version)

    def session(self, threads: int = 1):
        """A new onnxruntime session on the CPU with `threads` intra-op threads and one inter-op thread."""
        from edge_emo.runtime.session import ort_session

        return ort_session(self.graph_path, threads)

    def stream(self, session=None) -> BundleStream:
        """A stream over one utterance at a time (a new one-thread session unless `session` is given)."""
        return BundleStream(self, session)

    def predict_utterances(
        self, features_list: Sequence[np.ndarray], speakers: Sequence[str] | None = None
    ) -> np.ndarray:
        """Utterance intensities (N, E) of clips given as raw feature frames (T_i, F), as the live stream
        emits them at the end of each clip. A speaker-adapting bundle standardises each clip by its
        speaker's estimate when `speakers` is given (the device after hearing all of that speaker's clips),
        else by its prior (the device before it has heard anyone)."""
        return self._run_utterances(features_list, speakers)[0]

    def embed_utterances(
        self, features_list: Sequence[np.ndarray], speakers: Sequence[str] | None = None
    ) -> np.ndarray:
        """Utterance embeddings (N, H): the mean of the top layer's hidden vectors over each clip (speakers:
        as in predict_utterances)."""
        return self._run_utterances(features_list, speakers)[1]

    def _run_utterances(
        self, features_list: Sequence[np.ndarray], speakers: Sequence[str] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.adaptation is not None and speakers is not None:
            features_list = speaker_adapted(
                features_list, speakers, self.norm, self.adaptation, self.spec.hop_s
            )
        stream = self.stream()
        intensities = np.zeros((len(features_list), len(self.emotions)), dtype=np.float32)
        embeddings = np.zeros((len(features_list), self.hidden), dtype=np.float32)
        for i, frames in enumerate(features_list):
            frames = np.asarray(frames)
            if frames.ndim != 2 or len(frames) == 0 or frames.shape[1] != self.spec.dim:
                raise ValueError(
                    f"clip {i}: expected (frames >= 1, {self.spec.dim}) {self.spec.name} values, got {frames.shape}"
                )
            stream.reset()
            for start in range(0, len(frames), self.chunk_frames):
                stream.run_chunk(frames[start : start + self.chunk_frames])
            intensities[i] = stream.utterance_intensities()
            embeddings[i] = stream.utterance_embedding()
        return intensities, embeddings


class BundleStream:
    """The GRU state and the running utterance sums of one stream, silero-vad style.

    Feed raw feature frames with `run_chunk` (normalised here, with the bundle's statistics), `chunk_frames`
    at a time (a shorter last chunk is fine); read the utterance estimate at any time; `reset()` starts a new
    utterance (zero state, zero sums).
    """

    def __init__(self, bundle: Bundle, session=None):
        self.bundle = bundle
        self.session = session if session is not None else bundle.session()
        self.state = np.zeros(bundle.state_shape, dtype=np.float32)
        self.intensity_sum = np.zeros(len(bundle.emotions), dtype=np.float64)
        self.hidden_sum = np.zeros(bundle.hidden, dtype=np.float64)
        self.frames = 0  # frames since the utterance started
        self.norm = bundle.norm  # a speaker-adapting caller sets its estimate here between utterances

    def reset(self) -> None:
        self.state.fill(0.0)
        self.intensity_sum.fill(0.0)
        self.hidden_sum.fill(0.0)
        self.frames = 0

    def run_chunk(self, raw_frames: np.ndarray) -> np.ndarray:
        """Raw frames (T, F), T >= 1 -> per-frame intensities (T, E); carries the state and the sums."""
        raw_frames = np.asarray(raw_frames)
        dim = self.bundle.spec.dim
        if raw_frames.ndim != 2 or raw_frames.shape[1] != dim or len(raw_frames) == 0:
            raise ValueError(
                f"expected at least one frame of {dim} {self.bundle.spec.name} values, got {raw_frames.shape}"
            )
        x = self.norm.apply(raw_frames)[None]  # (1, T, F), one new array, no further copies
        intensities, self.state, hidden_sum = self.session.run(OUTPUTS, {"features": x, "state": self.state})
        self.intensity_sum += intensities[0].sum(0)
        self.hidden_sum += hidden_sum[0]
        self.frames += len(raw_frames)
        return intensities[0]

    def utterance_intensities(self) -> np.ndarray:
        """(E,) mean of the per-frame intensities since the utterance started (zeros before any frame)."""
        return (self.intensity_sum / max(self.frames, 1)).astype(np.float32)

    def utterance_embedding(self) -> np.ndarray:
        """(H,) mean of the top layer's hidden vectors since the utterance started."""
        return (self.hidden_sum / max(self.frames, 1)).astype(np.float32)


def _field(manifest: dict[str, Any], key: str, kind: type, where: Path):
    value = manifest[key]
    if not isinstance(value, kind):
        raise BundleError(f"{where}: manifest field '{key}' should be a {kind.__name__}, got {value!r:.60}")
    return value


def _count(value: object, where: Path, key: str) -> int:
    """A whole number of the manifest: 2.7 or "2" are refused, not silently turned into 2."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"{where}: manifest field '{key}' should be a whole number, got {value!r:.60}")
    return value


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle: format version, required fields, sha256 of the manifest and of model.onnx,
    and that the graph's inputs and outputs fit the manifest. Raises BundleError with a one-line reason."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise BundleError(f"{path} does not exist")
    if path.is_file():  # most often a checkpoint given where the device needs its export
        raise BundleError(
            f"{path} is a file, not a model bundle (a folder): make one from a checkpoint with "
            f"`edge-emo export {path} --out NAME.bundle`"
        )
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not an edge-emo bundle (no {MANIFEST})")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: {size} bytes, more than a manifest's {MAX_MANIFEST_BYTES}")
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw.decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{manifest_path}: unreadable manifest ({e})") from e
    except RecursionError:  # a document nested thousands deep
        raise BundleError(f"{manifest_path}: unreadable manifest (nested too deeply)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not an edge-emo bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {manifest.get('format_version')!r} is not one this edge-emo "
            f"reads ({FORMAT_VERSION}); re-export the model or update edge-emo"
        )
    try:
        verify(path, raw)  # only when a key is trusted (edge_emo/signing.py)
    except SignatureError as e:
        raise BundleError(str(e)) from None
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise BundleError(f"{manifest_path}: manifest lacks {', '.join(missing)}")
    if manifest["manifest_sha256"] != manifest_digest(manifest):
        raise BundleError(
            f"{manifest_path}: manifest sha256 mismatch: the manifest was modified after export"
        )

    graph = _field(manifest, "graph", dict, manifest_path)
    graph_path = path / GRAPH
    if graph.get("file") != GRAPH or not graph_path.is_file():
        raise BundleError(f"{path}: missing {GRAPH}")
    data = graph_path.read_bytes()
    digest = sha256_bytes(data)
    if digest != graph.get("sha256"):
        raise BundleError(
            f"{graph_path}: sha256 mismatch (manifest {str(graph.get('sha256'))[:12]}..., file {digest[:12]}...): "
            "the graph was modified or corrupted"
        )
    precision = _field(manifest, "precision", str, manifest_path)
    if precision not in PRECISIONS:
        raise BundleError(
            f"{manifest_path}: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
        )
    try:
        spec = FeatureSpec.from_dict(_field(manifest, "feature_spec", dict, manifest_path))
        norm = NormStats.from_dict(_field(manifest, "normalization", dict, manifest_path))
        emotions = tuple(str(e) for e in _field(manifest, "emotions", list, manifest_path))
        state_shape = tuple(
            _count(d, manifest_path, "state_shape")
            for d in _field(manifest, "state_shape", list, manifest_path)
        )
        chunk_frames = _count(manifest["chunk_frames"], manifest_path, "chunk_frames")
        adaptation = (
            SpeakerAdaptation.from_dict(_field(manifest, "speaker_adaptation", dict, manifest_path))
            if "speaker_adaptation" in manifest
            else None
        )
        cue_margin = float(manifest.get("cue_margin", 0.0))
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise BundleError(f"{manifest_path}: invalid manifest ({e})") from e
    if not 0.0 <= cue_margin < MAX_INTENSITY:
        raise BundleError(f"{manifest_path}: cue_margin {cue_margin:g} is outside [0, {MAX_INTENSITY:g})")
    if not 1 <= chunk_frames <= MAX_CHUNK_FRAMES:
        raise BundleError(f"{manifest_path}: chunk_frames {chunk_frames} is outside 1..{MAX_CHUNK_FRAMES}")
    if (
        len(state_shape) != 3
        or state_shape[1] != 1
        or not 1 <= state_shape[0] <= MAX_STATE[0]
        or not 1 <= state_shape[2] <= MAX_STATE[1]
    ):
        raise BundleError(
            f"{manifest_path}: state_shape {list(state_shape)} is not [layers 1..{MAX_STATE[0]}, 1, "
            f"hidden 1..{MAX_STATE[1]}]"
        )
    if norm.mean.shape != (spec.dim,):
        raise BundleError(
            f"{manifest_path}: normalisation has {norm.mean.shape[0]} values but the feature spec {spec.dim}"
        )
    bundle = Bundle(
        path=path,
        manifest=manifest,
        spec=spec,
        norm=norm,
        emotions=emotions,
        precision=precision,
        state_shape=state_shape,  # type: ignore[arg-type]
        chunk_frames=chunk_frames,
        version=str(manifest["version"]),
        provenance=_field(manifest, "provenance", dict, manifest_path),
        adaptation=adaptation,
        cue_margin=cue_margin,
    )
    _check_graph(data, bundle, graph_path, precision)
    graphs = _graph_entries(manifest, precision, len(data), path)
    return replace(bundle, graphs=graphs, graph=graphs[0].name)  # the other graphs are checked when chosen


def _graph_entries(manifest: dict[str, Any], precision: str, size: int, path: Path) -> tuple[GraphEntry, ...]:
    """The manifest's `graphs` (model.onnx first), each file present with its sha256; a bundle without the
    list has model.onnx alone."""
    primary = GraphEntry(precision, GRAPH, precision, size)
    if "graphs" not in manifest:
        return (primary,)
    where = path / MANIFEST
    listed = _field(manifest, "graphs", list, where)
    entries = []
    for item in listed:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "file")):
            raise BundleError(f"{where}: a graph of 'graphs' lacks its name or file: {item!r:.80}")
        name, file, graph_precision = item["name"], item["file"], item.get("precision")
        if file not in GRAPH_FILES or graph_precision not in PRECISIONS:
            raise BundleError(
                f"{where}: graph {name!r}: unknown file {file!r} or precision {graph_precision!r}"
            )
        if not (path / file).is_file():
            raise BundleError(f"{path}: missing {file}")
        digest, size = sha256_file(path / file)
        if digest != item.get("sha256"):
            raise BundleError(f"{path / file}: sha256 mismatch: the graph was modified or corrupted")
        entries.append(GraphEntry(name, file, graph_precision, size))
    names = [e.name for e in entries]
    if not entries or entries[0] != primary or len(set(names)) != len(names):
        raise BundleError(f"{where}: 'graphs' must list {GRAPH} ({precision}) first, each name once")
    return tuple(entries)


def graph_metadata(feature_set: str, emotions: Sequence[str], precision: str) -> dict[str, str]:
    """What the graph itself says about its inputs and outputs (sherpa-onnx style metadata_props), so a
    model.onnx on its own is self-describing; `load_bundle` checks that it agrees with the manifest."""
    return {
        "edge_emo.format": f"{FORMAT}/{FORMAT_VERSION}",
        "edge_emo.feature_set": feature_set,
        "edge_emo.emotions": ",".join(emotions),
        "edge_emo.precision": precision,
    }


def _check_graph(data: bytes, bundle: Bundle, where: Path, precision: str) -> None:
    """The graph's metadata and its input and output shapes must fit the manifest. Read by onnxruntime, the
    library that runs it, not by `onnx`: importing onnx costs a device about 12 MB of resident memory."""
    from edge_emo.runtime.session import ort_session

    try:
        session = ort_session(data, optimize=False, log_severity=4)  # only reading it
    except Exception as e:  # onnxruntime raises its own exception types for unparsable or invalid graphs
        raise BundleError(f"{where}: not an ONNX model onnxruntime can load ({e})") from e

    def dims(values) -> dict[str, list]:
        return {v.name: list(v.shape) for v in values}

    metadata = session.get_modelmeta().custom_metadata_map
    expected = graph_metadata(bundle.spec.name, bundle.emotions, precision)
    for key, value in expected.items():
        if metadata.get(key) != value:
            raise BundleError(
                f"{where}: graph says {key} = {metadata.get(key)!r} but the manifest implies {value!r}"
            )
    state_shape = list(bundle.state_shape)
    expected_in = {"features": [1, "T", bundle.spec.dim], "state": state_shape}
    expected_out = {
        "intensities": [1, "T", len(bundle.emotions)],
        "state_out": state_shape,
        "hidden_sum": [1, bundle.hidden],
    }
    got_in, got_out = dims(session.get_inputs()), dims(session.get_outputs())
    if got_in != expected_in or got_out != expected_out:
        raise BundleError(
            f"{where}: graph inputs {got_in} / outputs {got_out} do not fit the manifest "
            f"(expected {expected_in} / {expected_out})"
        )


BUNDLE_FILES = frozenset({MANIFEST, *GRAPH_FILES, SIGNATURE})


def is_bundle_folder(path: Path) -> bool:
    """True if `path` is a folder holding a manifest and nothing but bundle files: the only kind of thing
    edge-emo replaces or removes. A user's folder (or file) of the same name is never touched."""
    return _only_bundle_files(path, complete=True)


def _remove_bundle(path: Path) -> None:
    """Delete a bundle folder file by file (never rmtree: only names a bundle has are removed)."""
    for name in BUNDLE_FILES:
        (path / name).unlink(missing_ok=True)
    path.rmdir()


def check_replaceable(out_dir: Path) -> None:
    """BundleError unless writing a bundle at `out_dir` replaces nothing but edge-emo bundles (out_dir and
    its .prev); before any work, so a refused --out costs nothing."""
    for path in (out_dir, out_dir.with_name(out_dir.name + ".prev")):
        if (path.exists() or path.is_symlink()) and not is_bundle_folder(path):
            raise BundleError(
                f"{path} exists and is not an edge-emo bundle: refusing to replace it (choose another --out)"
            )


def write_bundle(
    out_dir: str | Path,
    graph: bytes,
    manifest: dict[str, Any],
    keep_previous: bool = True,
    check: Callable[[Bundle], None] | None = None,
    private: bool = False,
    sign: Callable[[bytes], bytes] | None = None,
    more_graphs: dict[str, bytes] | None = None,
) -> Bundle:
    """Write `graph` and `manifest` (without digests: they are filled in here) as a bundle at `out_dir`,
    atomically and durably, and return the verified bundle. A bundle already at `out_dir` is kept as
    `out_dir` + ".prev" (replacing an older .prev); anything at either name that is not an edge-emo bundle
    is refused (check_replaceable). `check`, if given, runs on the loaded new bundle before anything is
    replaced (raise to abandon the write). private: files 0600 in a 0700 folder (a personalized bundle).
    sign: manifest bytes -> the content of manifest.sig (edge_emo/signing.py), for a signed bundle.
    more_graphs: file name -> graph of the manifest's `graphs` besides model.onnx; an entry of `graphs`
    whose file is not given is left out (e.g. a manifest copied from a bundle, written with one graph).

    The protocol, crash-safe at every step (recover_bundle finishes or undoes what a kill interrupted):
    1. write NAME.tmp-PID: files fsynced, then the folder; load and `check` it (a .tmp is never trusted);
    2. rename it to NAME.new-PID (complete and validated), fsync the parent folder;
    3. remove the old NAME.prev, rename NAME to NAME.prev, fsync; 4. rename NAME.new-PID to NAME, fsync."""
    out_dir = Path(out_dir)
    digest = sha256_bytes(graph)
    manifest = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION}
    manifest["graph"] = {**manifest.get("graph", {}), "file": GRAPH, "sha256": digest}
    files = {GRAPH: graph, **(more_graphs or {})}
    if "graphs" in manifest:
        manifest["graphs"] = [
            {**g, "sha256": sha256_bytes(files[g["file"]]), "bytes": len(files[g["file"]])}
            for g in manifest["graphs"]
            if g.get("file") in files
        ]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    check_replaceable(out_dir)
    parent = out_dir.parent
    if private:
        private_folder(parent)
    else:
        parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}{TMP}{os.getpid()}")
    if tmp.exists():  # our own pid's: left by an earlier process that had this pid
        _remove_bundle(tmp)
    tmp.mkdir(mode=PRIVATE_FOLDER if private else 0o777)
    mode = PRIVATE_FILE if private else 0o666
    try:
        for name, data in files.items():
            write_synced(tmp / name, data, mode)
        text = (json.dumps(manifest, indent=1) + "\n").encode()
        write_synced(tmp / MANIFEST, text, mode)
        if sign is not None:
            write_synced(tmp / SIGNATURE, sign(text), mode)
        fsync_dir(tmp)
        written = load_bundle(tmp)  # never put an unreadable bundle in place
        for graph in written.graphs[1:]:  # load_bundle leaves these to their first use; a writer checks all
            written.with_graph(graph.name)
        if check is not None:
            check(written)
    except BaseException:
        _remove_bundle(tmp)
        raise
    new = out_dir.with_name(f"{out_dir.name}{NEW}{os.getpid()}")
    os.replace(tmp, new)
    fsync_dir(parent)
    _swap_in(new, out_dir, keep_previous)
    return load_bundle(out_dir)


TMP, NEW, ROLLBACK = ".tmp-", ".new-", ".rollback-"


def _swap_in(new: Path, out_dir: Path, keep_previous: bool = True) -> None:
    """Steps 3 and 4 of write_bundle: `new` (complete and validated) becomes `out_dir`."""
    parent = out_dir.parent
    if out_dir.exists():
        previous = out_dir.with_name(out_dir.name + ".prev")
        if keep_previous:
            if previous.exists():
                _remove_bundle(previous)
            os.replace(out_dir, previous)
        else:
            _remove_bundle(out_dir)
        fsync_dir(parent)
    os.replace(new, out_dir)
    fsync_dir(parent)


def recover_bundle(out_dir: str | Path) -> list[str]:
    """Finish what a killed write_bundle (or rollback) left at `out_dir`, and say so (one line each): a
    validated NAME.new-PID is swapped in as write_bundle would have; NAME.tmp-PID (never validated) is
    removed; an interrupted rollback is completed. Only leftovers of processes that no longer run, and only
    folders holding bundle files, are touched."""
    out_dir = Path(out_dir)
    previous = out_dir.with_name(out_dir.name + ".prev")
    parent = out_dir.parent
    said: list[str] = []
    if not parent.is_dir():
        return said

    def leftovers(marker: str) -> list[Path]:
        found = [
            p
            for p in parent.glob(f"{glob_escape(out_dir.name)}{marker}*")
            if leftover_pid(p.name, marker) is not None and _only_bundle_files(p, marker != TMP)
        ]
        return sorted(found, key=lambda p: p.stat().st_mtime)

    for tmp in leftovers(TMP):
        _remove_bundle(tmp)
        said.append(f"removed {tmp.name}, a bundle left unfinished by an interrupted run")
    for aside in leftovers(ROLLBACK):  # rollback: path -> aside, prev -> path, aside deleted (no toggling)
        if not out_dir.exists() and previous.exists():
            os.replace(previous, out_dir)
        _remove_bundle(aside)
        said.append(f"finished an interrupted rollback of {out_dir}")
    for new in leftovers(NEW):  # oldest first: the newest validated bundle ends up in place
        try:
            load_bundle(new)
        except BundleError as e:
            _remove_bundle(new)
            said.append(f"removed {new.name}, an unusable bundle left by an interrupted run ({e})")
            continue
        _swap_in(new, out_dir)
        said.append(
            f"finished an interrupted update of {out_dir}: it now holds the bundle that run validated "
            f"(the one it replaced is {previous.name})"
        )
    return said


def _only_bundle_files(path: Path, complete: bool) -> bool:
    """A folder of bundle files only (complete: with its manifest; else possibly half written)."""
    if path.is_symlink() or not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return names <= BUNDLE_FILES and (MANIFEST in names or not complete)


def model_version(provenance: dict[str, Any], precision: str, graph: bytes) -> str:
    """A readable, unique model version: stage, date, precision and the graph's content hash."""
    stage = str(provenance.get("stage") or "model")
    return f"{stage}-{time.strftime('%Y%m%d', time.gmtime())}-{precision}-{sha256_bytes(graph)[:10]}"


def write_bundle_with_head(
    bundle: Bundle,
    weight: np.ndarray,
    bias: np.ndarray,
    out_dir: str | Path,
    provenance: dict[str, Any] | None = None,
    check: Callable[[Bundle], None] | None = None,
    private: bool = True,
    sign: Callable[[bytes], bytes] | None = None,
) -> Bundle:
    """A copy of `bundle` with a new fp32 head (personalization): `weight` (H, E) and `bias` (E,) such that
    intensities = hidden @ weight + bias. Everything else is unchanged; the new bundle gets a new model
    version, hashes and, if given, `provenance` recorded as its "personalization". Written atomically at
    `out_dir` (which may be the bundle's own path: the old one is kept as .prev) after `check` (see
    write_bundle) accepts it."""
    h, e = bundle.hidden, len(bundle.emotions)
    weight = np.asarray(weight, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32)
    if weight.shape != (h, e) or bias.shape != (e,):
        raise ValueError(
            f"head must be weight ({h}, {e}) and bias ({e},), got {weight.shape} and {bias.shape}"
        )
    if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
        raise ValueError("head weights contain NaN or inf")
    # Every graph of the bundle carries the same fp32 head: all are rewritten, so any of them may run.
    rewritten = {g.file: _with_head(bundle.path / g.file, weight, bias) for g in bundle.graphs}
    graph = rewritten.pop(GRAPH)
    manifest = {k: v for k, v in bundle.manifest.items() if k != "manifest_sha256"}
    new_provenance = dict(bundle.provenance)
    new_provenance["personalization"] = {
        "from_version": bundle.version,
        "base_version": bundle.base_version,
        **(provenance or {}),
    }
    new_provenance["stage"] = "personalized"
    manifest["provenance"] = new_provenance
    # The normalisation may be the wearer's own (edge_emo.personalize.adapt): it is part of the model too.
    norm = json.dumps(manifest["normalization"], sort_keys=True).encode()
    manifest["version"] = model_version(new_provenance, bundle.precision, graph + norm)
    return write_bundle(
        out_dir, graph, manifest, check=check, private=private, sign=sign, more_graphs=rewritten
    )


def _with_head(path: Path, weight: np.ndarray, bias: np.ndarray) -> bytes:
    """The graph at `path` with its head initializers replaced."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(path.read_bytes())
    replaced = 0
    for i, init in enumerate(model.graph.initializer):
        if init.name in (HEAD_WEIGHT, HEAD_BIAS):
            new = weight if init.name == HEAD_WEIGHT else bias
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
            replaced += 1
    if replaced != 2:
        raise BundleError(f"{path}: graph has no fp32 head ({HEAD_WEIGHT}, {HEAD_BIAS}) to replace")
    return model.SerializeToString()

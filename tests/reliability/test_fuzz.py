"""Property-based fuzzing of the two parsers of files a user (or an attacker) can edit: a bundle's
manifest.json and a corpus's labels.csv. Whatever the content, the parser returns a valid result or raises
its one error type (BundleError / CorpusError, both ValueErrors) with a one-line message; never another
exception, never a hang."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_emo.data.labels import CorpusError, read_labels, read_manifest
from edge_emo.emotions import EMOTIONS
from edge_emo.runtime.bundle import MANIFEST, BundleError, load_bundle, manifest_digest

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def bundle_dir(bundles, tmp_path_factory) -> Path:
    return bundles["int8"].path


def _load(folder: Path, manifest: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.bundle"
        shutil.copytree(folder, path)
        (path / MANIFEST).write_bytes(manifest)
        try:
            bundle = load_bundle(path)
        except BundleError as e:
            assert "\n" not in str(e) and str(e)
            return
        assert bundle.chunk_frames >= 1 and len(bundle.state_shape) == 3


@FUZZ
@given(
    field=st.sampled_from(
        [
            "chunk_frames",
            "state_shape",
            "feature_spec",
            "normalization",
            "emotions",
            "precision",
            "graph",
            "provenance",
            "version",
            "format_version",
        ]
    ),
    value=json_values,
)
def test_any_field_value_with_a_recomputed_digest_is_loaded_or_refused(bundle_dir, field, value):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest[field] = value
    manifest["manifest_sha256"] = manifest_digest(manifest)
    _load(bundle_dir, json.dumps(manifest).encode())


@FUZZ
@given(data=st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_any_bytes_as_a_manifest_are_refused(bundle_dir, data):
    _load(bundle_dir, data)


@FUZZ
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_refused(bundle_dir, depth, opener):
    closer = "]" if opener == "[" else "}"
    _load(bundle_dir, (opener * depth + "1" + closer * depth).encode())


cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
intensity = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 5).map(str), cells
)


def _parse(text: bytes, labeled: bool):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        path.write_bytes(text)
        try:
            return (read_labels if labeled else read_manifest)(path)
        except CorpusError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            return None


@FUZZ
@given(data=st.binary(max_size=3000), labeled=st.booleans())
def test_any_bytes_as_a_labels_file_are_read_or_refused(data, labeled):
    _parse(data, labeled)


@FUZZ
@given(
    rows=st.lists(st.tuples(cells, cells, st.lists(intensity, min_size=6, max_size=6)), max_size=8),
    header=st.permutations(["path", "speaker", "corpus", "emotion", *EMOTIONS]),
)
def test_rows_with_any_values_are_read_or_refused_by_line(rows, header):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for path, speaker, values in rows:
        by_name = {
            "path": path,
            "speaker": speaker,
            "corpus": "c",
            "emotion": "e",
            **dict(zip(EMOTIONS, values)),
        }
        writer.writerow([by_name[h] for h in header])
    records = _parse(text.getvalue().encode(), labeled=True)
    if records is None:
        return
    assert len(records) == len(rows)
    paths = [r.path for r in records]
    assert len(set(map(str, paths))) == len(paths)  # a clip is never counted twice
    for r in records:
        assert all(math.isfinite(v) and 0 <= v <= 3 for v in r.intensities)

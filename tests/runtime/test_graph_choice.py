"""Which graph a board runs: an int8 bundle carries two graphs of the same weights; the first `listen` (or
`edge-emo bench`) measures both, records the faster in the per-user choice file, later runs read it;
`--graph` forces one; a corrupt or foreign choice file is ignored with a note; old one-graph bundles load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_emo.files import sha256_file
from edge_emo.runtime import graph_choice
from edge_emo.runtime.bundle import (
    GRU_GRAPH,
    BundleError,
    load_bundle,
    manifest_digest,
    write_bundle,
    write_bundle_with_head,
)
from tests.cli import edge_emo


def copy_bundle(bundle, tmp_path):
    return shutil.copytree(bundle.path, tmp_path / bundle.path.name)


@pytest.fixture
def measured_choice(monkeypatch, tmp_path):
    """The choice as a user's machine makes it: no graph pinned (conftest pins int8), a fresh cache."""
    monkeypatch.delenv(graph_choice.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edge-emo" / graph_choice.FILE_NAME


def test_the_gru_op_graph_computes_what_the_fp32_graph_computes(bundles):
    """The int8 bundle's second graph is the fp32 weights in onnxruntime's fused GRU op: its outputs are the
    fp32 bundle's (fp32 tolerance), not the int8 graph's (the quantization error is tests/export's)."""
    bundle = bundles["int8"]
    clips = [np.random.default_rng(i).standard_normal((n, bundle.spec.dim)).astype(np.float32) for i, n in
             enumerate((37, 120, 10))]  # fmt: skip
    clips = [bundle.norm.mean + bundle.norm.std * c for c in clips]
    gru = bundle.with_graph("fp32-gru").predict_utterances(clips)
    assert np.abs(gru - bundles["fp32"].predict_utterances(clips)).max() <= 1e-4
    # Two computations, not one graph twice:
    assert np.abs(gru - bundle.predict_utterances(clips)).max() > 1e-6
    with pytest.raises(BundleError, match="has no graph 'fp64'"):
        bundle.with_graph("fp64")


def test_the_choice_is_measured_recorded_and_read_back(bundle, measured_choice):
    notes = []
    chosen, first = graph_choice.choose(bundle, None, notes.append)
    assert notes == [] and chosen.graph == first.graph in ("int8", "fp32-gru")
    assert set(first.us_per_frame) == {"int8", "fp32-gru"} and "just now" in first.reason
    document = json.loads(measured_choice.read_text())
    assert document["format"] == graph_choice.FORMAT
    (key, entry), = document["choices"].items()  # fmt: skip
    assert bundle.version in key and entry["graph"] == first.graph
    _, again = graph_choice.choose(bundle, None, notes.append)  # read, not measured again
    assert again.graph == first.graph and again.us_per_frame == first.us_per_frame
    assert "just now" not in again.reason and "measured" in again.reason
    # A measurement that favours the other graph (as on another CPU) is what later runs follow.
    other = "int8" if first.graph == "fp32-gru" else "fp32-gru"
    graph_choice.record(bundle, {first.graph: 50.0, other: 10.0}, notes.append)
    chosen, third = graph_choice.choose(bundle, None, notes.append)
    assert chosen.graph == third.graph == other and "5.0x as fast here as" in third.reason
    assert chosen.graph_path.name == ("model.onnx" if other == "int8" else GRU_GRAPH)
    assert notes == []


def test_a_measurement_whose_child_process_fails_is_made_in_this_one(bundle, measured_choice, monkeypatch):
    monkeypatch.setattr(graph_choice.sys, "executable", "/bin/false")  # the child exits with 1 at once
    notes: list[str] = []
    _, choice = graph_choice.choose(bundle, None, notes.append)
    assert notes == ["note: could not measure the graphs in a separate process; measuring them in this one"]
    assert "just now" in choice.reason and set(choice.us_per_frame) == {g.name for g in bundle.graphs}


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"format": "someone-else/3", "choices": {}}', b"[1, 2]", b"\xff\xfe"]
)
def test_a_corrupt_or_foreign_choice_file_is_ignored_with_a_note_and_kept(bundle, measured_choice, content):
    measured_choice.parent.mkdir(parents=True)
    measured_choice.write_bytes(content)
    notes = []
    chosen, choice = graph_choice.choose(bundle, None, notes.append)
    assert chosen.graph == choice.graph and "just now" in choice.reason
    assert len(notes) == 1 and notes[0].startswith("note: ignoring") and "\n" not in notes[0]
    assert measured_choice.read_bytes() == content  # not ours to overwrite


def test_a_forced_graph_and_an_old_one_graph_bundle(bundle, measured_choice, tmp_path):
    chosen, choice = graph_choice.choose(bundle, "fp32-gru", print)
    assert chosen.graph == "fp32-gru" and choice.reason == "forced with --graph"
    assert not measured_choice.exists()  # forcing measures nothing
    # A bundle written before bundles had more than one graph: no `graphs` in its manifest.
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("manifest_sha256", "graphs")}
    old = write_bundle(tmp_path / "old.bundle", bundle.graph_path.read_bytes(), manifest)
    assert sorted(p.name for p in old.path.iterdir()) == ["manifest.json", "model.onnx"]
    assert [g.name for g in load_bundle(old.path).graphs] == ["int8"]
    chosen, choice = graph_choice.choose(old, None, print)
    assert chosen.graph == "int8" and choice.reason == "the bundle's only graph"


def test_a_modified_second_graph_is_refused(bundle, tmp_path):
    path = copy_bundle(bundle, tmp_path)
    (path / GRU_GRAPH).write_bytes((path / GRU_GRAPH).read_bytes() + b"\0")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(path)
    (path / GRU_GRAPH).unlink()
    with pytest.raises(BundleError, match=f"missing {GRU_GRAPH}"):
        load_bundle(path)


def test_a_second_graph_that_does_not_fit_is_refused_when_chosen_not_at_load(bundle, tmp_path):
    """load_bundle hashes the second graph but parses only model.onnx (a `listen` running int8 never pays for
    the fp32 graph's parse); choosing the second graph checks it like load_bundle checks model.onnx."""
    path = copy_bundle(bundle, tmp_path)
    (path / GRU_GRAPH).write_bytes((path / "model.onnx").read_bytes())  # an int8 graph posing as fp32
    manifest = json.loads((path / "manifest.json").read_text())
    entry = next(g for g in manifest["graphs"] if g["file"] == GRU_GRAPH)
    entry["sha256"], entry["bytes"] = sha256_file(path / GRU_GRAPH)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_bundle(path)
    assert loaded.graph == "int8" and loaded.with_graph("int8").graph == "int8"
    with pytest.raises(
        BundleError, match="graph says edge_emo.precision = 'int8' but the manifest implies 'fp32'"
    ):
        loaded.with_graph("fp32-gru")
    # A writer checks every graph before anything is put in place: the same mismatch is refused there.
    manifest = {k: v for k, v in bundle.manifest.items() if k != "manifest_sha256"}
    int8 = bundle.graph_path.read_bytes()
    with pytest.raises(BundleError, match="the manifest implies 'fp32'"):
        write_bundle(tmp_path / "written.bundle", int8, manifest, more_graphs={GRU_GRAPH: int8})
    assert not (tmp_path / "written.bundle").exists()


def test_a_new_head_goes_into_every_graph(bundle, tmp_path):
    rng = np.random.default_rng(3)
    weight = (0.1 * rng.standard_normal((bundle.hidden, len(bundle.emotions)))).astype(np.float32)
    bias = np.arange(len(bundle.emotions), dtype=np.float32)
    new = write_bundle_with_head(
        load_bundle(copy_bundle(bundle, tmp_path)), weight, bias, tmp_path / "p.bundle"
    )
    clips = [bundle.norm.mean + np.zeros((30, bundle.spec.dim), np.float32)]
    for name in ("int8", "fp32-gru"):
        expected = bundle.with_graph(name).embed_utterances(clips) @ weight + bias
        assert np.abs(new.with_graph(name).predict_utterances(clips) - expected).max() <= 1e-4


def test_listen_names_the_graph_it_runs_and_why(bundle, measured_choice):
    args = ("listen", "--model", str(bundle.path), "--input", "sample", "--fast", "--json", "--duration", "1")
    env = {"XDG_CACHE_HOME": str(measured_choice.parents[1])}
    first = edge_emo(*args, env=env)
    assert first.returncode == 0, first.stderr
    header = first.stderr.splitlines()[0]
    assert header.startswith(f"model {bundle.version}: graph ") and "just now" in header
    assert measured_choice.is_file()
    again = edge_emo(*args, env=env)
    assert "measured" in again.stderr.splitlines()[0] and "just now" not in again.stderr
    forced = edge_emo(*args, "--graph", "fp32-gru", env=env)
    assert forced.returncode == 0 and "graph fp32-gru, forced with --graph" in forced.stderr
    unknown = edge_emo(*args, "--graph", "fp64", env=env)
    assert unknown.returncode == 2 and "has no graph 'fp64'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

"""The streaming graph: dynamic chunk length, chunked parity with torch, real int8 in the loops."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from edge_emo.train.checkpoint import load_checkpoint

FRAMES = 3000  # 30 s at a 10 ms hop
INT8_MAX_ABS = 0.05  # per frame and emotion, vs torch (measured about 0.0015 on this checkpoint)
INT8_MEAN_ABS = 0.005  # (measured about 0.0003)


def op_types(graph: onnx.GraphProto) -> Counter:
    """Op types of a graph and all its subgraphs (the Scan bodies)."""
    ops = Counter()
    for node in graph.node:
        ops[node.op_type] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops += op_types(attr.g)
    return ops


@pytest.fixture(scope="module")
def reference(checkpoint_path):
    """Standardised frames and torch's per-frame intensities and top-layer hidden states over all of them."""
    model = load_checkpoint(checkpoint_path).model.eval()
    x = np.random.default_rng(1).standard_normal((FRAMES, 25)).astype(np.float32)
    with torch.inference_mode():
        h = model.hidden_states(torch.from_numpy(x)[None])[0][0]
        return x, model.head(h).numpy(), h.numpy()


def run_chunked(bundle, x: np.ndarray, chunk: int):
    session = bundle.session()
    state = np.zeros(bundle.state_shape, np.float32)
    intensities, hidden_sums = [], []
    for start in range(0, len(x), chunk):
        y, state, hidden_sum = session.run(None, {"features": x[None, start : start + chunk], "state": state})
        intensities.append(y[0])
        hidden_sums.append(hidden_sum[0])
    return np.concatenate(intensities), np.stack(hidden_sums)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("frames", [1, 7, 10, 50, 500])
def test_any_chunk_length_runs(bundles, precision, frames):
    session = bundles[precision].session()
    x = np.random.default_rng(frames).standard_normal((1, frames, 25)).astype(np.float32)
    y, state, hidden_sum = session.run(None, {"features": x, "state": np.zeros((2, 1, 256), np.float32)})
    assert y.shape == (1, frames, 6)
    assert state.shape == (2, 1, 256)
    assert hidden_sum.shape == (1, 256)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("chunk", [1, 7, 10, 50])
def test_fp32_chunked_matches_torch_over_30_s(bundles, reference, chunk):
    x, torch_intensities, torch_hidden = reference
    intensities, hidden_sums = run_chunked(bundles["fp32"], x, chunk)
    assert np.abs(intensities - torch_intensities).max() <= 1e-4
    starts = range(0, FRAMES, chunk)
    expected_sums = np.stack([torch_hidden[s : s + chunk].sum(0) for s in starts])
    assert np.abs(hidden_sums - expected_sums).max() <= 1e-4 * chunk


def test_int8_stays_close_to_torch(bundles, reference):
    x, torch_intensities, _ = reference
    diff = np.abs(run_chunked(bundles["int8"], x, 10)[0] - torch_intensities)
    assert diff.max() <= INT8_MAX_ABS
    assert diff.mean() <= INT8_MEAN_ABS
    assert diff.max() > 0  # it really is a different (quantized) computation


def test_int8_graph_is_integer_inside_the_loops(bundles):
    model = onnx.load(bundles["int8"].graph_path)
    ops = op_types(model.graph)
    assert "GRU" not in ops
    assert ops["MatMulInteger"] == 4  # input projections of both layers, batched over the chunk
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scans) == 2
    for scan in scans:  # the recurrent product of each layer, once per frame
        body = op_types(scan.attribute[0].g)
        assert body["MatMulInteger"] == 1 and body["MatMul"] == 0
    float_matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert float_matmuls == ["head/MatMul"]  # the head stays fp32 for personalization
    weights = {i.name: i for i in model.graph.initializer}
    assert weights["head.weight"].data_type == onnx.TensorProto.FLOAT
    assert list(weights["head.weight"].dims) == [256, 6]


def test_fp32_graph_has_the_same_structure_without_integers(bundles):
    ops = op_types(onnx.load(bundles["fp32"].graph_path).graph)
    assert ops["Scan"] == 2 and ops["MatMul"] == 5
    assert "GRU" not in ops and "MatMulInteger" not in ops


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graphs_pass_the_checker_with_a_version_old_runtimes_load(bundles, precision):
    model = onnx.load(bundles[precision].graph_path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert {o.domain: o.version for o in model.opset_import} == {"": 17}


def test_int8_file_is_a_quarter_of_fp32(bundles):
    fp32, int8 = (bundles[p].graph_path.stat().st_size for p in ("fp32", "int8"))
    assert int8 < 0.3 * fp32


def test_int8_bundle_carries_the_gru_op_graph_of_the_same_weights(bundles, reference):
    """The fused fp32 GRU-op graph matches torch like the fp32 graph, and the int8 graph within the int8
    tolerance; it is fp32 with one GRU op per layer and no loop, and the int8 graph stays the small one."""
    x, torch_intensities, torch_hidden = reference
    bundle = bundles["int8"]
    assert [(g.name, g.file, g.precision) for g in bundle.graphs] == [
        ("int8", "model.onnx", "int8"),
        ("fp32-gru", "model-fp32-gru.onnx", "fp32"),
    ]
    gru = bundle.with_graph("fp32-gru")
    ops = op_types(onnx.load(gru.graph_path).graph)
    assert ops["GRU"] == 2 and "Scan" not in ops and "MatMulInteger" not in ops
    intensities, hidden_sums = run_chunked(gru, x, 10)
    assert np.abs(intensities - torch_intensities).max() <= 1e-4
    expected_sums = np.stack([torch_hidden[s : s + 10].sum(0) for s in range(0, FRAMES, 10)])
    assert np.abs(hidden_sums - expected_sums).max() <= 1e-3
    diff = np.abs(intensities - run_chunked(bundle, x, 10)[0])
    assert diff.max() <= INT8_MAX_ABS and diff.mean() <= INT8_MEAN_ABS
    sizes = {g.name: g.bytes for g in bundle.graphs}
    assert sizes["int8"] < 0.3 * sizes["fp32-gru"]
    listed = {g["name"]: g for g in bundle.manifest["graphs"]}
    assert listed["fp32-gru"]["check_max_abs_diff_vs_torch"] <= 1e-4
    assert listed["fp32-gru"]["bytes"] == gru.graph_path.stat().st_size
    assert [g.name for g in bundles["fp32"].graphs] == ["fp32"]  # an fp32 export has its one graph

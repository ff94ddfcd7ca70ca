"""The streaming graph, written out by hand with onnx.helper so that int8 can reach the recurrence.

onnxruntime never quantizes the ONNX `GRU` op, so the GRU is spelled out as plain MatMuls, per layer:

    gi = x @ W_ih^T + b                     one MatMul over all T frames of the chunk (batched)
    Scan over t:  gh = h @ W_hh^T + b_hn'   the only product inside the loop
                  r, z = sigmoid(gi_rz + gh_rz)
                  n = tanh(gi_n + r * gh_n)          (torch's reset gate multiplies W_hn h + b_hn)
                  h = n + z * (h - n)                (= (1 - z) n + z h)

with b = b_ih + [b_hr, b_hz, 0] and b_hn' = [0, 0, b_hn]: the same math as torch.nn.GRU (gate order r, z, n).
Layer 2's input projection runs batched over layer 1's outputs of the whole chunk, so the loops hold one
256x768 product per layer and frame. Dynamic int8 quantization turns every MatMul except the head into
DynamicQuantizeLinear + MatMulInteger (the head stays fp32 so personalization can rewrite it).

Inputs:  features (1, T, F) standardised frames, T dynamic; state (L, 1, H).
Outputs: intensities (1, T, E) per-frame head outputs; state_out (L, 1, H);
         hidden_sum (1, H): sum over the chunk's frames of the top layer's hidden vector.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_emo.runtime.bundle import HEAD_BIAS, HEAD_WEIGHT  # (H, E) and (E,): x @ head.weight + head.bias

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.16 loads IR <= 9; onnx 1.23 would otherwise stamp 14
HEAD_NODES = ("head/MatMul", "head/Add")  # kept fp32 by the quantizer


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def _const(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _scan_body(layer: int, w_hh_t: np.ndarray, b_hn: np.ndarray) -> onnx.GraphProto:
    """One GRU step: (h_prev (1, H), gi_rz_t (2H,), gi_n_t (H,)) -> (h (1, H), h again as the scan output)."""
    hidden = w_hh_t.shape[0]
    p = f"l{layer}/"
    nodes = [
        helper.make_node("MatMul", ["h_prev", f"gru.w_hh_t.{layer}"], [p + "gh_raw"], name=p + "MatMul_hh"),
        helper.make_node("Add", [p + "gh_raw", f"gru.b_hn.{layer}"], [p + "gh"], name=p + "Add_bhn"),
        helper.make_node(
            "Split", [p + "gh", "step_split_rz_n"], [p + "gh_rz", p + "gh_n"], axis=-1, name=p + "Split_gh"
        ),
        helper.make_node("Add", ["gi_rz_t", p + "gh_rz"], [p + "rz_pre"], name=p + "Add_rz"),
        helper.make_node("Sigmoid", [p + "rz_pre"], [p + "rz"], name=p + "Sigmoid_rz"),
        helper.make_node("Split", [p + "rz", "split_r_z"], [p + "r", p + "z"], axis=-1, name=p + "Split_rz"),
        helper.make_node("Mul", [p + "r", p + "gh_n"], [p + "r_gh_n"], name=p + "Mul_r"),
        helper.make_node("Add", ["gi_n_t", p + "r_gh_n"], [p + "n_pre"], name=p + "Add_n"),
        helper.make_node("Tanh", [p + "n_pre"], [p + "n"], name=p + "Tanh_n"),
        helper.make_node("Sub", ["h_prev", p + "n"], [p + "h_minus_n"], name=p + "Sub_h"),
        helper.make_node("Mul", [p + "z", p + "h_minus_n"], [p + "z_h_minus_n"], name=p + "Mul_z"),
        helper.make_node("Add", [p + "n", p + "z_h_minus_n"], ["h"], name=p + "Add_h"),
        helper.make_node("Identity", ["h"], ["h_seq"], name=p + "Identity_seq"),
    ]
    return helper.make_graph(
        nodes,
        f"gru_step_{layer}",
        inputs=[
            helper.make_tensor_value_info("h_prev", TensorProto.FLOAT, [1, hidden]),
            helper.make_tensor_value_info("gi_rz_t", TensorProto.FLOAT, [2 * hidden]),
            helper.make_tensor_value_info("gi_n_t", TensorProto.FLOAT, [hidden]),
        ],
        outputs=[
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, hidden]),
            helper.make_tensor_value_info("h_seq", TensorProto.FLOAT, [1, hidden]),
        ],
        # The recurrent weights live in the body: the quantizer only quantizes a subgraph's own initializers.
        initializer=[
            _init(f"gru.w_hh_t.{layer}", w_hh_t),
            _init(f"gru.b_hn.{layer}", b_hn),
            _const("step_split_rz_n", [2 * hidden, hidden]),  # not from the outer scope: the quantizer
            _const("split_r_z", [hidden, hidden]),  # infers shapes of the body on its own
        ],
    )


def gru_graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The fp32 streaming graph of an EmotionGRU from its state dict (numpy arrays, torch's names)."""
    layers = sum(1 for k in weights if k.startswith("gru.weight_ih_l"))
    hidden = weights["gru.weight_hh_l0"].shape[1]
    n_features = weights["gru.weight_ih_l0"].shape[1]
    n_emotions = weights["head.weight"].shape[0]
    h2 = 2 * hidden

    inits = [
        _init(HEAD_WEIGHT, weights["head.weight"].T),
        _init(HEAD_BIAS, weights["head.bias"]),
        _const("axis0", [0]),
        _const("split_rz_n", [2 * hidden, hidden]),
    ]
    nodes = [helper.make_node("Squeeze", ["features", "axis0"], ["x_l0"], name="Squeeze_features")]
    finals = []
    for layer in range(layers):
        w_ih, w_hh = weights[f"gru.weight_ih_l{layer}"], weights[f"gru.weight_hh_l{layer}"]
        b_ih, b_hh = weights[f"gru.bias_ih_l{layer}"], weights[f"gru.bias_hh_l{layer}"]
        b_in = b_ih + np.concatenate([b_hh[:h2], np.zeros(hidden, np.float32)])
        b_hn = np.concatenate([np.zeros(h2, np.float32), b_hh[h2:]])
        inits += [
            _init(f"gru.w_ih_t.{layer}", w_ih.T),
            _init(f"gru.b_in.{layer}", b_in),
            _const(f"state_index.{layer}", [layer]),
        ]
        p = f"l{layer}/"
        nodes += [
            helper.make_node(
                "MatMul", [f"x_l{layer}", f"gru.w_ih_t.{layer}"], [p + "gi_raw"], name=p + "MatMul_ih"
            ),
            helper.make_node("Add", [p + "gi_raw", f"gru.b_in.{layer}"], [p + "gi"], name=p + "Add_bin"),
            helper.make_node(
                "Gather", ["state", f"state_index.{layer}"], [p + "h0_3d"], axis=0, name=p + "Gather_state"
            ),
            helper.make_node("Squeeze", [p + "h0_3d", "axis0"], [p + "h0"], name=p + "Squeeze_state"),
            helper.make_node(
                "Split", [p + "gi", "split_rz_n"], [p + "gi_rz", p + "gi_n"], axis=-1, name=p + "Split_gi"
            ),
            helper.make_node(
                "Scan",
                [p + "h0", p + "gi_rz", p + "gi_n"],
                [p + "h_final", p + "h_seq"],
                num_scan_inputs=2,
                body=_scan_body(layer, w_hh.T, b_hn),
                name=p + "Scan",
            ),
            # (T, 1, H) -> (T, H): the next layer's input, or the top layer's output
            helper.make_node("Squeeze", [p + "h_seq", "axis1"], [f"x_l{layer + 1}"], name=p + "Squeeze_seq"),
            helper.make_node(
                "Unsqueeze", [p + "h_final", "axis0"], [p + "state_out"], name=p + "Unsqueeze_state"
            ),
        ]
        finals.append(p + "state_out")
    inits.append(_const("axis1", [1]))
    top = f"x_l{layers}"
    nodes += [
        helper.make_node("Concat", finals, ["state_out"], axis=0, name="Concat_state"),
        helper.make_node("MatMul", [top, HEAD_WEIGHT], ["head_raw"], name=HEAD_NODES[0]),
        helper.make_node("Add", ["head_raw", HEAD_BIAS], ["head_out"], name=HEAD_NODES[1]),
        helper.make_node("Unsqueeze", ["head_out", "axis0"], ["intensities"], name="Unsqueeze_intensities"),
        helper.make_node("ReduceSum", [top, "axis0"], ["hidden_sum"], keepdims=1, name="ReduceSum_hidden"),
    ]
    return _model(nodes, inits, "edge_emo_streaming_gru", layers, hidden, n_features, n_emotions)


def _model(
    nodes: list, inits: list, name: str, layers: int, hidden: int, n_features: int, n_emotions: int
) -> onnx.ModelProto:
    """The streaming graph's inputs and outputs around `nodes`, checked."""
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, "T", n_features]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [layers, 1, hidden]),
        ],
        outputs=[
            helper.make_tensor_value_info("intensities", TensorProto.FLOAT, [1, "T", n_emotions]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [layers, 1, hidden]),
            helper.make_tensor_value_info("hidden_sum", TensorProto.FLOAT, [1, hidden]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="edge-emo",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _gru_op_weights(w: np.ndarray) -> np.ndarray:
    """torch's gate order (r, z, n) along axis 0 -> ONNX's (z, r, h), with a leading direction axis."""
    r, z, n = np.split(w, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)[None]


def ensemble_members(weights: dict[str, np.ndarray], layers: int) -> int:
    """How many GRUs side by side the weights are (edge_emo/train/ensemble.py: every weight between two
    members' blocks exactly zero): the most blocks that leave nothing outside them; 1 for one network."""
    hidden = weights["gru.weight_hh_l0"].shape[1]
    for k in range(hidden // 8, 1, -1):  # members of at least 8 units
        if hidden % k:
            continue
        h = hidden // k
        inside = np.kron(np.eye(k, dtype=bool), np.ones((h, h), dtype=bool))
        recurrent = [weights[f"gru.weight_hh_l{i}"] for i in range(layers)]
        recurrent += [weights[f"gru.weight_ih_l{i}"] for i in range(1, layers)]
        if all(not np.any(gate[~inside]) for w in recurrent for gate in np.split(w, 3, axis=0)):
            return k
    return 1


def _member_rows(w: np.ndarray, member: int, h: int) -> np.ndarray:
    """Member `member`'s rows of each gate of a merged layer's (3 * K * H, ...) weight or bias."""
    return np.concatenate([gate[member * h : (member + 1) * h] for gate in np.split(w, 3, axis=0)])


def gru_op_graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The same model as `gru_graph` with onnxruntime's fused fp32 `GRU` op per layer (linear_before_reset=1
    is torch's reset gate): no integers, but on some CPUs faster than the int8 Scan graph, because the whole
    recurrence is one kernel call instead of a dozen nodes per frame. Same inputs, outputs and head
    initializers (personalization rewrites them the same way).

    An ensemble (K GRUs merged block-diagonally) gets K GRU ops per layer, one per member, each reading its
    own slice of the state: the same outputs without the zero blocks, so 1/K of the merged graph's
    recurrent weights and arithmetic (the Scan graph keeps one block-diagonal product per layer: there one
    call per frame is cheaper than K)."""
    layers = sum(1 for k in weights if k.startswith("gru.weight_ih_l"))
    hidden = weights["gru.weight_hh_l0"].shape[1]
    n_features = weights["gru.weight_ih_l0"].shape[1]
    n_emotions = weights["head.weight"].shape[0]
    members = ensemble_members(weights, layers)
    h = hidden // members
    inits = [
        _init(HEAD_WEIGHT, weights["head.weight"].T),
        _init(HEAD_BIAS, weights["head.bias"]),
        _const("axis0", [0]),
        _const("axis1", [1]),
        _const("axes_state", [0, 2]),  # (layer, unit) of the state (layers, 1, hidden)
    ]
    # features (1, T, F) -> (T, 1, F): ONNX's GRU takes (sequence, batch, input)
    nodes = [helper.make_node("Transpose", ["features"], ["x_l0"], perm=[1, 0, 2], name="Transpose_features")]
    finals = []
    for layer in range(layers):
        states = []
        for m in range(members):
            p = f"l{layer}/" if members == 1 else f"l{layer}/m{m}/"
            own = slice(m * h, (m + 1) * h)
            w_ih = _member_rows(weights[f"gru.weight_ih_l{layer}"], m, h)
            w_hh = _member_rows(weights[f"gru.weight_hh_l{layer}"], m, h)[:, own]
            if layer:
                w_ih = w_ih[:, own]  # the member's own units of the layer below
            bias = [_member_rows(weights[f"gru.bias_{kind}_l{layer}"], m, h) for kind in ("ih", "hh")]
            x = "x_l0" if layer == 0 else f"x_l{layer}" if members == 1 else f"x_l{layer}/m{m}"
            inits += [
                _init(p + "W", _gru_op_weights(w_ih)),
                _init(p + "R", _gru_op_weights(w_hh)),
                _init(p + "B", np.concatenate([_gru_op_weights(b)[0] for b in bias])[None]),
                _const(p + "state_start", [layer, m * h]),
                _const(p + "state_end", [layer + 1, (m + 1) * h]),
            ]
            y = f"x_l{layer + 1}" if members == 1 else f"x_l{layer + 1}/m{m}"
            nodes += [
                helper.make_node(
                    "Slice",
                    ["state", p + "state_start", p + "state_end", "axes_state"],
                    [p + "h0"],
                    name=p + "Slice_state",
                ),
                helper.make_node(
                    "GRU",
                    [x, p + "W", p + "R", p + "B", "", p + "h0"],
                    [p + "y", p + "state_out"],
                    hidden_size=h,
                    linear_before_reset=1,
                    name=p + "GRU",
                ),
                # (T, 1 direction, 1, h) -> (T, 1, h): the next layer's input
                helper.make_node("Squeeze", [p + "y", "axis1"], [y], name=p + "Squeeze_y"),
            ]
            states.append(p + "state_out")
        if members > 1:  # the members' states and outputs side by side again, as the merged layer's
            nodes.append(
                helper.make_node(
                    "Concat", states, [f"l{layer}/state_out"], axis=2, name=f"l{layer}/Concat_state"
                )
            )
            if layer == layers - 1:
                tops = [f"x_l{layers}/m{m}" for m in range(members)]
                nodes.append(helper.make_node("Concat", tops, [f"x_l{layers}"], axis=2, name="Concat_top"))
        finals.append(f"l{layer}/state_out")
    nodes += [
        helper.make_node("Concat", finals, ["state_out"], axis=0, name="Concat_state"),
        helper.make_node("Squeeze", [f"x_l{layers}", "axis1"], ["top"], name="Squeeze_top"),  # (T, H)
        helper.make_node("MatMul", ["top", HEAD_WEIGHT], ["head_raw"], name=HEAD_NODES[0]),
        helper.make_node("Add", ["head_raw", HEAD_BIAS], ["head_out"], name=HEAD_NODES[1]),
        helper.make_node("Unsqueeze", ["head_out", "axis0"], ["intensities"], name="Unsqueeze_intensities"),
        helper.make_node("ReduceSum", ["top", "axis0"], ["hidden_sum"], keepdims=1, name="ReduceSum_hidden"),
    ]
    return _model(nodes, inits, "edge_emo_streaming_gru_op", layers, hidden, n_features, n_emotions)

"""`edge-emo bench`: latency, real-time factor, memory and size of the device path, side by side.

One process run measures, on one thread and on all cores:

- model step latency per 10-ms frame (median, p90, p99) for chunks of 1, 10 and 50 frames: torch eager fp32,
  ONNX fp32 with the GRU op (torch.onnx.export), ONNX fp32 of the bundle's own graph, ONNX int8 (the
  bundle), and the runtime's `BundleStream.run_chunk` (normalisation and bookkeeping included). All run the
  same weights: those of the bundle (int8 weights dequantized), so only the arithmetic differs;
- streaming openSMILE real-time factor per feature set the device can extract;
- end-to-end real-time factor of `EmotionRecognizer` on a 60 s clip, and the audio-to-update latency,
  paced in real time (frame k's audio ends at (k + 1) * hop; an update carrying frames up to k comes out
  after the recognizer has seen openSMILE's look-ahead, the rest of the chunk and its compute);
- peak resident memory of a runtime process (no torch) and of a torch process doing the same work, each in
  a subprocess of its own, and of `edge-emo listen` itself as a wearer starts it (later runs, and a bundle's
  first run, whose graph measurement runs in a child process of its own); bundle sizes on disk.

Ratios (e.g. int8 vs fp32) are taken round by round from interleaved measurements, then their median: a
shared or throttling machine slows both sides of a pair alike. torch rows are skipped when torch is not
installed (e.g. on a board with only the runtime); torch is then never imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_emo.bench.live import live_markdown, live_share, speech_clip
from edge_emo.runtime import graph_choice
from edge_emo.runtime.bundle import OUTPUTS, Bundle, load_bundle
from edge_emo.runtime.graph_choice import cpu_model
from edge_emo.runtime.session import ort_session

CHUNKS = (1, 10, 50)
SAMPLE_RATE = 16000
BLOCK_S = 0.01  # real-time factors: audio fed in 10 ms blocks (paced_latency takes listen's LIVE_BLOCK_S)
TORCH_SKIP = "torch is not installed"
# Targets of issue 8 for the int8 streaming path (one thread, 10-frame chunks).
TARGETS = {
    "int8_us_per_frame": 15.0,
    "int8_speedup_vs_onnx_gru_op": 1.5,
    "int8_speedup_vs_torch": 5.0,
    "end_to_end_rtf_cpu": 0.03,  # CPU time of all threads: on a shared machine wall time counts others' work
    "runtime_peak_rss_mb": 80.0,
    "audio_to_update_latency_ms": 150.0,
    # issue 20 (battery): the whole `listen` process live, % of one core in steady state
    "live_json_cpu_pct": 3.0,
    "live_view_cpu_pct": 4.0,
    "end_to_end_rtf_cpu_battery": 0.012,
    "model_step_speedup_vs_onnx_gru_op": 1.0,
    "listen_peak_rss_mb": 80.0,
}
# Variant names (rows of the latency table).
TORCH = "torch eager fp32"
GRU_OP = "ONNX fp32, GRU op"
FP32 = "ONNX fp32, bundle graph"
INT8 = "ONNX int8 (bundle)"
STREAM = "int8 BundleStream.run_chunk"


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int  # interleaved rounds per latency cell
    frames_per_round: int  # frames timed per variant and round (calls = this // chunk)
    clip_s: float  # audio for the real-time factors and the memory processes
    paced_s: float  # audio streamed in real time for the latency
    round_budget_s: float  # a variant's share of one round ends after this, even with calls left
    live_settle_s: float = 3.0  # the live CPU share: seconds after the first output before the window
    live_window_s: float = 20.0  # its window (wall seconds), per case


FULL = Settings(quick=False, rounds=9, frames_per_round=3000, clip_s=60.0, paced_s=20.0, round_budget_s=1.0)
QUICK = Settings(
    quick=True,
    rounds=3,
    frames_per_round=200,
    clip_s=5.0,
    paced_s=2.0,
    round_budget_s=0.2,
    live_settle_s=1.0,
    live_window_s=3.0,
)
# The machine counts as loaded (its figures as unreliable) above this load average per core, or when the
# slowest of a variant's rounds is this many times its fastest.
LOADED_PER_CORE = 0.5
LOADED_SPREAD = 2.0


def torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # sys.modules["torch"] is None: blocked on purpose
        return False


# -- machine facts -------------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """What a reader needs to compare runs (never imports torch: versions come from package metadata)."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {
            p: _version(p) for p in ("edge-emo", "numpy", "onnxruntime", "onnx", "opensmile", "torch")
        },
        "load_average_at_start": list(os.getloadavg()),
    }


# -- the model under test, as fp32 weights -------------------------------------------------------------------


def bundle_weights(bundle: Bundle) -> dict[str, np.ndarray]:
    """The bundle's GRU and head as a torch-style state dict of float32 arrays (int8 weights dequantized).

    The graph folds b_hr, b_hz into the input bias, so b_hh's first 2H entries come back as zeros and b_ih
    carries the sums: the same function as the exported model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle.graph_path))
    arrays: dict[str, np.ndarray] = {}

    def collect(graph) -> None:
        for tensor in graph.initializer:
            arrays[tensor.name] = numpy_helper.to_array(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    collect(attribute.g)

    collect(model.graph)

    def fp32(name: str) -> np.ndarray:
        if name in arrays:
            return arrays[name].astype(np.float32)
        q = arrays[name + "_quantized"].astype(np.float32)
        return (q - arrays[name + "_zero_point"].astype(np.float32)) * arrays[name + "_scale"]

    layers, _, hidden = bundle.state_shape
    h2 = 2 * hidden
    weights = {"head.weight": fp32("head.weight").T.copy(), "head.bias": fp32("head.bias")}
    for layer in range(layers):
        b_hn = fp32(f"gru.b_hn.{layer}")
        weights[f"gru.weight_ih_l{layer}"] = fp32(f"gru.w_ih_t.{layer}").T.copy()
        weights[f"gru.weight_hh_l{layer}"] = fp32(f"gru.w_hh_t.{layer}").T.copy()
        weights[f"gru.bias_ih_l{layer}"] = fp32(f"gru.b_in.{layer}")
        weights[f"gru.bias_hh_l{layer}"] = np.concatenate([np.zeros(h2, np.float32), b_hn[h2:]])
    return weights


class TorchModel:
    """The training network (EmotionGRU) with the bundle's weights (eager, inference mode), and its ONNX
    GRU-op export."""

    def __init__(self, weights: dict[str, np.ndarray]):
        import torch

        from edge_emo.model import EmotionGRU, ModelConfig

        self.torch = torch
        hidden, n_features = weights["gru.weight_ih_l0"].shape[0] // 3, weights["gru.weight_ih_l0"].shape[1]
        layers = sum(1 for k in weights if k.startswith("gru.weight_ih_l"))
        config = ModelConfig(n_features, hidden, layers, n_emotions=weights["head.weight"].shape[0])
        self.model = EmotionGRU(config).eval()
        state = {name: torch.from_numpy(value) for name, value in weights.items()}
        missing = self.model.load_state_dict(state, strict=False).missing_keys
        if any(not k.startswith("recon.") for k in missing):  # only pretraining's head is not in a bundle
            raise ValueError(f"the bundle's weights lack {missing}")
        self.gru, self.head = self.model.gru, self.model.head

    def step(self, x: np.ndarray, state: np.ndarray):
        """One chunk: per-frame head outputs, new state, hidden sum (what the graph returns)."""
        torch = self.torch
        with torch.inference_mode():
            h, s = self.gru(torch.from_numpy(x), torch.from_numpy(state))
            return self.head(h).numpy(), s.numpy(), h.sum(1).numpy()

    def gru_op_onnx(self) -> bytes:
        """torch.onnx.export (TorchScript exporter: dynamo drops the dynamic time axis) with ONNX GRU ops."""
        import io
        import warnings

        torch = self.torch

        class Step(torch.nn.Module):
            def __init__(self, gru, head):
                super().__init__()
                self.gru, self.head = gru, head

            def forward(self, x, state):
                h, s = self.gru(x, state)
                return self.head(h), s, h.sum(1)

        buffer = io.BytesIO()
        layers, hidden = self.gru.num_layers, self.gru.hidden_size
        example = (torch.zeros(1, 10, self.gru.input_size), torch.zeros(layers, 1, hidden))
        with warnings.catch_warnings():  # its advice about batch sizes other than 1: we export batch 1
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Step(self.gru, self.head),
                example,
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=["features", "state"],
                output_names=list(OUTPUTS),
                dynamic_axes={"features": {1: "T"}, "intensities": {1: "T"}},
            )
        return buffer.getvalue()


# -- model step latency --------------------------------------------------------------------------------------


def _percentiles(times_s: list[float], frames: int) -> dict[str, float]:
    us = np.asarray(times_s) / frames * 1e6
    return {k: round(float(np.percentile(us, q)), 2) for k, q in (("median", 50), ("p90", 90), ("p99", 99))}


def latency(
    bundle: Bundle, weights: dict[str, np.ndarray], threads: int, settings: Settings, torch_model
) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Rows (variant, threads, chunk, us per frame) and per-round ratios, variants interleaved round by round."""
    from edge_emo.export.graph import gru_graph

    fp32_graph = gru_graph(weights).SerializeToString()
    variants: dict[str, Callable[[np.ndarray, np.ndarray], Any] | None] = {}
    sizes = {"onnx_fp32_bundle_graph_bytes": len(fp32_graph)}
    if torch_model is not None:
        torch_model.torch.set_num_threads(threads)
        variants[TORCH] = torch_model.step
        gru_op = torch_model.gru_op_onnx()
        sizes["onnx_fp32_gru_op_bytes"] = len(gru_op)
        session = ort_session(gru_op, threads)
        variants[GRU_OP] = lambda x, s, session=session: session.run(None, {"features": x, "state": s})
    else:
        variants[TORCH] = variants[GRU_OP] = None
    for name, graph in ((FP32, fp32_graph), (INT8, str(bundle.graph_path))):
        session = ort_session(graph, threads)
        variants[name] = lambda x, s, session=session: session.run(None, {"features": x, "state": s})
    if bundle.precision != "int8":
        variants[INT8] = None
    stream = bundle.stream(bundle.session(threads))

    rng = np.random.default_rng(0)
    state = (0.3 * rng.standard_normal(bundle.state_shape)).astype(np.float32)
    rows, ratios = [], []
    for chunk in CHUNKS:
        x = rng.standard_normal((1, chunk, bundle.spec.dim)).astype(np.float32)
        raw = (x[0] * bundle.norm.std + bundle.norm.mean).astype(np.float32)  # the runtime gets raw frames
        variants[STREAM] = lambda x, s, raw=raw: stream.run_chunk(raw)
        calls = max(20, settings.frames_per_round // chunk)
        times: dict[str, list[float]] = {k: [] for k, f in variants.items() if f is not None}
        round_medians: dict[str, list[float]] = {k: [] for k in times}
        for _ in range(settings.rounds):
            for name in times:
                step = variants[name]
                for _ in range(max(3, calls // 10)):  # warm caches and branch predictors
                    step(x, state)
                these: list[float] = []
                deadline = time.perf_counter() + settings.round_budget_s  # bounds a stalling variant
                for _ in range(calls):
                    t0 = time.perf_counter()
                    step(x, state)
                    these.append(time.perf_counter() - t0)
                    if t0 > deadline:
                        break
                times[name] += these
                round_medians[name].append(float(np.median(these)))
        for name, step in variants.items():
            row = {"variant": name, "threads": threads, "chunk": chunk}
            if step is None:
                row["skipped"] = TORCH_SKIP if name in (TORCH, GRU_OP) else "bundle is not int8"
            else:
                row["us_per_frame"] = _percentiles(times[name], chunk)
            rows.append(row)
        for slow in (FP32, GRU_OP, TORCH):
            if INT8 in times and slow in times:
                per_round = np.asarray(round_medians[slow]) / np.asarray(round_medians[INT8])
                ratios.append(
                    {
                        "threads": threads,
                        "chunk": chunk,
                        "pair": f"{slow} / {INT8}",
                        "speedup_median": round(float(np.median(per_round)), 2),
                        "speedup_min": round(float(per_round.min()), 2),
                        "speedup_max": round(float(per_round.max()), 2),
                    }
                )
    return rows, ratios, sizes


# -- the bundle's graphs, and the one this board runs ---------------------------------------------------------


def graphs(bundle: Bundle, settings: Settings) -> dict[str, Any]:
    """The model step of each of the bundle's graphs (10-frame chunks, one thread, interleaved rounds), the
    faster recorded as this machine's choice for `listen` (edge_emo/runtime/graph_choice.py), and sizes."""
    calls = max(20, settings.frames_per_round // bundle.chunk_frames)
    times = graph_choice.measure(bundle, rounds=settings.rounds, calls=calls)
    notes: list[str] = []
    choice = graph_choice.record(bundle, times, notes.append)
    return {
        "us_per_frame": times,
        "bytes": {g.name: g.bytes for g in bundle.graphs},
        "chosen": choice.graph,
        "reason": choice.reason,
        "choice_file": str(graph_choice.choice_path()),
        "notes": notes,
    }


# -- what onnxruntime itself costs ----------------------------------------------------------------------------

FLOOR_FRAMES = 50  # frames per call of the Scan floor graphs: the call's fixed cost spreads thin
FLOOR_BODY_NODES = 12  # trivial nodes in the larger Scan body (about a GRU layer's step)


def _floor_models(bundle: Bundle) -> dict[str, bytes]:
    """Graphs that do no real work: `call` has the bundle's inputs and outputs and only copies (the fixed
    cost of a run() call); `scan_1` and `scan_12` loop a Scan over the frames whose body is 1 or 12 Adds of
    (1, H) vectors (the cost of a Scan step, and of a node inside one)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_emo.export.graph import IR_VERSION, OPSET

    layers, _, hidden = bundle.state_shape
    n_emotions, dim = len(bundle.emotions), bundle.spec.dim

    def value(name: str, shape: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def const(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    def model(extra_nodes: list, extra_inits: list) -> bytes:
        nodes = [
            helper.make_node("Identity", ["state"], ["state_out"]),
            helper.make_node("Slice", ["features", "zero", "n_emotions", "two"], ["intensities"]),
            helper.make_node("ReduceSum", ["state", "zero"], ["hidden_sum"], keepdims=0),
            *extra_nodes,
        ]
        inits = [const("zero", [0]), const("two", [2]), const("n_emotions", [n_emotions]), *extra_inits]
        outputs = [value("intensities", [1, "T", n_emotions]), value("state_out", [layers, 1, hidden])]
        outputs.append(value("hidden_sum", [1, hidden]))
        inputs = [value("features", [1, "T", dim]), value("state", [layers, 1, hidden])]
        graph = helper.make_graph(nodes, "floor", inputs, outputs, inits)
        if extra_nodes:  # the Scan's last state is an extra output, so that it cannot be pruned
            graph.output.append(value("h_last", [1, hidden]))
        opset = [helper.make_opsetid("", OPSET)]
        return helper.make_model(graph, opset_imports=opset, ir_version=IR_VERSION).SerializeToString()

    def scan(body_nodes: int) -> bytes:
        adds = [
            helper.make_node("Add", ["h_prev" if i == 0 else f"t{i}", "x_t"], [f"t{i + 1}"])
            for i in range(body_nodes)
        ]
        adds.append(helper.make_node("Identity", [f"t{body_nodes}"], ["h"]))
        body = helper.make_graph(
            adds, "step", [value("h_prev", [1, hidden]), value("x_t", [hidden])], [value("h", [1, hidden])]
        )
        nodes = [  # x (T, H): the frames' first value repeated H times, so the loop runs T steps
            helper.make_node("Slice", ["features", "zero", "one", "two"], ["first"]),
            helper.make_node("Squeeze", ["first", "zero"], ["first_2d"]),
            helper.make_node("Expand", ["first_2d", "t_by_h"], ["x"]),
            helper.make_node("Gather", ["state", "zero"], ["h0_3d"], axis=0),
            helper.make_node("Squeeze", ["h0_3d", "zero"], ["h0"]),
            helper.make_node("Scan", ["h0", "x"], ["h_last"], num_scan_inputs=1, body=body),
        ]
        return model(nodes, [const("one", [1]), const("t_by_h", [1, hidden])])

    return {"call": model([], []), "scan_1": scan(1), f"scan_{FLOOR_BODY_NODES}": scan(FLOOR_BODY_NODES)}


def _per_frame_nodes(bundle: Bundle) -> dict[str, int]:
    """Scan steps and nodes run per frame by the bundle's graph as onnxruntime optimises it (one thread)."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        ort_session(bundle.graph_path, optimized_path=Path(tmp) / "optimized.onnx")
        optimized = onnx.load(Path(tmp) / "optimized.onnx")
    scans = [n for n in optimized.graph.node if n.op_type == "Scan"]
    return {
        "scan_steps_per_frame": len(scans),
        "nodes_per_frame": sum(len(a.g.node) for n in scans for a in n.attribute if a.type == a.GRAPH),
        "nodes_per_call": len(optimized.graph.node),
    }


def framework_floor(bundle: Bundle, settings: Settings, int8_us_per_frame: float | None) -> dict[str, Any]:
    """onnxruntime's own cost on one thread: the fixed cost of a run() call, of a Scan step and of a node in
    a Scan body, measured with graphs that do no real work; the bundle's Scan steps and nodes per frame; and
    from these the share of the int8 graph's time per frame (10-frame chunks) that is onnxruntime's
    bookkeeping rather than arithmetic."""
    sessions = {name: ort_session(graph, 1) for name, graph in _floor_models(bundle).items()}
    rng = np.random.default_rng(0)
    state = rng.standard_normal(bundle.state_shape).astype(np.float32)
    x = {n: rng.standard_normal((1, n, bundle.spec.dim)).astype(np.float32) for n in (10, FLOOR_FRAMES)}
    per_round: dict[str, list[float]] = {name: [] for name in sessions}
    calls = max(20, settings.frames_per_round // FLOOR_FRAMES)
    for _ in range(settings.rounds):
        for name, session in sessions.items():
            feeds = {"features": x[10 if name == "call" else FLOOR_FRAMES], "state": state}
            for _ in range(3):
                session.run(None, feeds)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                session.run(None, feeds)
                times.append(time.perf_counter() - t0)
            per_round[name].append(float(np.median(times)) * 1e6)
    call, scan_1, scan_n = (float(np.median(per_round[n])) for n in sessions)
    node = max(0.0, (scan_n - scan_1) / FLOOR_FRAMES / (FLOOR_BODY_NODES - 1))
    step = max(0.0, (scan_1 - call) / FLOOR_FRAMES - node)
    counts = _per_frame_nodes(bundle)
    per_call = call + counts["nodes_per_call"] * node  # the nodes outside the loops run once per call
    overhead = per_call / 10 + counts["scan_steps_per_frame"] * step + counts["nodes_per_frame"] * node
    out: dict[str, Any] = {
        "run_call_us": round(call, 2),
        "scan_step_us": round(step, 3),
        "scan_body_node_us": round(node, 3),
        **counts,
        "overhead_us_per_frame_at_10": round(overhead, 2),
    }
    if int8_us_per_frame:
        out["int8_us_per_frame"] = int8_us_per_frame
        out["overhead_share_of_int8_at_10"] = round(overhead / int8_us_per_frame, 3)
    return out


# -- audio ---------------------------------------------------------------------------------------------------


def _blocks(pcm: np.ndarray, block_s: float = BLOCK_S):
    step = int(block_s * SAMPLE_RATE)
    for start in range(0, len(pcm), step):
        yield start + step, pcm[start : start + step]


def feature_rtf(pcm: np.ndarray) -> list[dict]:
    """Streaming openSMILE, fed 10 ms blocks as fast as it takes them: wall and CPU time per audio second."""
    from edge_emo.features import StreamingExtractor
    from edge_emo.features.smile import front_ends

    rows = []
    audio_s = len(pcm) / SAMPLE_RATE
    for spec in front_ends():
        wall, cpu = time.perf_counter(), time.process_time()
        frames = 0
        with StreamingExtractor(spec) as stream:
            for _, block in _blocks(pcm):
                stream.accept_waveform(block)
                frames += len(stream.frames())
            frames += len(stream.end_of_input())
        rows.append(
            {
                "feature_set": spec.name,
                "hop_ms": round(spec.hop_s * 1000),
                "values_per_frame": spec.dim,
                "frames": frames,
                "rtf_wall": round((time.perf_counter() - wall) / audio_s, 4),
                "rtf_cpu": round((time.process_time() - cpu) / audio_s, 4),
            }
        )
    return rows


def end_to_end(bundle: Bundle, pcm: np.ndarray, threads: int) -> dict[str, Any]:
    """The whole runtime (openSMILE, detector, model, updates) on the clip as fast as it goes."""
    from edge_emo.runtime.recognizer import EmotionRecognizer

    audio_s = len(pcm) / SAMPLE_RATE
    updates = 0
    wall, cpu = time.perf_counter(), time.process_time()
    with EmotionRecognizer(bundle, threads=threads) as recognizer:
        for _, block in _blocks(pcm):
            recognizer.accept_waveform(block, SAMPLE_RATE)
            updates += sum(1 for _ in recognizer.updates())
        recognizer.end_of_input()
        updates += sum(1 for _ in recognizer.updates())
    return {
        "threads": threads,
        "audio_s": audio_s,
        "updates": updates,
        "rtf_wall": round((time.perf_counter() - wall) / audio_s, 4),
        "rtf_cpu": round((time.process_time() - cpu) / audio_s, 4),
    }


def paced_latency(bundle: Bundle, pcm: np.ndarray) -> dict[str, Any]:
    """Audio-to-update latency as `edge-emo listen` has it: audio arriving in real time in the blocks its
    sources hand over (`LIVE_BLOCK_S`), every update delivered the moment the recognizer has it, on
    openSMILE's thread (`EmotionRecognizer.deliver_to`, as listen runs it), one onnxruntime thread.

    Frame k's audio ends at (k + 1) * hop after the stream's start; the update that first includes frame k
    comes out at some wall time; the difference is the latency the wearer sees for that frame. Reported for
    every frame and for the newest frame of each update, with the part that is waiting for audio (openSMILE's
    look-ahead and the model's chunk: the audio handed over beyond the update's newest frame) and the time
    from the hand-over of the block to the update."""
    from edge_emo.runtime.audio_input import LIVE_BLOCK_S
    from edge_emo.runtime.recognizer import EmotionRecognizer, EmotionUpdate

    hop = bundle.spec.hop_s
    every_frame, newest, block_to_update, waiting = [], [], [], []
    covered = 0  # frames included in some update so far
    handed = [0, 0.0]  # audio handed over so far (samples), and when

    def on_update(update: EmotionUpdate) -> None:
        nonlocal covered
        t1 = time.perf_counter()
        last = round(update.time_s / hop)  # frames [0, last) are in this update
        ends = start + (np.arange(covered, last) + 1) * hop
        every_frame.extend((t1 - ends) * 1e3)
        if last > covered:
            newest.append((t1 - ends[-1]) * 1e3)
            waiting.append((handed[0] / SAMPLE_RATE - last * hop) * 1e3)
            block_to_update.append((t1 - handed[1]) * 1e3)
        covered = max(covered, last)

    with EmotionRecognizer(bundle, threads=1) as recognizer:
        recognizer.deliver_to(on_update)
        recognizer.accept_waveform(np.zeros(0, np.int16), SAMPLE_RATE)  # start openSMILE before the clock
        start = time.perf_counter()
        for audio_end, block in _blocks(pcm, LIVE_BLOCK_S):
            due = start + audio_end / SAMPLE_RATE  # the block's last sample has been captured
            while (now := time.perf_counter()) < due:
                time.sleep(min(due - now, 0.002))
            handed[:] = audio_end, time.perf_counter()
            recognizer.accept_waveform(block, SAMPLE_RATE)

    def stats(values: list[float]) -> dict[str, float]:
        return {k: round(float(np.percentile(values, q)), 1) for k, q in (("median", 50), ("p90", 90))}

    return {
        "audio_s": len(pcm) / SAMPLE_RATE,
        "block_ms": round(LIVE_BLOCK_S * 1e3, 1),
        "updates": len(newest),
        "every_frame_ms": stats(every_frame),
        "newest_frame_ms": stats(newest),
        "newest_frame_waiting_for_audio_ms": stats(waiting),
        "block_to_update_ms": stats(block_to_update),
    }


# -- memory (separate processes) -----------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """VmHWM (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def memory_worker(kind: str, bundle_path: str, seconds: float) -> dict[str, Any]:
    """Runs in a subprocess: stream `seconds` of speech through the runtime ('runtime') or through openSMILE
    and the torch model in chunks ('torch'), and report the peak RSS."""
    bundle = load_bundle(bundle_path)
    pcm = speech_clip(seconds)
    if kind == "runtime":
        end_to_end(bundle, pcm, threads=1)
    else:
        from edge_emo.features import StreamingExtractor

        model = TorchModel(bundle_weights(bundle))
        model.torch.set_num_threads(1)
        state = np.zeros(bundle.state_shape, np.float32)
        pending = np.empty((0, bundle.spec.dim), np.float32)
        with StreamingExtractor(bundle.spec) as stream:
            for _, block in _blocks(pcm):
                stream.accept_waveform(block)
                pending = np.concatenate([pending, stream.frames()])
                while len(pending) >= bundle.chunk_frames:
                    x = bundle.norm.apply(pending[: bundle.chunk_frames])[None]
                    _, state, _ = model.step(x, state)
                    pending = pending[bundle.chunk_frames :]
            stream.end_of_input()
    return {"peak_rss_mb": round(_peak_rss_mb(), 1), "torch_imported": "torch" in sys.modules}


# `edge-emo listen` exactly as a wearer starts it (`python -m edge_emo listen ...`), which then reports on
# its last line of stderr its own peak and the largest peak of the processes it started (the first run's
# graph measurement), both as ru_maxrss counts them (KB on Linux, bytes on macOS), and whether torch came
# in. Read there, not from the bench: a child forked from the bench would count the bench's own memory. Read
# with `resource` alone (what `_peak_rss_mb` reads, without importing the bench into the process measured).
LISTEN_PEAK = """import runpy, sys
sys.argv = ["edge-emo", *sys.argv[1:]]
try:
    runpy.run_module("edge_emo", run_name="__main__")
    status = 0
except SystemExit as done:
    status = done.code
import resource
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(own, children, "torch" in sys.modules, file=sys.stderr)
sys.exit(status)
"""


def listen_memory(bundle: Bundle, wav: Path, first_run: bool) -> dict[str, Any]:
    """Peak RSS of `listen --input WAV --fast --json`: its own, and the largest of it and the processes it
    started (the child that measures the graphs on a bundle's first run). `first_run`: with an empty graph
    choice cache, as the first `listen` of a bundle on a machine."""
    import tempfile

    env = _child_env()
    env.pop(graph_choice.ENV, None)
    with tempfile.TemporaryDirectory() as cache:
        if first_run:
            env["XDG_CACHE_HOME"] = cache
        args = ["listen", "--model", str(bundle.path), "--input", str(wav), "--fast", "--json"]
        process = subprocess.Popen(
            [sys.executable, "-c", LISTEN_PEAK, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        stderr = process.stderr.read() if process.stderr else ""
        process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"edge-emo listen exited with {process.returncode}: {stderr.strip()[-2000:]}")
    own, children, torch_imported = stderr.strip().splitlines()[-1].split()
    to_mb = 1024 * (1024 if sys.platform == "darwin" else 1)
    return {
        "peak_rss_mb": round(int(own) / to_mb, 1),
        "process_tree_peak_rss_mb": round(max(int(own), int(children)) / to_mb, 1),
        "graph_measured": "just now" in stderr,
        "torch_imported": torch_imported == "True",
    }


def memory(bundle: Bundle, seconds: float, with_torch: bool) -> dict[str, Any]:
    import tempfile

    import soundfile

    out: dict[str, Any] = {}
    for kind in ("runtime", "torch"):
        if kind == "torch" and not with_torch:
            out[kind] = {"skipped": TORCH_SKIP}
            continue
        code = (
            "import json, sys; from edge_emo.bench.core import memory_worker; "
            f"print(json.dumps(memory_worker({kind!r}, {str(bundle.path)!r}, {seconds!r})))"
        )
        args = [sys.executable, "-c", code]
        done = subprocess.run(args, capture_output=True, text=True, check=False, env=_child_env())
        if done.returncode != 0:
            raise RuntimeError(f"memory worker '{kind}' failed: {done.stderr.strip()[-2000:]}")
        out[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        soundfile.write(wav, speech_clip(seconds), SAMPLE_RATE)
        out["listen"] = listen_memory(bundle, wav, first_run=False)
        if len(bundle.graphs) > 1:
            out["listen_first_run"] = listen_memory(bundle, wav, first_run=True)
    return out


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# -- the run -------------------------------------------------------------------------------------------------


def _model_option(bundle: Bundle) -> list[str]:
    """`--model PATH` unless the bundle is the shipped model (the results name the command that made them)."""
    from edge_emo.runtime.shipped import DEFAULT_MODEL

    return [] if bundle.path.resolve() == DEFAULT_MODEL else ["--model", str(bundle.path)]


def run(bundle_path: str | Path, quick: bool = False, with_torch: bool | None = None) -> dict[str, Any]:
    from edge_emo.progress import stage  # here: the memory processes import this module, never rich

    settings = QUICK if quick else FULL
    with_torch = torch_available() if with_torch is None else with_torch
    bundle = load_bundle(bundle_path)
    weights = bundle_weights(bundle)
    torch_model = TorchModel(weights) if with_torch else None
    result: dict[str, Any] = {
        "command": " ".join(["edge-emo bench", *(["--quick"] if quick else []), *_model_option(bundle)]),
        "machine": machine_facts(),
        "settings": settings.__dict__,
        "bundle": {
            "path": str(bundle.path),
            "version": bundle.version,
            "precision": bundle.precision,
            "feature_set": bundle.spec.name,
            "state_shape": list(bundle.state_shape),
            "chunk_frames": bundle.chunk_frames,
        },
        "torch": with_torch,
    }
    all_cores = os.cpu_count() or 1
    thread_counts = sorted({1, all_cores})
    names = [f"model step latency, {t} thread(s)" for t in thread_counts]
    names += [
        "the bundle's graphs",
        "onnxruntime's own cost",
        "streaming features",
        "end to end",
        "paced audio-to-update latency",
    ]
    names += ["peak memory (child processes)"]
    with stage("bench", len(names), "stages") as advance:
        started = iter(names)

        def next_stage() -> None:  # the bar names the stage that is running
            advance(0, f"bench: {next(started)}")

        rows, ratios = [], []
        for threads in thread_counts:
            next_stage()
            r, q, sizes = latency(bundle, weights, threads, settings, torch_model)
            rows += r
            ratios += q
            advance()
        result["latency"] = rows
        result["ratios"] = ratios
        int8 = _cell(result, INT8, 1, 10)
        int8_us = None if int8 is None or "skipped" in int8 else int8["us_per_frame"]["median"]
        next_stage()
        result["graphs"] = graphs(bundle, settings)
        advance()
        next_stage()
        result["framework_floor"] = framework_floor(bundle, settings, int8_us)
        advance()
        pcm = speech_clip(settings.clip_s)
        next_stage()
        result["features"] = feature_rtf(pcm)
        advance()
        next_stage()
        result["end_to_end"] = [end_to_end(bundle, pcm, threads) for threads in thread_counts]
        advance()
        next_stage()
        result["audio_to_update_latency"] = paced_latency(bundle, pcm[: int(settings.paced_s * SAMPLE_RATE)])
        advance()
        next_stage()
        result["memory"] = memory(bundle, settings.clip_s, with_torch)
        advance()
    result["sizes"] = {
        "bundle_dir_bytes": sum(p.stat().st_size for p in bundle.path.iterdir() if p.is_file()),
        "bundle_graph_bytes": bundle.graph_path.stat().st_size,
        **{f"bundle_graph_{g.name}_bytes": g.bytes for g in bundle.graphs},
        **sizes,
    }
    result["live"] = live_share(
        bundle,
        speech_clip(settings.live_settle_s + settings.live_window_s + 30),
        settings.live_settle_s,
        settings.live_window_s,
        _child_env(),
    )
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["targets"] = targets(result)
    result["warnings"] = load_warnings(result)
    return result


def run_live(bundle_path: str | Path, quick: bool = False) -> dict[str, Any]:
    """Only the live CPU share of `listen` (`edge-emo bench --live-only`)."""
    settings = QUICK if quick else FULL
    bundle = load_bundle(bundle_path)
    result: dict[str, Any] = {
        "command": " ".join(
            ["edge-emo bench --live-only", *(["--quick"] if quick else []), *_model_option(bundle)]
        ),
        "machine": machine_facts(),
        "bundle": {"path": str(bundle.path), "version": bundle.version, "feature_set": bundle.spec.name},
    }
    pcm = speech_clip(settings.live_settle_s + settings.live_window_s + 30)
    result["live"] = live_share(bundle, pcm, settings.live_settle_s, settings.live_window_s, _child_env())
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["warnings"] = load_warnings(result)
    return result


def load_warnings(result: dict) -> list[str]:
    """Why the figures may not hold: a loaded machine (load average per core) or a wide spread between the
    rounds of a ratio. Shared machines slow everything, unevenly; a warning, never a refusal."""
    m = result["machine"]
    cores = m["cores"] or 1
    out = []
    loads = [m["load_average_at_start"][0], m["load_average_at_end"][0]]
    if "load_average_before" in result.get("live", {}):
        loads += [result["live"]["load_average_before"][0], result["live"]["load_average_after"][0]]
    if max(loads) > LOADED_PER_CORE * cores:
        out.append(
            f"the machine was loaded (load average up to {max(loads):.1f} on {cores} cores): CPU shares and "
            "times are inflated by other work; compare ratios measured side by side, not absolute figures"
        )
    spread = [
        r
        for r in result.get("ratios", [])
        if r["speedup_min"] > 0 and r["speedup_max"] / r["speedup_min"] > LOADED_SPREAD
    ]
    if spread:
        worst = max(spread, key=lambda r: r["speedup_max"] / r["speedup_min"])
        out.append(
            f"{len(spread)} of {len(result['ratios'])} speedups vary more than {LOADED_SPREAD:g}x between rounds "
            f"(worst: {worst['pair']}, T={worst['chunk']}, {worst['threads']} thr: "
            f"{worst['speedup_min']:.2f}-{worst['speedup_max']:.2f}x): read the medians only"
        )
    return out


def _cell(result: dict, variant: str, threads: int, chunk: int) -> dict | None:
    for row in result["latency"]:
        if (row["variant"], row["threads"], row["chunk"]) == (variant, threads, chunk):
            return row
    return None


def _ratio(result: dict, slow: str, threads: int = 1, chunk: int = 10) -> float | None:
    for r in result["ratios"]:
        if (r["pair"], r["threads"], r["chunk"]) == (f"{slow} / {INT8}", threads, chunk):
            return r["speedup_median"]
    return None


def _chosen_vs_gru_op(result: dict) -> float | None:
    """The model step `listen` runs here against the fused fp32 GRU op: the bundle's own GRU-op graph when
    it has one (measured side by side with the chosen graph), else torch's export of it vs int8."""
    times = result.get("graphs", {}).get("us_per_frame", {})
    if "fp32-gru" in times:
        return round(times["fp32-gru"] / times[result["graphs"]["chosen"]], 2)
    return _ratio(result, GRU_OP)


def _live_case(result: dict, name: str) -> float | None:
    case = next((c for c in result.get("live", {}).get("cases", []) if c["case"] == name), None)
    return None if case is None or "skipped" in case else case["cpu_share_pct"]


def targets(result: dict) -> list[dict]:
    """Issue 8's and issue 20's targets beside the measured values (reported, never asserted)."""
    int8 = _cell(result, INT8, 1, 10)
    e2e = next(r for r in result["end_to_end"] if r["threads"] == 1)
    measured = {
        "int8_us_per_frame": None if int8 is None or "skipped" in int8 else int8["us_per_frame"]["median"],
        "int8_speedup_vs_onnx_gru_op": _ratio(result, GRU_OP),
        "int8_speedup_vs_torch": _ratio(result, TORCH),
        "end_to_end_rtf_cpu": e2e["rtf_cpu"],
        "runtime_peak_rss_mb": result["memory"]["runtime"]["peak_rss_mb"],
        "audio_to_update_latency_ms": result["audio_to_update_latency"]["every_frame_ms"]["median"],
        "live_json_cpu_pct": _live_case(result, "file, --json"),
        "live_view_cpu_pct": _live_case(result, "file, live view"),
        "end_to_end_rtf_cpu_battery": e2e["rtf_cpu"],
        "model_step_speedup_vs_onnx_gru_op": _chosen_vs_gru_op(result),
        "listen_peak_rss_mb": result["memory"]["listen"]["peak_rss_mb"],
    }
    out = []
    for name, limit in TARGETS.items():
        value = measured[name]
        at_least = "speedup" in name
        met = None if value is None else (value >= limit if at_least else value <= limit)
        out.append({"target": name, "limit": limit, "at_least": at_least, "measured": value, "met": met})
    return out


def _first_run_words(first: dict | None) -> str:
    """How the first `listen` of a bundle on a machine fares: it measures the graphs in a child process."""
    if not first:
        return ""
    return (
        f" ({first['peak_rss_mb']:.0f} MB on a bundle's first run, whose child process measuring the graphs "
        f"peaks at {first['process_tree_peak_rss_mb']:.0f} MB for about a second)"
    )


def _floor_lines(floor: dict | None) -> list[str]:
    if not floor:
        return []
    share = floor.get("overhead_share_of_int8_at_10")
    return [
        f"onnxruntime's own cost (one thread, graphs that do no work): a run() call {floor['run_call_us']:.1f} us, "
        f"a Scan step {floor['scan_step_us']:.2f} us, a node in a Scan body {floor['scan_body_node_us']:.2f} us. "
        f"The bundle runs {floor['scan_steps_per_frame']} Scan steps and {floor['nodes_per_frame']} nodes per "
        f"frame and {floor['nodes_per_call']} nodes per call: {floor['overhead_us_per_frame_at_10']:.1f} us per "
        "frame at 10-frame chunks"
        + (
            "."
            if share is None
            else f", against {floor['int8_us_per_frame']:.1f} us for the whole int8 step "
            f"({100 * share:.0f}%)."
        ),
        "",
    ]


def _graph_lines(graphs: dict | None) -> list[str]:
    if not graphs:
        return []
    each = ", ".join(
        f"{name} {us:.1f} us per frame ({graphs['bytes'][name] / 1e6:.2f} MB)"
        for name, us in graphs["us_per_frame"].items()
    )
    return [
        f"The bundle's graphs (one thread, 10-frame chunks, interleaved): {each}. `listen` here runs "
        f"{graphs['chosen']} ({graphs['reason']}; recorded in {graphs['choice_file']}).",
        "",
    ]


def markdown(result: dict) -> str:
    """The tables the README quotes."""
    m = result["machine"]
    lines = (
        [*(f"**Warning:** {w}." for w in result.get("warnings", [])), ""] if result.get("warnings") else []
    )
    lines += [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['arch']}, {m['os']}; onnxruntime "
        f"{m['libraries']['onnxruntime']}, torch {m['libraries']['torch'] or 'absent'}; load average "
        f"{m['load_average_at_start'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end. "
        f"Command: `{result['command']}`.",
        "",
    ]
    if "latency" not in result:  # --live-only
        return "\n".join(lines + live_markdown(result["live"]))
    lines += [
        "Model step latency, microseconds per 10-ms frame, median (p90):",
        "",
    ]
    thread_counts = sorted({r["threads"] for r in result["latency"]})
    header = "| variant | " + " | ".join(f"T={c}, {t} thr" for t in thread_counts for c in CHUNKS) + " |"
    lines += [header, "|---" * (1 + len(thread_counts) * len(CHUNKS)) + "|"]
    for variant in (TORCH, GRU_OP, FP32, INT8, STREAM):
        cells = []
        for t in thread_counts:
            for c in CHUNKS:
                row = _cell(result, variant, t, c)
                if row is None or "skipped" in row:
                    cells.append("skipped")
                else:
                    us = row["us_per_frame"]
                    cells.append(f"{us['median']:.1f} ({us['p90']:.1f})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "int8 speedup, median of per-round ratios (min-max):", ""]
    lines += ["| pair | threads | T=1 | T=10 | T=50 |", "|---|---|---|---|---|"]
    for slow in (FP32, GRU_OP, TORCH):
        for t in thread_counts:
            cells = []
            for c in CHUNKS:
                r = next(
                    (
                        x
                        for x in result["ratios"]
                        if (x["pair"], x["threads"], x["chunk"]) == (f"{slow} / {INT8}", t, c)
                    ),
                    None,
                )
                cells.append(
                    "skipped"
                    if r is None
                    else f"{r['speedup_median']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
                )
            lines.append(f"| {slow} vs int8 | {t} | " + " | ".join(cells) + " |")
    lines += ["", "Real-time factors (processing time / audio time; wall, and CPU of all threads):", ""]
    lines += ["| what | threads | RTF wall | RTF CPU |", "|---|---|---|---|"]
    for f in result["features"]:
        lines.append(
            f"| streaming openSMILE {f['feature_set']} ({f['values_per_frame']} values, "
            f"{f.get('hop_ms', 10)} ms hop) | 1 | {f['rtf_wall']:.4f} | {f['rtf_cpu']:.4f} |"
        )
    for e in result["end_to_end"]:
        lines.append(
            f"| end to end (EmotionRecognizer, {e['audio_s']:.0f} s) | {e['threads']} | {e['rtf_wall']:.4f} | {e['rtf_cpu']:.4f} |"
        )
    lat = result["audio_to_update_latency"]
    mem = result["memory"]
    torch_rss = mem["torch"].get("peak_rss_mb")
    lines += [
        "",
        f"Audio-to-update latency, paced in real time ({lat['audio_s']:.0f} s, {lat['block_ms']:.0f} ms blocks, as "
        f"`listen` takes them): every frame median {lat['every_frame_ms']['median']:.0f} ms (p90 "
        f"{lat['every_frame_ms']['p90']:.0f}); newest frame of an update median "
        f"{lat['newest_frame_ms']['median']:.0f} ms, of which waiting for audio "
        f"{lat['newest_frame_waiting_for_audio_ms']['median']:.0f} ms; block handed over to update "
        f"{lat['block_to_update_ms']['median']:.1f} ms.",
        "",
        f"Peak RSS: runtime process {mem['runtime']['peak_rss_mb']:.0f} MB (torch imported: "
        f"{mem['runtime']['torch_imported']}); `edge-emo listen --fast` {mem['listen']['peak_rss_mb']:.0f} MB"
        + _first_run_words(mem.get("listen_first_run"))
        + "; torch process "
        + ("skipped" if torch_rss is None else f"{torch_rss:.0f} MB")
        + f". Sizes: bundle {result['sizes']['bundle_dir_bytes'] / 1e6:.2f} MB (graph "
        f"{result['sizes']['bundle_graph_bytes'] / 1e6:.2f} MB), fp32 graph "
        f"{result['sizes']['onnx_fp32_bundle_graph_bytes'] / 1e6:.2f} MB"
        + (
            f", GRU-op graph {result['sizes']['onnx_fp32_gru_op_bytes'] / 1e6:.2f} MB."
            if "onnx_fp32_gru_op_bytes" in result["sizes"]
            else "."
        ),
        "",
        *_graph_lines(result.get("graphs")),
        *_floor_lines(result.get("framework_floor")),
        *live_markdown(result["live"]),
        "Targets (one thread, 10-frame chunks; live: the whole process):",
        "",
        "| target | limit | measured | met |",
        "|---|---|---|---|",
    ]
    for t in result["targets"]:
        sign = ">=" if t["at_least"] else "<="
        met = "skipped" if t["met"] is None else ("yes" if t["met"] else "no")
        lines.append(f"| {t['target']} | {sign} {t['limit']:g} | {t['measured']} | {met} |")
    return "\n".join(lines)

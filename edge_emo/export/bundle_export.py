"""Checkpoint -> bundle: the one export path.

    export_bundle("finetuned.safetensors", "models/default.bundle", precision="int8")

builds the streaming graph (edge_emo/export/graph.py) from the checkpoint's weights, quantizes it for int8 (dynamic,
every MatMul except the head, inside the Scan bodies too), checks it against the torch model on a short
sequence, and writes the bundle atomically with its manifest (edge_emo/runtime/bundle.py). An int8 bundle also
carries the fp32 graph with onnxruntime's fused GRU op (same weights, checked the same way): on some CPUs it
runs faster than the int8 Scan graph, and the device measures which (edge_emo/runtime/graph_choice.py).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edge_emo.export.graph import HEAD_NODES, IR_VERSION, OPSET, gru_graph, gru_op_graph
from edge_emo.runtime.bundle import (
    GRAPH,
    GRU_GRAPH,
    MAX_CHUNK_FRAMES,
    Bundle,
    check_replaceable,
    graph_metadata,
    model_version,
    sha256_bytes,
    write_bundle,
)
from edge_emo.runtime.session import ort_session
from edge_emo.signing import signer
from edge_emo.train.checkpoint import Checkpoint, applied_cue_margin, load_checkpoint, provenance

FP32_TOLERANCE = 1e-4  # max abs difference to torch of the fp32 graph, per frame and emotion
CHECK_FRAMES = 300  # 3 s of frames at 10 ms for the export-time check against torch
# The default chunk, and so the default update interval of `listen` (one update per chunk): 80 ms, 4 frames
# at a 20 ms hop (8 at 10 ms). 100 ms chunks left the median frame 150 ms after its audio (openSMILE hands a
# 20 ms frame over 110 ms after its end, then the frame waits for the rest of its chunk); 80 ms cost the same
# per frame (benchmarks/README.md).
UPDATE_S = 0.08


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic int8: weights int8 per tensor, activations uint8 with a per-call scale; MatMulInteger for
    every MatMul but the fp32 head, including the recurrent products inside the Scan bodies."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        logging.disable(logging.WARNING)  # silence its generic advice to pre-process image models
        try:
            quantize_dynamic(
                src,
                dst,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=list(HEAD_NODES),
                extra_options={"EnableSubgraph": True},  # without it the loops would stay fp32
            )
        finally:
            logging.disable(logging.NOTSET)
        quantized = onnx.load(dst)
    quantized.ir_version = IR_VERSION
    onnx.checker.check_model(quantized, full_check=True)
    return quantized


def _weights(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in ckpt.model.state_dict().items()}


def check_against_torch(
    ckpt: Checkpoint, graph: bytes, chunk_frames: int, frames: int = CHECK_FRAMES
) -> float:
    """Max abs difference of per-frame intensities: the graph run in chunks with carried state vs torch over
    the whole sequence, on standardised random frames (seeded)."""
    x = np.random.default_rng(0).standard_normal((frames, ckpt.spec.dim)).astype(np.float32)
    model = ckpt.model.eval()
    with torch.inference_mode():
        reference = model.head(model.hidden_states(torch.from_numpy(x)[None])[0])[0].numpy()
    session = ort_session(graph)
    state = np.zeros((model.config.layers, 1, model.config.hidden), dtype=np.float32)
    out = []
    for start in range(0, frames, chunk_frames):
        y, state, _ = session.run(None, {"features": x[None, start : start + chunk_frames], "state": state})
        out.append(y[0])
    return float(np.abs(np.concatenate(out) - reference).max())


def _provenance(ckpt: Checkpoint, ckpt_file: Path | None) -> dict[str, Any]:
    """The training facts a reader looks for first, the full training record, and how the export ran."""
    p = ckpt.provenance
    finetune = p.get("finetune") or {}
    export = provenance()
    if ckpt_file is not None:
        export["checkpoint"] = str(ckpt_file)
        export["checkpoint_sha256"] = sha256_bytes(ckpt_file.read_bytes())
    return {
        "stage": p.get("stage", "unknown"),
        "data": p.get("data"),
        "label_budget": finetune.get("labeled_clips"),
        "training_speakers": finetune.get("speakers"),
        "seed": finetune.get("seed"),
        "git_commit": p.get("git_commit"),
        "command": p.get("command"),
        "training": p,
        "export": export,
    }


def export_bundle(
    checkpoint: str | Path | Checkpoint,
    out_dir: str | Path,
    precision: str = "int8",
    chunk_frames: int | None = None,
    sign_key: str | Path | None = None,
) -> Bundle:
    """Write the bundle of a checkpoint (a path or a loaded Checkpoint) at `out_dir` and return it; signed
    with the Ed25519 private key file `sign_key` if given (edge_emo/signing.py). `chunk_frames` (frames per
    graph call) defaults to 80 ms of frames, one live update."""
    if precision not in ("int8", "fp32"):
        raise ValueError(f"precision must be 'int8' or 'fp32', not {precision!r}")
    if chunk_frames is not None and not 1 <= chunk_frames <= MAX_CHUNK_FRAMES:  # 0 too: never the default
        raise ValueError(f"--chunk-frames {chunk_frames} is outside 1..{MAX_CHUNK_FRAMES}")
    check_replaceable(Path(out_dir))  # before the work: a folder of the user's is never replaced
    sign = None if sign_key is None else signer(Path(sign_key))  # a bad key fails before the work too
    ckpt_file = None if isinstance(checkpoint, Checkpoint) else Path(checkpoint)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(ckpt_file)
    if ckpt.provenance.get("stage") == "pretrained":
        raise ValueError(
            f"{ckpt_file or 'the checkpoint'} is pretrained only: its emotion head was never trained. "
            "Fine-tune it first (`edge-emo finetune DATA_DIR --init CKPT --out ft.safetensors`), then export that"
        )
    if chunk_frames is None:
        chunk_frames = max(1, round(UPDATE_S / ckpt.spec.hop_s))
    config = ckpt.model.config
    if config.n_emotions != len(ckpt.emotions) or config.n_features != ckpt.spec.dim:
        raise ValueError(
            "checkpoint is inconsistent: model shape does not match its emotions or feature spec"
        )

    weights = _weights(ckpt)
    model = gru_graph(weights)
    if precision == "int8":
        model = quantize_int8(model)
    graph, max_diff = _checked(ckpt, model, precision, chunk_frames)
    graphs = [_entry(precision, GRAPH, precision, "Scan", max_diff)]
    more_graphs = {}
    if precision == "int8":  # the fp32 graph a CPU without fast int8 runs faster (graph_choice.py)
        more_graphs[GRU_GRAPH], gru_diff = _checked(ckpt, gru_op_graph(weights), "fp32", chunk_frames)
        graphs.append(_entry("fp32-gru", GRU_GRAPH, "fp32", "GRU", gru_diff))

    prov = _provenance(ckpt, ckpt_file)
    manifest = {
        "version": model_version(prov, precision, graph),
        "precision": precision,
        "feature_spec": ckpt.spec.to_dict(),
        "normalization": ckpt.norm.to_dict(),
        "emotions": list(ckpt.emotions),
        "state_shape": [config.layers, 1, config.hidden],
        "chunk_frames": chunk_frames,
        "graph": {
            "opset": OPSET,
            "ir_version": IR_VERSION,
            "inputs": {"features": [1, "T", config.n_features], "state": [config.layers, 1, config.hidden]},
            "outputs": {
                "intensities": [1, "T", config.n_emotions],
                "state_out": [config.layers, 1, config.hidden],
                "hidden_sum": [1, config.hidden],
            },
            "head": {"weight": "head.weight", "bias": "head.bias", "math": "hidden @ weight + bias"},
            "check_max_abs_diff_vs_torch": max_diff,
        },
        "graphs": graphs,
        "provenance": prov,
    }
    if ckpt.adaptation is not None:
        manifest["speaker_adaptation"] = ckpt.adaptation.to_dict()
    cue_margin = applied_cue_margin(ckpt.provenance)
    if cue_margin:
        manifest["cue_margin"] = cue_margin
    return write_bundle(out_dir, graph, manifest, sign=sign, more_graphs=more_graphs)


def _checked(
    ckpt: Checkpoint, model: onnx.ModelProto, precision: str, chunk_frames: int
) -> tuple[bytes, float]:
    """The graph with its metadata, serialized, and its max difference to torch (an fp32 graph's must be
    within FP32_TOLERANCE; int8's is recorded: the quantization error)."""
    onnx.helper.set_model_props(model, graph_metadata(ckpt.spec.name, ckpt.emotions, precision))
    graph = model.SerializeToString()
    max_diff = check_against_torch(ckpt, graph, chunk_frames)
    if precision == "fp32" and max_diff > FP32_TOLERANCE:
        raise RuntimeError(f"exported fp32 graph differs from torch by {max_diff:.2e} (> {FP32_TOLERANCE})")
    return graph, max_diff


def _entry(name: str, file: str, precision: str, op: str, max_diff: float) -> dict[str, Any]:
    """A graph of the manifest's `graphs` (write_bundle adds its sha256 and size)."""
    return {
        "name": name,
        "file": file,
        "precision": precision,
        "op": op,
        "check_max_abs_diff_vs_torch": max_diff,
    }

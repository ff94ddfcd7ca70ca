"""The one way edge-emo opens an ONNX graph with onnxruntime: on the CPU, `threads` intra-op threads and one
inter-op thread (the graph runs its nodes in sequence), warnings silenced, telemetry off. The runtime, the
export check and the bench all use it, so what is measured is what the device runs."""

from __future__ import annotations

from pathlib import Path


def ort_session(
    model: str | Path | bytes,
    threads: int = 1,
    *,
    optimize: bool = True,
    log_severity: int = 3,
    optimized_path: Path | None = None,
):
    """An onnxruntime InferenceSession of `model` (a path or the serialized graph). `optimize=False` only
    reads it (no graph optimisation); `optimized_path` keeps the graph as onnxruntime optimised it."""
    import onnxruntime as ort

    ort.disable_telemetry_events()  # a no-op off Windows; nothing leaves the device
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = log_severity
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    model = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

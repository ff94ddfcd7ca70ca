"""Export a trained checkpoint as the streaming ONNX bundle the device runs (fp32 or int8)."""

from export.export_bundle import export_bundle, quantize_int8
from export.graph import gru_graph

__all__ = ["export_bundle", "gru_graph", "quantize_int8"]

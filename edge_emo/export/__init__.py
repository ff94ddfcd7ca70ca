"""Export a trained checkpoint as the streaming ONNX bundle the device runs (fp32 or int8).

`edge_emo.export.graph` needs only numpy and onnx (the benchmarks build fp32 graphs with it on boards without torch);
`export_bundle` and `quantize_int8` need torch and are imported on first use (from `bundle_export`, a
submodule named unlike the function: importing a submodule sets the package attribute of its name, which
would shadow a function of the same name)."""

from edge_emo.export.graph import gru_graph

__all__ = ["export_bundle", "gru_graph", "quantize_int8"]


def __getattr__(name: str):
    if name in ("export_bundle", "quantize_int8"):
        import importlib

        module = importlib.import_module("edge_emo.export.bundle_export")  # the submodule, which needs torch
        globals().update(export_bundle=module.export_bundle, quantize_int8=module.quantize_int8)
        return globals()[name]
    raise AttributeError(f"module 'edge_emo.export' has no attribute {name!r}")

"""The device side: runs exported bundles with onnxruntime and numpy, never torch."""

"""edge-emo: self-supervised speech emotion recognition for wearables."""

import os

__version__ = "0.1.0"

# onnxruntime's official builds (1.2x on Linux and macOS too) start Microsoft 1DS telemetry when first
# imported: a device identifier and an offline event cache under ~/.cache/Microsoft, a session file in the
# temporary folder, uploads when online. A wearable that listens to bystanders sends nothing anywhere; the
# switch only works before onnxruntime is loaded, hence here. Set ORT_DISABLE_TELEMETRY=0 to allow it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

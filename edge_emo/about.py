"""What `edge-emo --version` prints: the package, the model it ships and the libraries that compute it
(read from installed metadata and the manifest, so it imports neither onnxruntime nor openSMILE)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from edge_emo import __version__

SHIPPED_MANIFEST = Path(__file__).parent / "models" / "default.bundle" / "manifest.json"


def _installed(*names: str) -> str:
    """The version of the first installed distribution of `names` (onnxruntime comes in several builds)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def versions() -> str:
    try:
        model = str(json.loads(SHIPPED_MANIFEST.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        model = "not installed"
    return (
        f"edge-emo {__version__}\n"
        f"shipped model {model}\n"
        f"onnxruntime {_installed('onnxruntime', 'onnxruntime-gpu')}\n"
        f"openSMILE (opensmile) {_installed('opensmile')}"
    )

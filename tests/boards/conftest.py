from __future__ import annotations

# The export tests' checkpoint and its fp32/int8 bundles (production shape, built once per session).
from tests.export.conftest import bundles, checkpoint_path

__all__ = ["bundles", "checkpoint_path"]

"""The runtime tests use the small real bundles of tests/conftest.py (`bundles`, `bundle`) and a clip."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures import synth_speech, write_wav


@pytest.fixture(scope="session")
def clip_path(tmp_path_factory):
    """A 3 s speech-like clip at 16 kHz, leading and trailing quiet included."""
    x = np.concatenate([np.zeros(4000, np.float32), synth_speech(2.5, seed=5), np.zeros(4000, np.float32)])
    return write_wav(tmp_path_factory.mktemp("clip") / "clip.wav", x)

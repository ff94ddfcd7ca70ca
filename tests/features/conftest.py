from __future__ import annotations

import numpy as np
import pytest

from edge_emo.features import extract, spec_for
from tests.fixtures import synth_speech

FEATURE_SETS = ["egemaps", "compare"]
PITCH_COLUMN = {"egemaps": "F0semitoneFrom27.5Hz_sma3nz", "compare": "F0final_sma"}


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """3 s of speech-like audio at 16 kHz."""
    return synth_speech(3.0, seed=7)


@pytest.fixture(scope="session", params=FEATURE_SETS)
def feature_set(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def offline_frames(speech: np.ndarray) -> dict[str, np.ndarray]:
    return {fs: extract(speech, 16000, spec_for(fs)) for fs in FEATURE_SETS}

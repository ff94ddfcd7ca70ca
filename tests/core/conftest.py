from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from tests.fixtures import synth_speech, write_wav


def make_corpus(root: Path, n_speakers: int = 5, per_speaker: int = 4, seconds: float = 1.2) -> Path:
    """A labeled corpus of speech-like clips in the layout of emo_speech_dev (labels.csv + audio)."""
    rows = ["path,speaker,corpus,emotion," + ",".join(EMOTIONS)]
    for s in range(n_speakers):
        for k in range(per_speaker):
            i = s * per_speaker + k
            rel = f"spk{s}/clip{k}.wav"
            (root / f"spk{s}").mkdir(parents=True, exist_ok=True)
            write_wav(root / rel, synth_speech(seconds, seed=i) * (0.3 + 0.2 * (i % 3)))
            intensities = np.zeros(6)
            intensities[i % 6] = 2 + i % 2
            rows.append(f"{rel},spk{s},synth,x," + ",".join(f"{v:g}" for v in intensities))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))

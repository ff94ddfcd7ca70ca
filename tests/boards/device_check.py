"""Run inside a separate virtual environment that has only `pip install edge-emo` (no extras): the device path
as a board would run it. Not a test module itself; tests/boards/test_install.py starts it with the venv's
interpreter in isolated mode (-I), so `edge_emo` comes from the installed wheel, never from the repository.

Usage: python -I device_check.py INPUT_DIR OUTPUT_NPZ BUNDLE...

Reads INPUT_DIR/clips.npz (raw feature clips `clip0`, `clip1`, ...) and INPUT_DIR/speech.wav; writes
OUTPUT_NPZ (`features`: eGeMAPS frames of the WAV extracted here; `fp32`/`int8`: each bundle's utterance
intensities of the clips) and prints a JSON line of versions and facts about this environment.
Kept to Python 3.9 syntax on purpose."""

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime

import edge_emo
from edge_emo.features import extract_file, spec_for
from edge_emo.runtime.bundle import load_bundle

inputs, output, bundle_paths = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
stored = np.load(inputs / "clips.npz")
clips = [stored[f"clip{i}"] for i in range(len(stored.files))]

outputs = {"features": extract_file(inputs / "speech.wav", spec_for("egemaps"))}
for path in bundle_paths:
    bundle = load_bundle(path)
    outputs[bundle.precision] = bundle.predict_utterances(clips)
np.savez(output, **outputs)

print(
    json.dumps(
        {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "edge_emo_file": edge_emo.__file__,
            "torch_installed": importlib.util.find_spec("torch") is not None,
            "torch_imported": "torch" in sys.modules,
        }
    )
)

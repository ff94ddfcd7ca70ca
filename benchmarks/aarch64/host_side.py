"""The x86 host's half of run_qemu.sh, run with the training environment (torch) and the repository on
PYTHONPATH. Training and export happen on a workstation; the board gets only bundles, as in deployment.

    python benchmarks/aarch64/host_side.py prepare SHARE   # bundles, inputs, a corpus, the host's results
    python benchmarks/aarch64/host_side.py compare SHARE   # host vs aarch64 results, one JSON object

prepare writes into SHARE: bundles/{fp32,int8}.bundle (a seeded 2 x 256 GRU on the real eGeMAPS spec),
inputs/ (tests/boards inputs), corpus/ (a small labeled corpus of speech-like clips), host.npz (device_check.py
run here), host-evaluate-{fp32,int8}.json (`edge-emo evaluate` here), host-listen.jsonl (`edge-emo listen
--input sample --fast --json` here); and runtime-bundles/ with the bundles of
tests/conftest.py (EDGE_EMO_TEST_BUNDLES points the tests on the board at them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEVICE_CHECK = ROOT / "tests/boards/device_check.py"


def prepare(share: Path) -> None:
    import torch

    from edge_emo.emotions import EMOTIONS
    from edge_emo.export import export_bundle
    from edge_emo.features import NormStats, spec_for
    from edge_emo.model import EmotionGRU, ModelConfig
    from edge_emo.train.checkpoint import Checkpoint, provenance, save_checkpoint
    from tests.boards.shared import write_inputs
    from tests.conftest import build_bundles
    from tests.core.conftest import make_corpus

    (share / "inputs").mkdir(parents=True)
    clips = write_inputs(share / "inputs")
    speech = clips[-1]
    spec = spec_for("egemaps")
    torch.manual_seed(0)
    model = EmotionGRU(ModelConfig(spec.dim))
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(0.1, 0.6, len(EMOTIONS)))
    norm = NormStats(speech.mean(0), speech.std(0) + 1e-3)
    prov = provenance(stage="finetuned", data=["aarch64-check"], finetune={"labeled_clips": 0, "seed": 0})
    save_checkpoint(Checkpoint(model, spec, norm, EMOTIONS, prov), share / "checkpoint.safetensors")
    bundles = [
        export_bundle(share / "checkpoint.safetensors", share / "bundles" / f"{p}.bundle", precision=p)
        for p in ("fp32", "int8")
    ]
    make_corpus(share / "corpus")
    subprocess.run(
        [sys.executable, DEVICE_CHECK, share / "inputs", share / "host.npz", *(b.path for b in bundles)],
        check=True,
    )
    listen = [sys.executable, "-m", "edge_emo", "listen", "--input", "sample", "--fast", "--json"]
    (share / "host-listen.jsonl").write_text(
        subprocess.run(listen, check=True, capture_output=True, text=True).stdout
    )
    for b in bundles:
        evaluation = subprocess.run(
            [sys.executable, "-m", "edge_emo", "evaluate", b.path, share / "corpus", "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (share / f"host-evaluate-{b.precision}.json").write_text(evaluation)
    (share / "runtime-bundles").mkdir()
    build_bundles(share / "runtime-bundles")


def columns_over_1_percent(host: np.ndarray, arm: np.ndarray, columns) -> dict:
    """Per feature column: on how many frames aarch64 differs from the host by more than 1%, and the
    largest absolute difference there (columns that never do are left out)."""
    difference = np.abs(host - arm)
    over = difference > 0.01 * np.maximum(np.abs(host), 1e-6)
    out = {"frames": int(over.any(1).sum()), "of_frames": len(host)}
    for j, name in enumerate(columns):
        if over[:, j].any():
            out[name] = {"frames": int(over[:, j].sum()), "max_abs": round(float(difference[:, j].max()), 3)}
    return out


def compare(share: Path) -> dict:
    """Largest absolute differences, host vs aarch64: features, utterance intensities, evaluation metrics,
    `edge-emo listen` on the shipped sample."""
    from edge_emo.features import spec_for
    from tests.boards.shared import listen_differences

    out = {}
    with np.load(share / "host.npz") as host, np.load(share / "aarch64.npz") as arm:
        for key in host.files:
            out[key] = (
                float(np.abs(host[key] - arm[key]).max()) if host[key].shape == arm[key].shape else None
            )
        if host["features"].shape == arm["features"].shape:
            columns = spec_for("egemaps").columns
            out["features_over_1_percent"] = columns_over_1_percent(
                host["features"], arm["features"], columns
            )
    for precision in ("fp32", "int8"):
        host = json.loads((share / f"host-evaluate-{precision}.json").read_text())
        arm = json.loads((share / f"aarch64-evaluate-{precision}.json").read_text())
        out[f"evaluate-{precision}"] = {
            "host_macro_f1": host["model"]["macro_f1"],
            "aarch64_macro_f1": arm["model"]["macro_f1"],
            "host_mae": host["model"]["mae"],
            "aarch64_mae": arm["model"]["mae"],
        }
    if (share / "listen.jsonl").is_file():
        host = (share / "host-listen.jsonl").read_text()
        out["listen"] = listen_differences(host, (share / "listen.jsonl").read_text())
    return out


if __name__ == "__main__":
    command, share = sys.argv[1], Path(sys.argv[2])
    if command == "prepare":
        prepare(share)
    else:
        print(json.dumps(compare(share)))

"""Are the eGeMAPS formant differences between aarch64 and x86 a porting bug or an ill-conditioned feature?

Runs on the x86 host only (no emulation, no second machine): extracts the eGeMAPS frames of run_qemu.sh's
WAV, then of inputs that are the same for the formants up to floating-point rounding, and counts on how many
frames each column moves by more than 1% (as run_qemu.sh counts aarch64 against x86):

- `float32_input`: the same sample values handed to openSMILE as 32-bit floats instead of 16-bit PCM;
- `gain_1e-6`: those floats times 1 + 1e-6 and 1 - 1e-6 (a few float32 rounding steps; LPC roots, hence
  formants, do not depend on the gain);
- `noise_-120dBFS`: those floats plus white noise at -120 dBFS (three seeds).

If the formant columns jump under these while the other columns stay put, the formant tracker amplifies
last-bit differences: openSMILE's cFormantLpc keeps the LPC polynomial's roots whose angle lies in
[minF, maxF] and numbers them F1, F2, ... in frequency order, so a root crossing a limit renumbers every
formant above it; then any change of floating-point rounding (fused multiply-adds, vectorised sums, another
libm) moves the same kind of frames.

    python benchmarks/aarch64/formant_sensitivity.py SHARE

SHARE is run_qemu.sh's share folder (inputs/speech.wav, host.npz and, if the aarch64 run got that far,
aarch64.npz). Prints one JSON object. With aarch64.npz, it also says how many of the frames where aarch64
differs from x86 also move under the rounding-level changes, beside how many of all frames do.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from edge_emo.features import extract, smile, spec_for
from edge_emo.features.audio import load_audio

# the module, not the function of the same name that edge_emo.features exports
extract_module = importlib.import_module("edge_emo.features.extract")

NOISE_DBFS = -120.0


def extract_float32(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """`extract` with the samples handed to openSMILE as 32-bit floats (cExternalAudioSource nBits = 33)
    instead of 16-bit PCM: the input can then change by less than one 16-bit step."""
    config_text = smile._config_text
    with (
        mock.patch.object(
            smile, "_config_text", lambda *a: config_text(*a).replace("nBits = 16", "nBits = 33")
        ),
        mock.patch.object(extract_module, "to_pcm16", lambda x: np.asarray(x, dtype=np.float32)),
    ):
        return extract(signal, sample_rate, spec_for("egemaps"))


def moved(reference: np.ndarray, other: np.ndarray, columns: list[str], formant: np.ndarray) -> dict:
    """Where `other` differs from `reference` by more than 1%: frames, and per column the frames and the
    largest absolute difference; and the largest difference of a column that does not depend on formants,
    relative to that column's largest magnitude."""
    difference = np.abs(reference - other)
    over = difference > 0.01 * np.maximum(np.abs(reference), 1e-6)
    scale = np.maximum(np.abs(reference).max(0), 1e-6)
    return {
        "frames_over_1_percent": int(over.any(1).sum()),
        "columns": {
            c: {"frames": int(over[:, j].sum()), "max_abs": round(float(difference[:, j].max()), 3)}
            for j, c in enumerate(columns)
            if over[:, j].any()
        },
        "other_columns_largest_relative_difference": float((difference.max(0) / scale)[~formant].max()),
        "_over": over.any(1),
    }


def main() -> None:
    share = Path(sys.argv[1])
    columns = list(spec_for("egemaps").columns)
    # F1-F3 frequency, bandwidth, amplitude; H1-A3: A3 is the harmonic amplitude at F3
    formant = np.array([c.startswith(("F1", "F2", "F3")) or "H1-A3" in c for c in columns])
    signal, rate = load_audio(share / "inputs/speech.wav")
    with np.load(share / "host.npz") as host:
        pcm16 = host["features"]
    if not np.array_equal(extract(signal, rate, spec_for("egemaps")), pcm16):
        sys.exit(f"{share}: host.npz does not hold this machine's features of inputs/speech.wav")

    float32 = extract_float32(signal, rate)
    rounding = {"float32_input": moved(pcm16, float32, columns, formant)}
    for gain in (1 + 1e-6, 1 - 1e-6):
        rounding[f"gain_{gain:.6f}"] = moved(float32, extract_float32(signal * gain, rate), columns, formant)
    # Not only rounding: in the clip's pauses (a -86 dBFS noise floor) this noise changes the signal itself.
    noise_runs = {}
    for seed in range(3):
        noise = np.random.default_rng(seed).standard_normal(signal.shape) * 10 ** (NOISE_DBFS / 20)
        noisy = extract_float32(signal + noise.astype(np.float32), rate)
        noise_runs[f"noise_{NOISE_DBFS:g}dBFS_seed{seed}"] = moved(float32, noisy, columns, formant)
        noise_runs[f"noise_{NOISE_DBFS:g}dBFS_seed{seed}"].pop("_over")

    fragile = np.any([r.pop("_over") for r in rounding.values()], axis=0)
    out = {
        "frames": len(pcm16),
        "rounding_level_runs": rounding,
        "frames_moved_by_a_rounding_level_run": int(fragile.sum()),
        "noise_runs": noise_runs,
    }
    if (share / "aarch64.npz").is_file():
        with np.load(share / "aarch64.npz") as arm:
            aarch64 = moved(pcm16, arm["features"], columns, formant)
        differs = aarch64.pop("_over")
        out["aarch64_vs_x86"] = aarch64
        out["aarch64_frames_that_a_rounding_level_run_also_moves"] = int((differs & fragile).sum())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

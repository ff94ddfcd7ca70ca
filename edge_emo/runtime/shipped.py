"""What ships inside the package: the default model bundle and a sample recording."""

from __future__ import annotations

from pathlib import Path

from edge_emo.runtime.bundle import Bundle, load_bundle

PACKAGE = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = PACKAGE / "models" / "default.bundle"
SAMPLES = PACKAGE / "samples"


def sample_path() -> Path:
    """The shipped sample recording (`listen --input sample`)."""
    samples = sorted(SAMPLES.glob("*.flac"))
    if not samples:
        raise ValueError(f"no sample audio is installed in {SAMPLES}")
    return samples[0]


def model_bundle(model: Path | None) -> Bundle:
    """--model BUNDLE; none or 'shipped': the bundled model."""
    if model is not None and str(model) != "shipped":
        return load_bundle(model)
    if not (DEFAULT_MODEL / "manifest.json").is_file():
        raise ValueError(f"the default model is not installed ({DEFAULT_MODEL}); pass --model BUNDLE")
    return load_bundle(DEFAULT_MODEL)


def is_installed_model(path: Path) -> bool:
    """True for bundles inside the installed package (the shipped model): never personalized in place."""
    return PACKAGE in path.resolve().parents

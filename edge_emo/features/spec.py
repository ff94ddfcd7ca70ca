"""What a frame of features is. A `FeatureSpec` travels inside checkpoints and bundles; the runtime
rebuilds its extractor from it and never re-declares any of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class FeatureSet(str, Enum):
    """Frame-level feature sets edge-emo can train on."""

    egemaps = "egemaps"  # openSMILE eGeMAPSv02 low-level descriptors, 25 per frame
    # eGeMAPSv02 without formants and harmonics (13 per frame: loudness, spectral shape, MFCC 1-4, F0, jitter,
    # shimmer; the same values as those columns of egemaps) at about half its CPU
    egemaps_lite = "egemaps-lite"
    compare = "compare"  # openSMILE ComParE_2016 low-level descriptors, 65 per frame
    covarep = "covarep"  # CMU-MOSEI's precomputed COVAREP frames, 74 per frame (no extractor on device)


@dataclass(frozen=True)
class FeatureSpec:
    """A frame-level feature stream: which set, its columns in order, its hop and input sample rate."""

    name: str
    columns: tuple[str, ...]
    hop_s: float = 0.01
    sample_rate: int | None = 16000  # None: precomputed features, no audio front end

    @property
    def dim(self) -> int:
        return len(self.columns)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = list(self.columns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            name=str(d["name"]),
            columns=tuple(d["columns"]),
            hop_s=float(d["hop_s"]),
            sample_rate=None if d.get("sample_rate") is None else int(d["sample_rate"]),
        )

    def check_compatible(self, other: FeatureSpec, what: str = "model") -> None:
        """Raise a clear error when features of `other` cannot feed a model trained on `self`."""
        if self.name != other.name or self.columns != other.columns or self.hop_s != other.hop_s:
            raise FeatureMismatchError(
                f"{what} was trained on feature set '{self.name}' ({self.dim} values per frame, "
                f"hop {self.hop_s * 1000:g} ms) but got '{other.name}' ({other.dim} values, "
                f"hop {other.hop_s * 1000:g} ms)"
            )


class FeatureMismatchError(ValueError):
    """Features of one set were given to a model trained on another."""

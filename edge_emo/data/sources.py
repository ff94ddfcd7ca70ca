"""The corpora a command names: folders (labels.csv, manifest.csv, .csd files or feature logs) and a CMU-MOSEI
pair, as ClipSets of one feature set, and which feature set that is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_emo.data.clips import ClipSet
from edge_emo.data.corpus import load_corpus
from edge_emo.data.mosei import covarep_spec, find_mosei, load_mosei
from edge_emo.data.splits import Split
from edge_emo.features import FeatureSet, FeatureSpec, spec_for
from edge_emo.features.log_format import is_feature_log


def feature_spec(feature_set: str, hop_ms: int | None = None) -> FeatureSpec:
    """The spec of a feature set by name, a frame every `hop_ms` (default 10); covarep is MOSEI's
    precomputed one (no extractor, its own hop)."""
    if FeatureSet(feature_set) is FeatureSet.covarep:
        if hop_ms is not None:
            raise ValueError(
                "--hop-ms applies to features extracted from audio, not to MOSEI's covarep frames"
            )
        return covarep_spec()
    if hop_ms is None:
        return spec_for(FeatureSet(feature_set))
    return spec_for(FeatureSet(feature_set), hop_ms / 1000)


def default_feature_set(data_dirs: Sequence[Path], mosei: bool) -> str:
    """covarep when MOSEI is among the corpora (it has no audio), else egemaps."""
    return "covarep" if mosei or any(find_mosei(d) for d in data_dirs) else "egemaps"


def training_spec(
    init_spec: FeatureSpec | None,
    feature_set: str | None,
    data_dirs: Sequence[Path],
    mosei: bool,
    hop_ms: int | None = None,
) -> FeatureSpec:
    """The features to train on: a pretrained checkpoint's (`init_spec`; a different --feature-set or
    --hop-ms is an error), else --feature-set (at --hop-ms), else the default for the corpora."""
    if init_spec is not None:
        if feature_set is not None and feature_set != init_spec.name:
            raise ValueError(f"--feature-set {feature_set} differs from the checkpoint's ({init_spec.name})")
        if hop_ms is not None and abs(hop_ms / 1000 - init_spec.hop_s) > 1e-9:
            raise ValueError(
                f"--hop-ms {hop_ms} differs from the checkpoint's ({init_spec.hop_s * 1000:g} ms)"
            )
        return init_spec
    return feature_spec(feature_set or default_feature_set(data_dirs, mosei), hop_ms)


def check_mosei_pair(covarep: Path | None, labels: Path | None) -> None:
    if (covarep is None) != (labels is None):
        raise ValueError("--mosei-covarep and --mosei-labels go together")


def load_corpora(
    data_dirs: Sequence[Path],
    mosei_covarep: Path | None,
    mosei_labels: Path | None,
    spec: FeatureSpec,
    split: Split | str = Split.all,
    seed: int = 0,
    cut: str = "whole",
) -> list[ClipSet]:
    """Every corpus named on the command line, as ClipSets of `spec` features (audio cut as `cut` says;
    feature logs are speech already)."""
    corpora = [
        load_corpus(d, spec, split, seed, cut="whole" if is_feature_log(d) else cut) for d in data_dirs
    ]
    check_mosei_pair(mosei_covarep, mosei_labels)
    if mosei_covarep is not None:
        corpora.append(load_mosei(mosei_covarep, mosei_labels, spec).split(split, seed))
    if not corpora:
        raise ValueError("no corpus given: name a DATA_DIR or --mosei-covarep/--mosei-labels")
    return corpora


def one_corpus(corpora: Sequence[ClipSet]) -> ClipSet:
    if len(corpora) != 1:
        raise ValueError("this command takes exactly one labeled corpus")
    return corpora[0]

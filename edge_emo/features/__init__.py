from edge_emo.features.normalization import NormStats
from edge_emo.features.spec import FeatureMismatchError, FeatureSet, FeatureSpec

__all__ = ["FeatureMismatchError", "FeatureSet", "FeatureSpec", "NormStats"]

"""Frame-level acoustic features: openSMILE low-level descriptors offline and streaming, the feature spec
that travels with a model, and normalisation statistics. Needs numpy, opensmile, soundfile and soxr; never
torch."""

from .audio import (
    AudioFileError,
    AudioInputError,
    BadSamplesError,
    ChannelLayoutError,
    EmptyAudioError,
    SampleRateError,
    audio_seconds,
    check_rate,
    load_audio,
    require_audio_file,
    resample,
    to_mono,
)
from .extract import extract, extract_file
from .normalization import NormStats
from .smile import OpenSmileError, extractable_sets, spec_for
from .spec import FeatureMismatchError, FeatureSet, FeatureSpec
from .streaming import StreamingExtractor

__all__ = [
    "AudioFileError",
    "AudioInputError",
    "BadSamplesError",
    "ChannelLayoutError",
    "EmptyAudioError",
    "FeatureMismatchError",
    "FeatureSet",
    "FeatureSpec",
    "NormStats",
    "OpenSmileError",
    "SampleRateError",
    "StreamingExtractor",
    "audio_seconds",
    "check_rate",
    "extract",
    "extract_file",
    "extractable_sets",
    "load_audio",
    "require_audio_file",
    "resample",
    "spec_for",
    "to_mono",
]

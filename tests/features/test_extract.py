"""Offline extraction: the spec, agreement with opensmile-python, resampling, and bad input."""

from __future__ import annotations

import numpy as np
import opensmile
import pytest
import soundfile
import soxr

from edge_emo.features import (
    AudioFileError,
    BadSamplesError,
    ChannelLayoutError,
    EmptyAudioError,
    FeatureMismatchError,
    FeatureSet,
    FeatureSpec,
    extract,
    extract_file,
    load_audio,
    spec_for,
)
from tests.features.conftest import PITCH_COLUMN
from tests.fixtures import synth_speech, write_wav

SMILE_SETS = {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}


def reference_smile(feature_set: str) -> opensmile.Smile:
    return opensmile.Smile(SMILE_SETS[feature_set], opensmile.FeatureLevel.LowLevelDescriptors)


def test_spec_has_the_columns_opensmile_emits(feature_set):
    spec = spec_for(feature_set)
    assert spec.dim == {"egemaps": 25, "compare": 65}[feature_set]
    assert spec.columns == tuple(reference_smile(feature_set).column_names)
    assert (spec.hop_s, spec.sample_rate, spec.name) == (0.01, 16000, feature_set)
    assert spec_for(FeatureSet(feature_set)) == spec
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_spec_for_rejects_sets_without_extractor():
    with pytest.raises(ValueError, match="precomputed"):
        spec_for("covarep")
    with pytest.raises(ValueError, match="unknown feature set 'mfcc'"):
        spec_for("mfcc")


def test_offline_equals_opensmile_python_lld(feature_set, speech, offline_frames):
    expected = reference_smile(feature_set).process_signal(speech, 16000).to_numpy()
    got = offline_frames[feature_set]
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() == 0
    assert len(got) == 296  # 3 s at a 10 ms hop; openSMILE's last frames need 60 ms of audio


def test_the_configuration_runs_only_the_components_the_frames_need(feature_set):
    """openSMILE runs every declared component on every tick: the functionals' selectors and smoothers of
    the shipped includes are left out (the frames above are still opensmile-python's, exactly), and every
    component that stays feeds the frames."""
    import re

    from edge_emo.features import smile

    text = smile._config_text(FeatureSet(feature_set), streaming=True)
    declared = set(re.findall(r"^\s*instance\[(\w+)\]\.type", text, re.M))
    shipped = set()
    for include in smile._LLD[FeatureSet(feature_set)][0]:
        with open(f"{smile._CONFIG_ROOT}/{include}") as f:
            shipped |= set(re.findall(r"^\s*instance\[(\w+)\]\.type", f.read(), re.M))
    left_out = {"egemaps": {"egemapsv02_smoSpectralZ", "gemapsv01b_smoE", "egemapsv02_energyRMS"}}
    assert left_out.get(feature_set, set()) <= shipped - declared
    assert len(shipped - declared) == {"egemaps": 25, "compare": 5}[feature_set]
    # egemaps-lite also leaves out the formant and harmonics components
    if feature_set == "egemaps":
        lite = smile._config_text(FeatureSet.egemaps_lite, streaming=True)
        lite_declared = set(re.findall(r"^\s*instance\[(\w+)\]\.type", lite, re.M))
        formants = {"gemapsv01b_resampLpc", "gemapsv01b_lpc", "gemapsv01b_formantLpc", "gemapsv01b_harmonics"}
        assert lite_declared == declared - formants
    # every kept component writes a level that another kept component (or the frame concatenation) reads
    writes, reads, component = {}, set(), None
    for line in text.splitlines():
        section = re.match(r"^\[(\w+):\w+\]", line.strip())
        if section:
            component = section.group(1)
        elif component in declared and "dmLevel" in line and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            names = {name.strip() for name in value.split(";")}
            if key == "writer.dmLevel":
                writes[component] = names
            else:
                reads |= names
    for component in declared - {"dataMemory", smile.SINK}:
        assert writes[component] & (reads | {"lld"}), component


def test_egemaps_lite_is_egemaps_without_formants_and_harmonics(speech, offline_frames):
    """Its 13 values are eGeMAPS's columns of the same names, bit for bit, offline and streaming."""
    from edge_emo.features import StreamingExtractor

    full, lite = spec_for("egemaps"), spec_for("egemaps-lite")
    dropped = [c for c in full.columns if c not in lite.columns]
    assert lite.dim == 13 and len(dropped) == 12
    assert all(c.startswith(("F1", "F2", "F3", "HNR", "logRelF0")) for c in dropped)
    keep = [full.columns.index(c) for c in lite.columns]
    frames = extract(speech, 16000, lite)
    assert np.array_equal(frames, offline_frames["egemaps"][:, keep])
    with StreamingExtractor(lite) as stream:
        pieces = []
        for start in range(0, len(speech), 480):
            stream.accept_waveform(speech[start : start + 480])
            pieces.append(stream.frames())
        pieces.append(stream.end_of_input())
    assert np.array_equal(np.concatenate(pieces), frames)


def test_a_setting_that_finds_no_key_is_an_error(monkeypatch):
    """An openSMILE release whose configuration lost a key egemaps-lite sets must not emit other frames."""
    from edge_emo.features import smile

    settings = {FeatureSet.egemaps_lite: {"egemapsv02_lldSetSelectorF": {"noSuchKey": "1"}}}
    monkeypatch.setattr(smile, "_SETTINGS", settings)
    smile._lld_components.cache_clear()
    try:
        with pytest.raises(smile.OpenSmileError, match="no 'noSuchKey' in \\[egemapsv02_lldSetSelectorF\\]"):
            smile._lld_components(FeatureSet.egemaps_lite)
    finally:
        smile._lld_components.cache_clear()


def test_pitch_is_found_in_the_fixture(offline_frames):
    """The synthetic speech is voiced where it should be: a fixture without pitch would test little."""
    spec = spec_for("compare")
    f0 = offline_frames["compare"][:, spec.columns.index(PITCH_COLUMN["compare"])]
    voiced = f0[f0 > 0]
    assert 0.5 < len(voiced) / len(f0) < 0.95
    assert 85 < np.median(voiced) < 270
    assert np.all(np.isfinite(offline_frames["egemaps"])) and np.all(offline_frames["egemaps"].std(0) > 0)


def test_silence_gives_finite_frames(feature_set):
    frames = extract(np.zeros(16000, np.float32), 16000, spec_for(feature_set))
    assert frames.shape == (96, spec_for(feature_set).dim) and np.all(np.isfinite(frames))


def test_file_equals_signal_and_stereo_is_averaged(tmp_path, speech):
    spec = spec_for("egemaps")
    left, right = speech, synth_speech(3.0, seed=8)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    signal, rate = load_audio(path)
    both, _ = soundfile.read(str(path), dtype="float32")
    assert rate == 16000 and signal.dtype == np.float32 and both.shape == (48000, 2)
    assert np.array_equal(signal, (both[:, 0] + both[:, 1]) / np.float32(2))
    assert np.array_equal(extract_file(path, spec), extract(signal, rate, spec))


def test_other_rates_are_resampled_close_to_16k(feature_set, speech, offline_frames):
    """The same content at 44.1 and 48 kHz gives nearly the frames it gives at 16 kHz.

    Not exactly: openSMILE's decisions (voicing, LPC formant and jitter candidates, logs of near-silent
    frames) flip on the last bit of 16-bit PCM. So the yardstick is what +-1 LSB of noise on the 16 kHz
    input does. Tolerance, in units of each column's std over the clip: mean difference at most twice that
    of the 1-LSB change (+0.01), median < 0.01; voicing agrees on 95% of frames and pitch has a median
    difference < 0.01 where both are voiced (measured on 4 seeds: mean 0.03-0.08 against 0.01-0.08 for
    1 LSB with egemaps, 0.01-0.02 against 0.002-0.02 with compare; voicing 98-100%)."""
    spec = spec_for(feature_set)
    reference = offline_frames[feature_set]
    scale = reference.std(axis=0) + 1e-9
    lsb_noise = np.random.default_rng(0).uniform(-1, 1, speech.size).astype(np.float32) / 32768
    one_lsb = np.abs(extract(speech + lsb_noise, 16000, spec) - reference) / scale
    pitch = spec.columns.index(PITCH_COLUMN[feature_set])
    for rate in (44100, 48000):
        upsampled = soxr.resample(speech, 16000, rate, quality="HQ").astype(np.float32)
        frames = extract(upsampled, rate, spec)
        assert frames.shape == reference.shape
        rel = np.abs(frames - reference) / scale
        assert np.median(rel) < 0.01 and rel.mean() <= 2 * one_lsb.mean() + 0.01
        voiced, voiced_here = reference[:, pitch] > 0, frames[:, pitch] > 0
        assert np.mean(voiced == voiced_here) > 0.95
        assert np.median(rel[voiced & voiced_here, pitch]) < 0.01


def test_spec_from_another_extractor_is_rejected(speech):
    spec = spec_for("egemaps")
    stale = FeatureSpec(spec.name, spec.columns[:-1], spec.hop_s, spec.sample_rate)
    with pytest.raises(FeatureMismatchError, match="24 values"):
        extract(speech, 16000, stale)


def test_a_20ms_hop_is_the_same_descriptors_half_as_often(feature_set, speech, offline_frames):
    """At 20 ms every framer steps twice as far (the windows stay 20 and 60 ms) and the pitch smoother's
    buffer spans the same time: the frames follow every other 10 ms frame closely (the 3-frame smoothing spans
    60 ms instead of 30, so not exactly)."""
    spec = spec_for(feature_set, 0.02)
    assert (spec.hop_s, spec.columns) == (0.02, spec_for(feature_set).columns)
    frames, ten = extract(speech, 16000, spec), offline_frames[feature_set]
    assert frames.dtype == np.float32 and len(frames) == 149  # 3 s at 20 ms (296 at 10 ms)
    n = min(len(frames), len(ten[::2]))
    frames, every_other = frames[:n], ten[::2][:n]
    loudness = spec.columns.index("Loudness_sma3" if feature_set == "egemaps" else "pcm_RMSenergy_sma")
    assert np.corrcoef(frames[:, loudness], every_other[:, loudness])[0, 1] > 0.95
    pitch = spec.columns.index(PITCH_COLUMN[feature_set])
    voiced = (frames[:, pitch] > 0) & (every_other[:, pitch] > 0)
    assert voiced.mean() > 0.3
    assert np.median(np.abs(frames[voiced, pitch] / every_other[voiced, pitch] - 1)) < 0.02
    from edge_emo.features import smile

    config = smile._config_text(FeatureSet(feature_set), streaming=True, hop_s=0.02)
    assert "frameStep = 0.01" not in config and config.count("frameStep = 0.02") == 2
    assert ("bufferLength = 20" if feature_set == "egemaps" else "bufferLength = 15") in config


def test_only_the_offered_hops(speech):
    with pytest.raises(ValueError, match="hop of 10, 20 ms here, not 15 ms") as e:
        spec_for("egemaps", 0.015)
    assert "\n" not in str(e.value)
    spec = spec_for("egemaps")
    with pytest.raises(FeatureMismatchError, match="not 15 ms"):
        extract(speech, 16000, FeatureSpec(spec.name, spec.columns, 0.015, spec.sample_rate))


# --- bad input: one clear line naming the file ---


def one_line_naming(excinfo: pytest.ExceptionInfo, name: str) -> None:
    message = str(excinfo.value)
    assert name in message and "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError) as e:
        extract_file(path, spec_for("egemaps"))
    one_line_naming(e, str(path))


@pytest.mark.parametrize("content", [b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10, b"just some text\n", b""])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as e:
        load_audio(path)
    one_line_naming(e, str(path))


@pytest.mark.parametrize("samples", [0, 480])  # nothing, and 30 ms: less than one 60 ms pitch frame
def test_empty_or_too_short_clip(tmp_path, samples):
    path = write_wav(tmp_path / "short.wav", np.full(samples, 0.1, np.float32))
    with pytest.raises(EmptyAudioError) as e:
        extract_file(path, spec_for("egemaps"))
    one_line_naming(e, str(path))


def test_three_channels(tmp_path):
    path = write_wav(tmp_path / "surround.wav", np.zeros((16000, 3), np.float32))
    with pytest.raises(ChannelLayoutError, match="3 audio channels") as e:
        extract_file(path, spec_for("egemaps"))
    one_line_naming(e, str(path))


def test_nan_samples(tmp_path, speech):
    bad = speech.copy()
    bad[100] = np.nan
    with pytest.raises(BadSamplesError):
        extract(bad, 16000, spec_for("egemaps"))
    path = tmp_path / "nan.wav"
    soundfile.write(str(path), bad, 16000, subtype="FLOAT")
    with pytest.raises(BadSamplesError) as e:
        extract_file(path, spec_for("egemaps"))
    one_line_naming(e, str(path))


def test_integer_pcm_input_is_scaled(speech, offline_frames):
    pcm = np.clip(speech * 32768, -32768, 32767).astype(np.int16)
    assert np.array_equal(extract(pcm, 16000, spec_for("egemaps")), offline_frames["egemaps"])
    with pytest.raises(BadSamplesError, match="uint8"):
        extract(np.zeros(16000, np.uint8), 16000, spec_for("egemaps"))


def test_loud_float_input_is_clipped_not_wrapped(speech):
    """opensmile-python converts float to int16 without clipping (1.5 wraps to a negative value)."""
    spec = spec_for("egemaps")
    loud = extract(np.clip(speech * 3, -1, 1), 16000, spec)
    assert np.array_equal(extract(speech * 3, 16000, spec), loud)

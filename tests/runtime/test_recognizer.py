"""The streaming recognizer against the offline path: real openSMILE, real onnxruntime, real bundles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_emo.features import FeatureMismatchError, extract, extract_file, load_audio
from edge_emo.features.audio import BadSamplesError, ChannelLayoutError
from edge_emo.features.normalization import RunningNorm
from edge_emo.runtime.bundle import BundleError, load_bundle, write_bundle
from edge_emo.runtime.recognizer import EmotionRecognizer, EmotionUpdate, Vad
from tests.fixtures import synth_speech

HOP = 0.01


def stream(recognizer: EmotionRecognizer, x: np.ndarray, rate: int, block: int) -> list[EmotionUpdate]:
    out = []
    for i in range(0, len(x), block):
        recognizer.accept_waveform(x[i : i + block], rate)
        out += recognizer.updates()
    recognizer.end_of_input()
    out += recognizer.updates()
    recognizer.close()
    return out


def offline(bundle, frames: np.ndarray) -> np.ndarray:
    return np.clip(bundle.predict_utterances([frames])[0], 0, 3)


def span(update: EmotionUpdate) -> slice:
    start = round(update.utterance_start_s / HOP)
    return slice(start, start + round(update.utterance_s / HOP))


def speech_and_silence(parts: list[tuple[str, float, int]], rate: int = 16000) -> np.ndarray:
    """('speech', seconds, seed) and ('silence', seconds, _) pieces; silence is a -80 dBFS noise floor."""
    rng = np.random.default_rng(0)
    pieces = [
        synth_speech(s, rate, seed)
        if kind == "speech"
        else (1e-4 * rng.standard_normal(int(s * rate))).astype(np.float32)
        for kind, s, seed in parts
    ]
    return np.concatenate(pieces)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_a_streamed_clip_ends_with_what_evaluate_predicts_for_it(bundles, clip_path, tmp_path, precision):
    """With vad=None a stream is one utterance, like a clip in `edge-emo evaluate`, which predicts through
    `load_predictor` on `load_corpus` features: the final update carries exactly those intensities."""
    from edge_emo.data.corpus import load_corpus
    from edge_emo.predictor import load_predictor

    bundle = bundles[precision]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "clip.wav").write_bytes(clip_path.read_bytes())
    (corpus / "labels.csv").write_text(
        "path,speaker,corpus,emotion,happiness,sadness,anger,surprise,disgust,fear\nclip.wav,s0,t,x,1,0,0,0,0,0\n"
    )
    model = load_predictor(bundle.path)
    spec, predict = model.spec, model.predict
    evaluated = np.clip(predict(load_corpus(corpus, spec).features)[0], 0, 3)

    x, rate = load_audio(clip_path)
    updates = stream(EmotionRecognizer(bundle, vad=None), x, rate, block=480)
    final = [u for u in updates if u.final]
    assert len(final) == 1 and final[0] is updates[-1]
    np.testing.assert_array_equal(final[0].intensities, evaluated)
    assert final[0].utterance_start_s == 0 and final[0].utterance_s == pytest.approx(
        len(extract_file(clip_path, spec)) * HOP
    )
    assert np.ptp(evaluated) > 0.01  # the model says something that could differ


def test_updates_do_not_depend_on_how_the_audio_is_cut(bundle, clip_path):
    x, rate = load_audio(clip_path)
    runs = [
        [u.to_json() for u in stream(EmotionRecognizer(bundle), x, rate, block)]
        for block in (7, 160, 1001, len(x))
    ]
    assert all(r == runs[0] for r in runs[1:])
    pcm16 = np.round(x * 32768).astype(np.int16)  # int16 and float input are the same audio
    assert [u.to_json() for u in stream(EmotionRecognizer(bundle), pcm16, rate, 333)] == runs[0]


def test_a_48_khz_stream_is_resampled_like_the_offline_path(bundle):
    x = speech_and_silence([("silence", 0.3, 0), ("speech", 2.0, 11), ("silence", 0.8, 0)], rate=48000)
    frames = extract(x, 48000, bundle.spec)
    updates = stream(EmotionRecognizer(bundle), x, 48000, block=480)
    finals = [u for u in updates if u.final]
    assert len(finals) == 1
    np.testing.assert_array_equal(finals[0].intensities, offline(bundle, frames[span(finals[0])]))


def test_utterances_are_cut_at_silence_and_each_is_its_own_clip(bundle):
    x = speech_and_silence(
        [
            ("silence", 0.5, 0),
            ("speech", 2.0, 1),
            ("silence", 1.0, 0),
            ("speech", 1.5, 2),
            ("silence", 1.0, 0),
        ]
    )
    frames = extract(x, 16000, bundle.spec)
    updates = stream(EmotionRecognizer(bundle), x, 16000, block=160)
    finals = [u for u in updates if u.final]
    assert len(finals) == 2
    starts = [u.utterance_start_s for u in finals]
    assert starts[0] == pytest.approx(0.5, abs=0.15) and starts[1] == pytest.approx(3.5, abs=0.15)
    for u in finals:
        np.testing.assert_array_equal(u.intensities, offline(bundle, frames[span(u)]))
        assert u.utterance_s < 2.1  # trailing silence is not part of the utterance
    # silence is reported as silence
    quiet = [u for u in updates if u.time_s < 0.4 or 3.0 < u.time_s < 3.4]
    assert quiet and all(not u.speech and u.dominant is None and not u.intensities.any() for u in quiet)
    talking = [u for u in updates if u.speech and not u.final and u.utterance_s >= 1.5]  # CUE_AFTER_S
    assert talking and all(u.intensities.any() for u in talking)


@pytest.fixture(scope="module")
def adapting(bundle, tmp_path_factory):
    """The test bundle, marked as trained on speaker-standardised frames (a short prior: 1 s of speech)."""
    manifest = {k: v for k, v in bundle.manifest.items() if k != "manifest_sha256"}
    manifest["speaker_adaptation"] = {"prior_s": 1.0, "memory_s": 600.0}
    out = tmp_path_factory.mktemp("adapting") / "adapting.bundle"
    write_bundle(out, bundle.graph_path.read_bytes(), manifest)
    return load_bundle(out)


@pytest.mark.parametrize("setting", [{"prior_s": -1.0, "memory_s": 600.0}, {"prior_s": 30.0}, "yes"])
def test_a_bad_speaker_adaptation_field_is_refused_before_anything_is_written(bundle, tmp_path, setting):
    manifest = {k: v for k, v in bundle.manifest.items() if k != "manifest_sha256"}
    manifest["speaker_adaptation"] = setting
    with pytest.raises(BundleError, match="speaker_adaptation|speaker adaptation|invalid manifest"):
        write_bundle(tmp_path / "bad.bundle", bundle.graph_path.read_bytes(), manifest)
    assert not (tmp_path / "bad.bundle").exists()


def test_a_speaker_adapting_stream_standardises_each_utterance_by_the_estimate_at_its_start(adapting):
    x = speech_and_silence(
        [("speech", 1.5, 1), ("silence", 1.0, 0), ("speech", 1.5, 2), ("silence", 1.0, 0), ("speech", 1.5, 3)]
    )
    x[-24000:] *= 4.0  # the last utterance louder (12 dB): the estimate follows the speaker's level
    frames = extract(x, 16000, adapting.spec)
    recognizer = EmotionRecognizer(adapting)
    assert recognizer.speaker_norm is adapting.norm  # nobody heard yet: the bundle's statistics
    finals = [u for u in stream(recognizer, x, 16000, block=160) if u.final]
    assert len(finals) == 3
    running, chunk = RunningNorm(adapting.norm, adapting.adaptation, HOP), adapting.chunk_frames
    for i, u in enumerate(finals):
        expected = adapting.stream()
        expected.norm = running.stats()
        utterance = frames[span(u)]
        for start in range(0, len(utterance), chunk):
            expected.run_chunk(utterance[start : start + chunk])
            running.add(utterance[start : start + chunk])
        np.testing.assert_array_equal(u.intensities, np.clip(expected.utterance_intensities(), 0, 3))
        if i == 0:  # the first utterance: what evaluate predicts without speakers (the prior)
            np.testing.assert_array_equal(u.intensities, offline(adapting, utterance))
    assert not np.array_equal(finals[2].intensities, offline(adapting, frames[span(finals[2])]))
    np.testing.assert_allclose(recognizer.speaker_norm.mean, running.stats().mean)
    # every update says how much of the speaker the estimate rests on: the speech analysed so far
    np.testing.assert_allclose(finals[-1].speaker_heard_s, running.speech_frames * HOP)
    assert 0 < finals[0].speaker_heard_s < finals[1].speaker_heard_s < finals[2].speaker_heard_s <= 4.5


def test_a_short_pause_stays_inside_the_utterance_and_long_speech_is_cut(bundle):
    x = speech_and_silence([("speech", 1.5, 3), ("silence", 0.3, 0), ("speech", 1.5, 4), ("silence", 1.0, 0)])
    frames = extract(x, 16000, bundle.spec)
    finals = [u for u in stream(EmotionRecognizer(bundle), x, 16000, 800) if u.final]
    assert len(finals) == 1 and finals[0].utterance_s > 3.0

    cut = Vad(max_utterance_s=1.0)
    finals = [u for u in stream(EmotionRecognizer(bundle, vad=cut), x, 16000, 800) if u.final]
    assert len(finals) >= 3 and all(u.utterance_s <= 1.0 for u in finals)
    for a, b in zip(finals, finals[1:]):
        if a.utterance_s == 1.0:  # cut by length: the next utterance starts right after
            assert b.utterance_start_s == pytest.approx(a.utterance_start_s + 1.0)
    for u in finals:
        np.testing.assert_array_equal(u.intensities, offline(bundle, frames[span(u)]))


def test_update_rate_smoothing_and_dominant(bundle, clip_path):
    x, rate = load_audio(clip_path)
    plain = stream(EmotionRecognizer(bundle, vad=None), x, rate, 1600)
    steps = np.diff([u.time_s for u in plain[:-1]])
    np.testing.assert_allclose(steps, bundle.chunk_s, atol=1e-9)  # one per chunk
    assert bundle.chunk_s == pytest.approx(0.08)  # export's default chunk
    fast = stream(EmotionRecognizer(bundle, vad=None, update_interval_s=0.04), x, rate, 1600)
    assert len(fast) == pytest.approx(2 * len(plain), abs=2)

    smooth = stream(EmotionRecognizer(bundle, vad=None, smoothing_s=0.5), x, rate, 1600)
    expected, state, last_t = [], np.zeros(6), 0.0  # exponential smoothing with a 0.5 s time constant
    for u in plain:
        state = state + (1 - np.exp(-(u.time_s - last_t) / 0.5)) * (u.intensities - state)
        expected.append(state)
        last_t = u.time_s
    np.testing.assert_allclose([u.intensities for u in smooth], expected, rtol=1e-4, atol=1e-6)
    raw_variation = np.abs(np.diff([u.intensities for u in plain], axis=0)).sum()
    assert np.abs(np.diff(expected, axis=0)).sum() < raw_variation

    for u in plain:
        assert ((u.intensities >= 0) & (u.intensities <= 3)).all()
        top = u.emotions[int(np.argmax(u.intensities))]
        assert u.dominant == (top if u.intensities.max() >= 0.5 else None)
    strict = stream(EmotionRecognizer(bundle, vad=None, dominant_min=3.01), x, rate, 1600)
    assert all(u.dominant is None for u in strict)


def test_one_onnxruntime_thread_by_default(bundle):
    default = EmotionRecognizer(bundle)
    two = EmotionRecognizer(bundle, threads=2)
    assert default._model.session.get_session_options().intra_op_num_threads == 1
    assert default._model.session.get_session_options().inter_op_num_threads == 1
    assert two._model.session.get_session_options().intra_op_num_threads == 2


def test_bad_input_is_refused_with_a_clear_error(bundles):
    recognizer = EmotionRecognizer(bundles["int8"])
    with pytest.raises(ChannelLayoutError, match="mono"):
        recognizer.accept_waveform(np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(BadSamplesError, match="NaN"):
        recognizer.accept_waveform(np.full(100, np.nan, np.float32), 16000)
    recognizer.accept_waveform(np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="44100 Hz"):
        recognizer.accept_waveform(np.zeros(100, np.float32), 44100)
    recognizer.close()
    with pytest.raises(FeatureMismatchError, match="differs from what this openSMILE extracts"):
        EmotionRecognizer(bundles["mismatch"])
    with pytest.raises(ValueError, match="update_interval_s"):
        EmotionRecognizer(bundles["int8"], update_interval_s=0)


@pytest.mark.parametrize(
    ("version", "short"),
    [
        ("finetuned-20261121-int8-104890960b", "finetuned-int8-104890960b"),
        ("personalized-20261122-fp32-0123456789", "personalized-fp32-0123456789"),
        ("finetuned-int8-1", "finetuned-int8-1"),
        ("x" * 20 + "-y" * 10 + "-0123456789abcdef", "x" * 16 + "123456789abcdef"),
    ],
)
def test_short_versions_fit_the_bridge_and_keep_the_graph_hash(bundle, version, short):
    assert dataclasses.replace(bundle, version=version).short_version(31) == short


def test_no_estimate_is_shown_before_an_utterance_holds_cue_after_s_of_speech(bundle, clip_path):
    x, rate = load_audio(clip_path)
    shown = stream(EmotionRecognizer(bundle, cue_after_s=0.0), x, rate, 1600)
    held = stream(EmotionRecognizer(bundle, cue_after_s=1.0), x, rate, 1600)
    assert len(shown) == len(held)
    early = [(a, b) for a, b in zip(shown, held) if b.speech and not b.final and b.utterance_s < 1.0]
    assert early and any(a.intensities.any() for a, _ in early)  # the onset has an estimate to hold back
    for a, b in zip(shown, held):
        if (a.speech and not a.final and a.utterance_s < 1.0) and not b.final:
            assert not b.intensities.any() and b.dominant is None
        else:  # from 1 s of speech on, and every final result, nothing changes
            np.testing.assert_array_equal(a.intensities, b.intensities)
            assert a.dominant == b.dominant
    with pytest.raises(ValueError, match="cue_after_s"):
        EmotionRecognizer(bundle, cue_after_s=float("nan"))


def pushed(
    recognizer: EmotionRecognizer, x: np.ndarray, rate: int, block: int
) -> tuple[list[EmotionUpdate], set]:
    """stream() with every update handed over by deliver_to; also the threads the callback ran on."""
    import threading

    out, threads = [], set()

    def take(update: EmotionUpdate) -> None:
        out.append(update)
        threads.add(threading.get_ident())

    recognizer.deliver_to(take)
    for i in range(0, len(x), block):
        recognizer.accept_waveform(x[i : i + block], rate)
        assert not list(recognizer.updates())  # nothing is kept for updates(): it all went to the callback
    recognizer.end_of_input()
    recognizer.close()
    return out, threads


@pytest.mark.parametrize("block", [160, 960, 4001])
def test_updates_delivered_on_opensmiles_thread_are_the_updates_of_the_pull_api(bundle, adapting, block):
    """deliver_to only moves the analysis to openSMILE's thread: the same updates in the same order, for a
    plain and a speaker-adapting bundle, at any block size, and they come from another thread than the
    caller's (the frames are analysed where they are computed)."""
    import threading

    x = speech_and_silence([("speech", 1.5, 1), ("silence", 1.0, 0), ("speech", 2.5, 2), ("silence", 0.8, 0)])
    for b in (bundle, adapting):
        expected = [u.to_json() for u in stream(EmotionRecognizer(b), x, 16000, block)]
        got, threads = pushed(EmotionRecognizer(b), x, 16000, block)
        assert [u.to_json() for u in got] == expected
        assert sum(u.final for u in got) == 2
        assert threads - {threading.get_ident()}


def test_a_delivered_update_does_not_wait_for_the_next_block(bundle):
    """Pulled (`updates()`), frames that openSMILE computes after `accept_waveform` returned are looked at
    only when the caller comes back with more audio; delivered, their update arrives while the caller waits
    (here: with no more audio at all)."""
    import threading

    x = speech_and_silence([("speech", 2.5, 5)])
    arrived = threading.Event()
    recognizer = EmotionRecognizer(bundle, vad=None, cue_after_s=0)
    recognizer.deliver_to(lambda update: arrived.set())
    recognizer.accept_waveform(x, 16000)  # one block; the caller then only waits
    assert arrived.wait(20)
    recognizer.close()


def test_what_the_delivery_callback_raises_comes_back_to_the_feeding_thread(bundle):
    """An exception in the callback (say, a closed stdout) must not die on openSMILE's thread: it comes back
    from the next accept_waveform (or end_of_input), and the callback is not called again."""
    x = speech_and_silence([("speech", 3.0, 6), ("silence", 0.5, 0)])
    calls = []

    def fail(update: EmotionUpdate) -> None:
        calls.append(update)
        raise BrokenPipeError("stdout is closed")

    recognizer = EmotionRecognizer(bundle, vad=None)
    recognizer.deliver_to(fail)
    with pytest.raises(BrokenPipeError, match="stdout is closed"):
        for i in range(0, len(x), 480):
            recognizer.accept_waveform(x[i : i + 480], 16000)
        recognizer.end_of_input()
    assert len(calls) == 1
    recognizer.close()
    with pytest.raises(RuntimeError, match="before the stream's first audio"):
        started = EmotionRecognizer(bundle)
        started.accept_waveform(x[:160], 16000)
        started.deliver_to(print)
    started.close()

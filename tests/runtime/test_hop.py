"""A model of 20 ms frames, end to end: trained by `finetune --hop-ms 20`, exported with one 80 ms update per
graph call, streamed by the recognizer and `listen` exactly as `evaluate` scores it offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_emo.data.corpus import load_corpus
from edge_emo.features import load_audio
from edge_emo.features.speech import Vad, utterance_spans
from edge_emo.predictor import load_predictor
from edge_emo.runtime.bundle import load_bundle
from edge_emo.runtime.recognizer import EmotionRecognizer, batch_for
from tests.cli import edge_emo
from tests.fixtures import synth_speech, write_wav
from tests.runtime.test_recognizer import speech_and_silence, stream
from tests.runtime.test_speech_detector import PARTS

HEADER = "path,speaker,corpus,emotion,happiness,sadness,anger,surprise,disgust,fear\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus20")
    rows = []
    for i in range(8):
        write_wav(root / f"c{i}.wav", synth_speech(1.5 + 0.1 * i, seed=40 + i) * (0.2 + 0.1 * (i % 3)))
        levels = [0] * 6
        levels[i % 6] = 1 + i % 3
        rows.append(f"c{i}.wav,s{i % 2},t,x,{','.join(map(str, levels))}\n")
    (root / "labels.csv").write_text(HEADER + "".join(rows))
    return root


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("h20") / "h20.safetensors"
    edge_emo("finetune", corpus, "--hop-ms", "20", "--epochs", "3", "--hidden", "8", "--out", out, check=True)
    return out


def test_a_20ms_model_is_exported_with_its_hop_and_an_80ms_chunk(checkpoint, tmp_path):
    edge_emo("export", checkpoint, "--out", tmp_path / "h20.bundle", check=True)
    bundle = load_bundle(tmp_path / "h20.bundle")
    assert bundle.spec.hop_s == 0.02 and bundle.chunk_frames == 4


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("h20-fp32") / "h20.bundle"
    edge_emo("export", checkpoint, "--out", out, "--precision", "fp32", check=True)
    return load_bundle(out)


def test_streamed_and_listened_as_evaluated(bundle, corpus, tmp_path):
    clip = corpus / "c7.wav"
    one = tmp_path / "one"
    one.mkdir()
    (one / "c7.wav").write_bytes(clip.read_bytes())
    (one / "labels.csv").write_text(HEADER + "c7.wav,s0,t,x,1,0,0,0,0,0\n")
    model = load_predictor(bundle.path)
    frames = load_corpus(one, model.spec).features
    assert len(frames[0]) == pytest.approx(2.2 / 0.02, abs=3)  # 2.2 s of audio, a frame every 20 ms
    evaluated = np.clip(model.predict(frames)[0], 0, 3)

    x, rate = load_audio(clip)
    updates = stream(EmotionRecognizer(bundle, vad=None), x, rate, block=480)
    assert updates[-1].final
    np.testing.assert_array_equal(updates[-1].intensities, evaluated)
    steps = np.diff([u.time_s for u in updates[:-1]])
    np.testing.assert_allclose(steps, 0.08, atol=1e-9)  # an update per chunk: every 80 ms

    run = edge_emo("listen", "--model", bundle.path, "--input", clip, "--fast", "--json")
    assert run.returncode == 0, run.stderr
    last = json.loads(run.stdout.splitlines()[-1])
    assert last["final"] and last["time_s"] == pytest.approx(len(x) / rate, abs=0.1)


def test_openSMILE_is_woken_on_whole_hops_and_batching_changes_no_update(bundle, corpus):
    """The default batch is the most whole hops within 30 ms: one 20 ms frame, three 10 ms ones (a 30 ms
    batch at a 20 ms hop left every other frame waiting for the next wake-up). Only when updates come
    depends on it, never what they say."""
    assert (batch_for(0.01), batch_for(0.02)) == (pytest.approx(0.03), pytest.approx(0.02))
    assert EmotionRecognizer(bundle).batch_s == pytest.approx(0.02)
    x, rate = load_audio(corpus / "c5.wav")
    batched = stream(EmotionRecognizer(bundle), x, rate, block=160)
    unbatched = stream(EmotionRecognizer(bundle, batch_s=0), x, rate, block=160)
    assert [u.to_dict() for u in batched] == [u.to_dict() for u in unbatched] and batched[-1].final


@pytest.mark.parametrize("gain_db", [-20.0, 0.0, 12.0])
def test_the_training_cut_is_the_live_cut_at_20ms(bundle, gain_db):
    """`--cut speech` cuts training clips with `utterance_spans` at the spec's hop: at 20 ms too, exactly
    the utterances the recognizer cuts live (frame indices of 20 ms)."""
    x = (speech_and_silence(PARTS) * 10 ** (gain_db / 20)).clip(-1, 1).astype(np.float32)
    finals = [u for u in stream(EmotionRecognizer(bundle), x, 16000, 333) if u.final]
    live = [
        (round(u.utterance_start_s / 0.02), round((u.utterance_start_s + u.utterance_s) / 0.02))
        for u in finals
    ]
    assert live == utterance_spans(x, 16000, Vad(), 0.02) and len(live) == 2


def test_a_hop_this_front_end_does_not_offer_or_unlike_the_checkpoint_is_one_line(
    corpus, checkpoint, tmp_path
):
    run = edge_emo(
        "finetune", corpus, "--hop-ms", "15", "--epochs", "1", "--hidden", "8", "--out", tmp_path / "x"
    )
    assert run.returncode != 0 and "not 15 ms" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = edge_emo("finetune", corpus, "--init", checkpoint, "--hop-ms", "10", "--out", tmp_path / "y")
    assert run.returncode != 0 and "--hop-ms 10 differs from the checkpoint's (20 ms)" in run.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_an_explicit_chunk_is_kept_and_zero_is_refused(checkpoint, tmp_path):
    edge_emo("export", checkpoint, "--out", tmp_path / "c3.bundle", "--chunk-frames", "3", check=True)
    assert load_bundle(tmp_path / "c3.bundle").chunk_frames == 3
    run = edge_emo("export", checkpoint, "--out", tmp_path / "c0.bundle", "--chunk-frames", "0")
    assert run.returncode != 0 and "--chunk-frames 0 is outside 1..1000" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "c0.bundle").exists()

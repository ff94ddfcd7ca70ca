"""The recipe options: class-balanced loss, microphone gain (measured and as augmentation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_emo.data.corpus import load_corpus
from edge_emo.data.gain import CEILING, Gain, apply_gain, hear, parse_gain, speech_power
from edge_emo.features import spec_for
from edge_emo.train.finetune import FinetuneConfig, train_baseline, weighted_mse
from tests.core.conftest import make_corpus
from tests.experiment.test_experiment import edge_emo


def test_weighted_mse_weights_only_present_cells():
    target = torch.tensor([[0.0, 2.0], [0.4, 0.5]])
    pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert weighted_mse(pred, target, 1.0) == pytest.approx(torch.nn.functional.mse_loss(pred, target).item())
    # Present (>= 0.5): (0,1) error 1 and (1,1) error 0.25, weighted 4; absent: 1 and 0.16.
    assert weighted_mse(pred, target, 4.0).item() == pytest.approx((1 + 0.16 + 4 * (1 + 0.25)) / 4)


def test_gain_scales_and_never_clips():
    x = np.array([0.5, -0.25, 0.1], dtype=np.float32)
    quiet, applied = apply_gain(x, -20.0)
    np.testing.assert_allclose(quiet, x / 10, rtol=1e-6)
    assert applied == -20.0
    loud, applied = apply_gain(x, 12.0)  # 0.5 * 4 would clip: turned up only to the ceiling
    assert np.max(np.abs(loud)) == pytest.approx(CEILING, rel=1e-5) and applied < 12.0
    hot = np.array([1.0, -1.0], dtype=np.float32)
    assert apply_gain(hot, 6.0)[1] == 0.0  # never turned down below the recording itself
    g = Gain(db=None, low=-20.0, high=12.0, seed=0)
    draws = [g.for_clip(f"/data/spk{i}/clip.wav") for i in range(50)]
    assert all(-20 <= d <= 12 for d in draws) and len(set(draws)) == 50
    assert g.for_clip("/other/root/spk3/clip.wav") == draws[3]  # per clip, wherever the corpus lives


def test_noisy_room_mixes_pink_noise_at_the_drawn_snr():
    t = np.arange(32000) / 16000
    # One second of silence, then a second of "speech": the ratio is to the speech, not the clip's mean.
    x = np.concatenate([np.zeros(16000), 0.3 * np.sin(2 * np.pi * 220 * t[:16000])]).astype(np.float32)
    room = parse_gain("noisy")
    assert room.db == 0.0 and room.noise == (5.0, 20.0) and room.name == "gain+0dB-pink5to20dB-seed0"
    assert parse_gain("-20+noisy").db == -20.0 and parse_gain("random+noisy").db is None
    assert parse_gain("random").name == "gain-20to+12dB-seed0" and parse_gain("-20").name == "gain-20dB"
    assert "noise" not in parse_gain("-20").key()  # caches written before rooms had noise stay valid
    assert parse_gain("+12").db == 12.0 and parse_gain("+12+noisy").noise == (5.0, 20.0)
    with pytest.raises(ValueError, match=r"'\+noisy'"):
        parse_gain("-20+windy")
    heard = hear(x, "/data/spk1/a.wav", room)
    noise = heard - x
    snr = 10 * np.log10(speech_power(x) / np.mean(noise.astype(np.float64) ** 2))
    assert 5.0 <= snr <= 20.0
    assert np.array_equal(heard, hear(x, "/elsewhere/spk1/a.wav", room))  # per clip, wherever it lives
    assert not np.array_equal(heard, hear(x, "/data/spk1/b.wav", room))
    # Pink: a third of the noise power in each octave band is ~equal (white would double per octave).
    power = np.abs(np.fft.rfft(noise)) ** 2
    freq = np.fft.rfftfreq(len(noise), 1 / 16000)
    bands = [power[(freq >= f) & (freq < 2 * f)].sum() for f in (250, 500, 1000, 2000)]
    assert max(bands) / min(bands) < 1.6
    loud = hear(x * 3, "/data/spk1/a.wav", Gain(db=0.0, noise=(0.0, 0.0)))
    assert np.max(np.abs(loud)) <= CEILING + 1e-6  # a loud room is turned down, never clipped


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("gain-corpus"), n_speakers=4, per_speaker=3, seconds=0.8)


def test_gained_corpus_is_cached_apart_and_differs(small):
    spec = spec_for("egemaps")
    plain, loud = load_corpus(small, spec), load_corpus(small, spec, gain=Gain(db=-20.0))
    assert loud.names == plain.names and [len(f) for f in loud.features] == [len(f) for f in plain.features]
    loudness = spec.columns.index("Loudness_sma3")
    assert np.mean(loud.features[0][:, loudness]) < np.mean(plain.features[0][:, loudness])
    assert list(
        Path(os.environ["EDGE_EMO_CACHE"], "features").glob(f"{small.name}-egemaps-gain-20dB/*.frames.npy")
    )
    # Renditions must be the same clips: a mismatch is refused, not silently trained on.
    with pytest.raises(ValueError, match="same clips"):
        train_baseline(plain, FinetuneConfig(epochs=1), hidden=4, renditions=[loud.subset([1, 0])])
    noisy = load_corpus(small, spec, gain=parse_gain("noisy"))
    assert noisy.names == plain.names and not np.array_equal(noisy.features[0], plain.features[0])
    assert list(
        Path(os.environ["EDGE_EMO_CACHE"], "features").glob(
            f"{small.name}-egemaps-gain+0dB-pink5to20dB-seed0/*.frames.npy"
        )
    )


def test_cv_with_gain_augmentation_and_gained_evaluation(small, tmp_path):
    out = tmp_path / "run"
    edge_emo("experiment", small, "--out", out, "--cv", "speakers", "--folds", "2", "--budgets", "100",
             "--draws", "1", "--baseline-draws", "1", "--epochs", "1", "--hidden", "4", "--no-reference",
             "--init", _pretrained(small, tmp_path), "--full-finetune-from", "1", "--workers", "1",
             "--train-gains", "-20,random", "--eval-gain", "random")  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["train_gains"] == "-20,random" and summary["settings"]["eval_gain"] == "random"
    assert set(summary["models"]) == {"ssl", "ssl_full", "baseline"}
    assert list(
        Path(os.environ["EDGE_EMO_CACHE"], "features").glob(f"{small.name}-egemaps-gain-20to+12dB-seed0")
    )
    ckpt = tmp_path / "full.safetensors"
    proc = edge_emo("finetune", small, "--init", _pretrained(small, tmp_path), "--full", "--train-gains", "12",
                    "--pos-weight", "3", "--epochs", "1", "--out", ckpt)  # fmt: skip
    assert "whole pretrained network" in proc.stdout and ckpt.is_file()


def _pretrained(corpus: Path, tmp_path: Path) -> Path:
    path = tmp_path / "pre.safetensors"
    if not path.is_file():
        edge_emo("pretrain", corpus, "--epochs", "1", "--hidden", "4", "--out", path)
    return path


@pytest.mark.parametrize("cut", ["whole", "speech"])
def test_gain_robustness_benchmark_on_a_small_corpus(bundle, small, tmp_path, cut):
    """The benchmark end to end: real openSMILE features of gained audio, a real bundle; with --cut speech the
    voice detector cuts each clip as heard at each gain."""
    import subprocess
    import sys

    out = tmp_path / "gain.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gain_robustness", str(bundle.path), str(small), "--out", str(out),
         "--cut", cut],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["n_clips"] == 12 and set(result["gains"]) == {
        "gain-20dB", "gain+12dB", "gain-20to+12dB-seed0", "gain+0dB-pink5to20dB-seed1", "gain+0dB"
    }  # fmt: skip
    noisy = result["gains"]["gain+0dB-pink5to20dB-seed1"]
    assert noisy["noise_snr_db"] == [5.0, 20.0] and noisy["intensity_change_mean"] > 0
    loud = result["gains"]["gain+12dB"]
    assert loud["intensity_change_mean"] > 0 and loud["clips_turned_down_to_avoid_clipping"] >= 0
    assert set(loud["intensity_change_per_emotion"]) == set(bundle.emotions)
    shift = loud["feature_column_shift_std"]
    assert shift["Loudness_sma3"] > 10 * shift["mfcc2_sma3"]  # level moves with gain, spectral shape does not
    assert "| gain+12dB |" in proc.stdout and result["cut"] == cut
    # the adaptive detector hears the synthetic speech at every gain (-20 dB included) and in the noise
    assert all(g["clips_without_speech"] == 0 for g in result["gains"].values())
    assert all(g["clips_heard_under_half"] == 0 for n, g in result["gains"].items() if n != "gain+0dB")


def test_cut_at_gain_cuts_each_clip_as_heard_and_keeps_unheard_clips_as_recorded(tmp_path):
    """--cut-at-gain: a gained rendition is cut where the detector hears speech at that gain; a clip it hears
    nothing in at -20 dB (recorded very quietly) is learned as recorded, never as inaudible frames."""
    from edge_emo.data.corpus import SpeechCut, cut_speech, speech_segments_of
    from edge_emo.data.labels import read_labels
    from tests.fixtures import synth_speech, write_wav

    corpus = make_corpus(tmp_path / "c", n_speakers=1, per_speaker=3, seconds=1.0)
    write_wav(corpus / "spk0/clip1.wav", synth_speech(1.0, seed=1) * 0.002)  # about -55 dBFS
    spec, quiet = spec_for("egemaps"), Gain(db=-20.0)
    records = read_labels(corpus / "labels.csv")
    heard = speech_segments_of(corpus, records, spec, gain=quiet)
    assert [len(s) > 0 for s in heard] == [True, False, True]
    plain = load_corpus(corpus, spec, cut="speech")
    gained = load_corpus(corpus, spec, gain=quiet)
    as_heard = load_corpus(corpus, spec, gain=quiet, cut="speech", cut_at_gain=True)
    expected = cut_speech(gained, heard, SpeechCut.speech, spec.hop_s)
    assert as_heard.names == plain.names and as_heard.labels.tolist() == plain.labels.tolist()
    np.testing.assert_array_equal(as_heard.features[0], expected.features[0])
    np.testing.assert_array_equal(as_heard.features[2], expected.features[2])
    np.testing.assert_array_equal(as_heard.features[1], plain.features[1])  # unheard: the clip as recorded
    with pytest.raises(ValueError, match="needs a gain"):
        load_corpus(corpus, spec, cut="speech", cut_at_gain=True)
    proc = edge_emo("finetune", corpus, "--cut-at-gain", "--out", tmp_path / "x.safetensors", check=False)
    assert proc.returncode != 0 and "--cut-at-gain needs --train-gains and --cut speech" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
    ckpt = tmp_path / "heard.safetensors"
    edge_emo("finetune", corpus, "--train-gains=-20", "--cut", "speech", "--cut-at-gain", "--epochs", "1",
             "--hidden", "4", "--out", ckpt)  # fmt: skip
    from edge_emo.train.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt).provenance["finetune"]["cut_at_gain"] is True

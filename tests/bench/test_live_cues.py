"""benchmarks/live_cues.py: the live false-cue yardstick, on the real recognizer and openSMILE."""

from __future__ import annotations

from benchmarks.live_cues import markdown, measure, neutral_files, utterance_cues
from edge_emo.features import load_audio
from edge_emo.runtime.recognizer import EmotionRecognizer
from tests.core.conftest import make_corpus
from tests.core.test_cli import make_ordinary_speech


def test_every_utterance_is_counted_once_and_a_late_onset_only_hides_updates(bundle, tmp_path):
    files = neutral_files(make_ordinary_speech(tmp_path / "ordinary", n=2), None)
    assert [f.name for f in files] == ["u0.wav", "u1.wav"]
    x, rate = load_audio(files[0])
    recognizer = EmotionRecognizer(bundle)
    recognizer.accept_waveform(x, rate)
    recognizer.end_of_input()
    finals = [u for u in recognizer.updates() if u.final]
    cues = utterance_cues(bundle, files[0], 0.0)
    assert len(cues) == len(finals) >= 1
    assert [final for final, _ in cues] == [bool(u.intensities.max() >= 0.5) for u in finals]
    rows = measure(bundle, files, [0.0, 100.0])
    assert rows[0]["utterances"] == rows[1]["utterances"] >= 2
    for r in rows:  # an utterance whose result names an emotion has shown it at least once
        assert r["any_update"]["k"] >= r["final"]["k"]
    assert rows[0]["final"] == rows[1]["final"]  # final results never change
    assert rows[1]["any_update"] == rows[1]["final"]  # nothing shown before the end: only the results
    assert "| 100 |" in markdown(rows)


def test_a_labeled_folder_gives_its_neutral_clips_only(tmp_path):
    corpus = make_corpus(tmp_path / "labeled", n_speakers=2, per_speaker=3)
    lines = (corpus / "labels.csv").read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:4] + ["0"] * 6)  # spk0/clip0: neutral (calm)
    (corpus / "labels.csv").write_text("\n".join(lines) + "\n")
    assert neutral_files(corpus, None) == [corpus / "spk0/clip0.wav"]
    assert neutral_files(corpus, None, {"spk0"}) == [corpus / "spk0/clip0.wav"]
    assert neutral_files(corpus, None, {"spk1"}) == []  # a CV fold's held-out speakers only

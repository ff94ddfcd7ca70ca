"""`edge-emo record`: labels.csv in the corpus layout, 16 kHz clips, the quick label form, the prompt, the
microphone through a real PortAudio stream, and bad input that changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_emo.data.labels import LABEL_COLUMNS, read_labels
from edge_emo.emotions import EMOTIONS
from edge_emo.personalize.record import parse_labels
from tests.cli import edge_emo
from tests.fixtures import synth_speech, write_wav
from tests.runtime.test_microphone import alsa_env, file_device, recording


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("happy=2", (2, 0, 0, 0, 0, 0)),
        ("sad=1, fear=0.5", (0, 1, 0, 0, 0, 0.5)),
        ("surp=3 angry=1", (0, 0, 1, 3, 0, 0)),
        ("neutral", (0, 0, 0, 0, 0, 0)),
    ],
)
def test_the_quick_label_form(text, expected):
    assert parse_labels(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("happy=4", "0..3"),
        ("joy=1", "unknown emotion"),
        ("s=1", "unknown"),
        ("happy", "emotion=intensity"),
        ("", "no labels"),
    ],
)
def test_bad_labels_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_labels(text)


def test_importing_files_appends_rows_in_the_corpus_layout(tmp_path):
    labels = tmp_path / "me" / "labels.csv"
    wav48 = write_wav(tmp_path / "a.wav", synth_speech(1.0, 48000, seed=1), 48000)
    run = edge_emo(
        "record", "--labels", str(labels), "--input", str(wav48), "--label", "happy=2", "--label", "fear=1"
    )
    assert run.returncode == 0, run.stderr
    assert "added clips/0001.wav (happiness=2 fear=1)" in run.stdout
    run = edge_emo(
        "record", "--labels", str(labels), "--input", str(wav48), "--speaker", "sam", input="sad=3\n"
    )
    assert run.returncode == 0, run.stderr
    lines = labels.read_text().splitlines()
    assert lines[0] == ",".join(LABEL_COLUMNS)
    assert lines[1:] == [
        "clips/0001.wav,wearer,wearer,happiness,2,0,0,0,0,1",
        "clips/0002.wav,sam,wearer,sadness,0,3,0,0,0,0",
    ]
    records = read_labels(labels)
    assert [r.intensities for r in records] == [(2, 0, 0, 0, 0, 1), (0, 3, 0, 0, 0, 0)]
    info = soundfile.info(str(records[0].path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_a_bad_prompt_answer_is_asked_again(tmp_path):
    labels = tmp_path / "labels.csv"
    wav = write_wav(tmp_path / "a.wav", synth_speech(1.0, seed=2))
    run = edge_emo("record", "--labels", str(labels), "--input", str(wav), input="joy=2\nhappy=9\nhap=1\n")
    assert run.returncode == 0, run.stderr
    assert "unknown emotion 'joy'" in run.stderr and "within 0..3" in run.stderr
    assert read_labels(labels)[0].intensities == (1, 0, 0, 0, 0, 0)


def test_rows_append_to_a_corpus_labels_file(tmp_path, wearer_labels):
    labels = tmp_path / "labels.csv"
    labels.write_text(wearer_labels.read_text())  # the dev corpus layout, clips named relative to it
    (tmp_path / "clips").symlink_to(wearer_labels.parent / "clips")
    before = len(read_labels(labels))
    run = edge_emo(
        "record",
        "--labels",
        str(labels),
        "--input",
        str(wearer_labels.parent / "clips/0001.wav"),
        "--label",
        "anger=2",
    )
    assert run.returncode == 0, run.stderr
    records = read_labels(labels)
    assert len(records) == before + 1 and records[-1].path.name == f"{before + 1:04d}.wav"


@pytest.mark.parametrize("problem", ["silence", "label", "broken-csv", "missing-file"])
def test_bad_input_changes_nothing(tmp_path, problem):
    labels = tmp_path / "labels.csv"
    speech = write_wav(tmp_path / "speech.wav", synth_speech(1.0, seed=3))
    assert (
        edge_emo("record", "--labels", str(labels), "--input", str(speech), "--label", "sad=1").returncode
        == 0
    )
    args = ["--input", str(speech), "--label", "sad=1"]
    if problem == "silence":
        args = [
            "--input",
            str(speech),
            "--input",
            str(write_wav(tmp_path / "quiet.wav", np.zeros(16000))),
            "--label",
            "sad=1",
        ]
    elif problem == "label":
        args = ["--input", str(speech), "--label", "sad=5"]
    elif problem == "broken-csv":
        labels.write_text(labels.read_text() + "clips/0009.wav,wearer,wearer,x,1,2\n")
    else:
        args = ["--input", str(tmp_path / "nope.wav"), "--label", "sad=1"]
    old = labels.read_bytes()
    run = edge_emo("record", "--labels", str(labels), *args)
    assert run.returncode == 2 and run.stderr.startswith("error: "), run.stderr
    expected = {
        "silence": "no speech",
        "label": "0..3",
        "broken-csv": "labels.csv:3",
        "missing-file": "no such audio file",
    }
    assert expected[problem] in run.stderr
    assert labels.read_bytes() == old
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["0001.wav"]


def test_recording_from_the_microphone(tmp_path):
    """A real PortAudio stream from an ALSA device that plays a known recording."""
    _, raw, _ = recording(tmp_path, 16000)
    labels = tmp_path / "labels.csv"
    env = alsa_env(tmp_path, file_device(raw, 16000))
    run = edge_emo("record", "--labels", str(labels), "--seconds", "2", "--label", "surprise=2", env=env)
    assert run.returncode == 0, run.stderr
    assert "recording 2 s: speak now" in run.stderr
    clip, _ = soundfile.read(str(tmp_path / "clips/0001.wav"), dtype="int16")
    played = np.fromfile(raw, "<i2")
    assert len(clip) == 32000 and np.array_equal(clip, played[:32000])
    assert read_labels(labels)[0].intensities == tuple(2.0 if e == "surprise" else 0.0 for e in EMOTIONS)


@pytest.mark.skipif(
    bool(list(Path("/dev/snd").glob("pcmC*c"))), reason="this machine has a real capture device"
)
def test_without_a_microphone_record_never_says_speak_now(tmp_path):
    # ALSA's own configuration and no sound card (as in tests/runtime): PortAudio finds no input device.
    env = {"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    run = edge_emo("record", "--labels", str(tmp_path / "labels.csv"), "--label", "happy=1", env=env)
    assert run.returncode == 3 and "no audio input device" in run.stderr and "--input" in run.stderr
    assert "speak now" not in run.stderr and not (tmp_path / "labels.csv").exists()

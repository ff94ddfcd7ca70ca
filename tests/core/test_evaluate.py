"""`edge-emo evaluate` as a user runs it, on small fixture folders and the session's real bundles: the
categorical readout and false cues on a labeled folder mixing two corpora, false cues on unlabeled speech per
clip and per utterance as the live detector cuts them, the predictions CSV, and bad input."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from edge_emo.metrics import class_names, confusion, unweighted_average_recall
from tests import cli
from tests.core.test_feature_log_corpus import write_log
from tests.fixtures import synth_speech, write_wav

edge_emo = partial(cli.edge_emo, check=True)
CLASSES = class_names(EMOTIONS)

# (corpus, speaker, labeled intensities): calm rows carry no intensity, so they are neutral like neutral ones;
# the "wild" corpus never labels sadness, surprise or disgust.
ROWS = [
    *(("acted", f"a{s}", {k: {}, 1: {"happiness": 2}, 2: {"anger": 3}, 3: {"sadness": 2}}[k]) for s in range(3) for k in range(4)),
    *(("wild", f"w{s}", {0: {}, 1: {"fear": 2}, 2: {"happiness": 2}}[k]) for s in range(2) for k in range(3)),
]  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A labeled folder of two corpora (the `corpus` column), neutral clips in both."""
    root = tmp_path_factory.mktemp("mixed")
    lines = ["path,speaker,corpus,emotion," + ",".join(EMOTIONS)]
    for i, (corpus, speaker, labels) in enumerate(ROWS):
        rel = f"{speaker}/clip{i}.wav"
        (root / speaker).mkdir(exist_ok=True)
        write_wav(root / rel, synth_speech(1.0, seed=200 + i) * (0.3 + 0.2 * (i % 3)))
        name = next(iter(labels), "neutral")
        lines.append(
            f"{rel},{speaker},{corpus},{name}," + ",".join(f"{labels.get(e, 0):g}" for e in EMOTIONS)
        )
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def ordinary(tmp_path_factory) -> Path:
    """Unlabeled speech (manifest.csv); the second file has a 1 s pause: two utterances for the detector."""
    root = tmp_path_factory.mktemp("ordinary")
    speech = [synth_speech(1.5, seed=300 + k) * 0.5 for k in range(4)]
    files = {
        "r0.wav": speech[0],
        "r1.wav": np.concatenate([speech[1], np.zeros(16000, np.float32), speech[2]]),
        "r2.wav": speech[3],
    }
    for name, signal in files.items():
        write_wav(root / name, signal)
    (root / "manifest.csv").write_text(
        "path,speaker,corpus\n" + "".join(f"{n},reader{k},books\n" for k, n in enumerate(files))
    )
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_labeled_folder_gets_the_readout_false_cues_and_per_corpus_rows(bundles, mixed, tmp_path):
    bundle = bundles["fp32"].path
    out = tmp_path / "pred.csv"
    rep = json.loads(edge_emo("evaluate", bundle, mixed, "--json", "--predictions", out).stdout)
    n = len(ROWS)
    assert rep["n_clips"] == n and "clipped" in rep["predictions"]
    m, z = rep["model"], rep["zeros"]
    assert m["categorical"]["classes"] == list(CLASSES)
    assert np.asarray(m["categorical"]["confusion"]).sum() == n
    # truth: 6 acted neutral/happy/anger/sad ... + wild: classes neutral, happiness, sadness, anger, fear
    assert z["uar"] == pytest.approx(1 / 5) and z["false_cue_neutral"] == 0.0
    neutral = m["categorical"]["false_cues_on_neutral"]["any"]
    assert neutral["n"] == 3 + 2 and 0 <= neutral["ci95"][0] <= neutral["ci95"][1] <= 1
    assert set(rep["per_corpus"]) == {"acted", "wild"}
    assert rep["per_corpus"]["wild"]["model"]["left_out"] == ["sadness", "anger", "surprise", "disgust"]
    assert rep["per_corpus"]["acted"]["model"]["left_out"] == ["surprise", "disgust", "fear"]

    # The CSV holds what was scored: the metrics follow from its readout and truth columns.
    rows = read_csv(out)
    assert [r["path"] for r in rows] == [f"{s}/clip{i}.wav" for i, (_, s, _) in enumerate(ROWS)]
    assert [r["corpus"] for r in rows] == [c for c, _, _ in ROWS]
    assert list(rows[0]) == ["path", "speaker", "corpus", *EMOTIONS, "readout", "truth"]
    values = np.array([[float(r[e]) for e in EMOTIONS] for r in rows])
    assert values.min() >= 0 and values.max() <= 3
    top = values.argmax(1)
    expected = [EMOTIONS[t] if values[i, t] >= 0.5 else "neutral" for i, t in enumerate(top)]
    assert [r["readout"] for r in rows] == expected
    conf = confusion(
        [CLASSES.index(r["truth"]) for r in rows], [CLASSES.index(r["readout"]) for r in rows], 7
    )
    assert conf.tolist() == m["categorical"]["confusion"]
    assert unweighted_average_recall(conf) == pytest.approx(m["uar"])
    assert sum(r["readout"] != "neutral" for r in rows if r["truth"] == "neutral") == neutral["k"]

    text = edge_emo("evaluate", bundle, mixed).stdout
    assert (
        "clipped to 0..3" in text and "| readout UAR |" in text and "| false cues on neutral clips |" in text
    )
    assert "Per corpus" in text and "| wild | 6 |" in text and "truth \\ readout" in text


def test_unlabeled_speech_false_cues_per_clip_and_per_live_utterance(bundles, ordinary):
    bundle = bundles["fp32"].path
    rep = json.loads(edge_emo("evaluate", bundle, ordinary, "--json").stdout)
    assert rep["n_clips"] == 3 and rep["zeros"]["any"]["rate"] == 0.0
    # The utterances are the live recognizer's: the same as `listen --fast --json` finds, file by file.
    finals = []
    for f in ("r0.wav", "r1.wav", "r2.wav"):
        lines = edge_emo("listen", "--model", bundle, "--input", ordinary / f, "--fast", "--json").stdout
        finals += [u for u in map(json.loads, lines.splitlines()) if u["final"]]
    assert rep["n_utterances"] == len(finals) >= 4  # the pause in r1 cuts it in two
    cues = [u for u in finals if max(u["intensities"].values()) >= 0.5]
    assert rep["utterances"]["any"]["k"] == len(cues)
    for e in EMOTIONS:
        assert rep["utterances"]["per_emotion"][e]["k"] == sum(u["intensities"][e] >= 0.5 for u in cues)
    text = edge_emo("evaluate", bundle, ordinary).stdout
    assert "| any emotion |" in text and "EmotionRecognizer" in text and "95% CI" in text


def test_a_checkpoint_on_unlabeled_speech_is_clip_level_and_says_so(bundles, ordinary, tmp_path):
    checkpoint = bundles["fp32"].path.parent / "finetuned.safetensors"
    out = tmp_path / "p.csv"
    rep = json.loads(edge_emo("evaluate", checkpoint, ordinary, "--json", "--predictions", out).stdout)
    assert rep["utterances"] is None and "clip level only" in rep["utterance_note"]
    rows = read_csv(out)
    assert [r["path"] for r in rows] == ["r0.wav", "r1.wav", "r2.wav"] and "truth" not in rows[0]
    assert [r["speaker"] for r in rows] == ["reader0", "reader1", "reader2"]
    assert sum(r["readout"] != "neutral" for r in rows) == rep["clips"]["any"]["k"]


def test_a_feature_log_is_scored_by_its_segments(bundles, tmp_path):
    from edge_emo.features import spec_for

    log = write_log(tmp_path / "log", spec_for("egemaps"), segments=3)
    rep = json.loads(edge_emo("evaluate", bundles["fp32"].path, log, "--json").stdout)
    # 3 segments, in 2 s shards (a segment crossing a shard is two): as many utterances as clips
    assert rep["n_clips"] == rep["n_utterances"] >= 3 and rep["utterances"] == rep["clips"]
    assert "segments are the live detector's utterances" in rep["utterance_note"]


def test_no_neutral_clips_is_said_not_computed(bundles, corpus):
    text = edge_emo("evaluate", bundles["fp32"].path, corpus).stdout  # every clip there carries an emotion
    assert "| false cues on neutral clips | no neutral clips | no neutral clips |" in text
    rep = json.loads(edge_emo("evaluate", bundles["fp32"].path, corpus, "--json").stdout)
    assert rep["model"]["false_cue_neutral"] is None


@pytest.mark.parametrize(
    ("where", "extra", "message"),
    [
        ("bare", [], "no labels.csv, manifest.csv or CMU-MOSEI .csd files"),
        ("mixed", ["--predictions", "{tmp}/no/such/folder/p.csv"], "does not exist"),
        ("mixed", ["--predictions", "{tmp}"], "is a folder"),
    ],
)
def test_bad_input_is_one_line_before_any_work(bundles, mixed, tmp_path, where, extra, message):
    bare = tmp_path / "bare"
    bare.mkdir()
    write_wav(bare / "x.wav", synth_speech(1.0))  # audio, but no manifest.csv
    folder = {"bare": bare, "mixed": mixed}[where]
    args = [a.format(tmp=tmp_path) for a in extra]
    proc = cli.edge_emo("evaluate", bundles["fp32"].path, folder, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

"""The training command line end to end on a small synthetic corpus, as a user runs it."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from edge_emo.emotions import EMOTIONS
from tests import cli
from tests.core.conftest import make_corpus

edge_emo = partial(cli.edge_emo, check=True)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    edge_emo(
        "pretrain",
        corpus,
        "--split",
        "train",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--out",
        out / "pre.safetensors",
    )
    edge_emo("finetune", corpus, "--split", "train", "--budget", "10", "--init", out / "pre.safetensors",
             "--out", out / "ft.safetensors")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def exported(trained):
    edge_emo("export", trained / "ft.safetensors", "--out", trained / "ft.bundle", "--precision", "fp32")
    return trained / "ft.bundle"


def test_pretrain_finetune_evaluate(corpus, trained):
    proc = edge_emo("evaluate", trained / "ft.safetensors", corpus, "--split", "val", "--json")
    rep = json.loads(proc.stdout)
    assert rep["n_clips"] == 4  # one of five speakers
    assert set(rep["model"]["per_emotion"]) == set(EMOTIONS)
    assert rep["zeros"]["macro_f1"] == 0.0
    assert 0 <= rep["model"]["mae"] <= 3
    table = edge_emo("evaluate", trained / "ft.safetensors", corpus, "--split", "val").stdout
    assert "| macro-F1 |" in table and "all-zeros" in table


def test_baseline_from_scratch(corpus, tmp_path):
    out = tmp_path / "base.safetensors"
    proc = edge_emo(
        "finetune",
        corpus,
        "--split",
        "train",
        "--labels",
        "8",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--out",
        out,
    )
    assert "baseline from scratch on 8 labeled clips" in proc.stdout
    assert "warning: `finetune --labels N` is deprecated; use --budget N" in proc.stderr  # still works
    assert json.loads(edge_emo("evaluate", out, corpus, "--json").stdout)["n_clips"] == 20


def test_features_command(corpus):
    assert "20 clips" in edge_emo("features", corpus, "--feature-set", "egemaps").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("finetune", "{corpus}", "--budget", "500", "--init", "{pre}"), "asked for 500 labeled clips"),
        (("evaluate", "{corpus}/labels.csv", "{corpus}"), "not a safetensors checkpoint"),
        (
            ("finetune", "{corpus}", "--init", "{pre}", "--feature-set", "compare"),
            "differs from the checkpoint's",
        ),
        (("evaluate", "{pre}", "{missing}"), "none does not exist"),
        (("evaluate", "{pre}", "{corpus}/labels.csv"), "labels.csv: not a folder"),
        # checkpoints and bundles mixed up, and paths that are not there: what to do instead
        (("export", "{bundle}", "--out", "{missing}"), "is a model bundle (made by `edge-emo export`)"),
        (("finetune", "{corpus}", "--init", "{bundle}"), "give the .safetensors it was exported from"),
        (
            ("listen", "--model", "{pre}", "--input", "sample"),
            "make one from a checkpoint with `edge-emo export",
        ),
        (("listen", "--model", "{missing}", "--input", "sample"), "none does not exist"),
        (("evaluate", "{missing}", "{corpus}"), "none does not exist"),
        (("export", "{pre}", "--out", "{missing}"), "pretrained only: its emotion head was never trained"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(corpus, trained, exported, tmp_path, args, message):
    fill = {"corpus": corpus, "pre": trained / "pre.safetensors", "missing": tmp_path / "none"}
    fill["bundle"] = exported
    proc = edge_emo(*(a.format(**fill) for a in args), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_label_row_is_reported_with_file_and_line(tmp_path, corpus, trained):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(corpus, bad)
    lines = (bad / "labels.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",lots"
    (bad / "labels.csv").write_text("\n".join(lines) + "\n")
    proc = edge_emo("evaluate", trained / "ft.safetensors", bad, check=False)
    assert proc.returncode == 2 and "labels.csv:4: fear='lots' is not a number" in proc.stderr


def test_every_command_documents_its_options():
    for cmd in ["pretrain", "finetune", "evaluate"]:
        out = edge_emo(cmd, "--help").stdout
        assert "Show this message and exit" in out and "Seed of the speaker split" in out


def test_listen_help_states_the_defaults_the_runtime_uses():
    """The help cannot import the runtime (every command would pay for it), so it states its defaults in
    words: this keeps the words equal to the constants."""
    from edge_emo.features.speech import DEFAULT_VAD
    from edge_emo.runtime.recognizer import CUE_AFTER_S

    out = " ".join(edge_emo("listen", "--help").stdout.replace("│", " ").split())
    assert f"default: {CUE_AFTER_S:g} s" in out
    assert f"{DEFAULT_VAD.margin_db:g} dB above the noise floor" in out
    assert f"({DEFAULT_VAD.min_threshold_db:g}..{DEFAULT_VAD.max_threshold_db:g} dBFS)" in out


def test_evaluate_runs_on_an_exported_bundle_without_torch(corpus, trained, tmp_path):
    bundle = tmp_path / "m.bundle"
    edge_emo("export", trained / "ft.safetensors", "--out", bundle, "--precision", "fp32")
    proc = cli.edge_emo_without_torch(["evaluate", bundle, corpus, "--split", "val", "--json"])
    assert proc.returncode == 0, proc.stderr
    from_bundle = json.loads(proc.stdout)
    from_checkpoint = json.loads(
        edge_emo("evaluate", trained / "ft.safetensors", corpus, "--split", "val", "--json").stdout
    )
    assert from_bundle["model"]["mae"] == pytest.approx(from_checkpoint["model"]["mae"], abs=1e-5)
    assert from_bundle["zeros"] == from_checkpoint["zeros"]


def make_ordinary_speech(root, n: int = 3):
    """An unlabeled corpus (manifest.csv) of speech-like clips with pauses: ordinary speech."""
    import numpy as np

    from tests.fixtures import synth_speech, write_wav

    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,speaker,corpus,duration_s"]
    for i in range(n):
        pause = np.zeros(12000, np.float32)
        x = np.concatenate(
            [pause, synth_speech(1.0, seed=40 + i), pause, synth_speech(0.8, seed=50 + i), pause]
        )
        write_wav(root / f"u{i}.wav", x)
        rows.append(f"u{i}.wav,reader{i},ordinary,{len(x) / 16000:.3f}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_finetune_on_two_corpora_with_neutral_speech_cut_to_speech(corpus, tmp_path):
    from edge_emo.data.corpus import load_corpus
    from edge_emo.train.checkpoint import load_checkpoint

    second = make_corpus(tmp_path / "second", n_speakers=2, per_speaker=3)
    ordinary = make_ordinary_speech(tmp_path / "ordinary")
    out = tmp_path / "ft.safetensors"
    proc = edge_emo("finetune", corpus, second, "--neutral", ordinary, "--cut", "speech", "--crop-s", "0.5",
                    "--dropout", "0.2", "--mask-features", "2", "--mask-span-s", "0.2", "--lr-decay", "--readout-weight", "0.5",
                    "--epochs", "1", "--hidden", "16", "--out", out)  # fmt: skip
    # 20 + 6 labeled clips; the ordinary speech as the voice detector cuts it (two pieces of speech per clip,
    # a piece with a longer pause of its own may come out as two utterances, one too short to count as none)
    utterances = load_corpus(ordinary, load_checkpoint(out).spec, cut="utterances")
    assert 4 <= len(utterances) <= 9 and {n.split("#")[0] for n in utterances.names} == {
        "u0.wav",
        "u1.wav",
        "u2.wav",
    }
    assert f"on 26 labeled clips and {len(utterances)} neutral utterances" in proc.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["finetune"]["cut"] == "speech"
    assert ckpt.provenance["finetune"]["crop_s"] == 0.5
    finetune = ckpt.provenance["finetune"]
    regularised = ("dropout", "mask_features", "mask_span_s", "lr_decay", "readout_weight")
    assert [finetune[k] for k in regularised] == [0.2, 2, 0.2, True, 0.5]
    assert ckpt.provenance["finetune"]["neutral"] == [str(ordinary)]


def test_neutral_speech_must_be_unlabeled(corpus, tmp_path):
    proc = cli.edge_emo(
        "finetune", corpus, "--neutral", corpus, "--epochs", "1", "--out", tmp_path / "x.safetensors"
    )
    assert proc.returncode == 2 and "--neutral takes unlabeled ordinary speech" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.safetensors").exists()


def test_evaluate_warns_when_scoring_the_speakers_it_was_trained_on(corpus, trained, exported):
    """The checkpoint and its bundle record the fine-tuning speakers (those of the 10 clips drawn from the
    4 --split train speakers)."""
    trained_on = json.loads((exported / "manifest.json").read_text())["provenance"]["training_speakers"]
    assert 1 <= len(trained_on) <= 4
    for model in (trained / "ft.safetensors", exported):
        held_out = edge_emo("evaluate", model, corpus, "--split", "val")
        assert "warning" not in held_out.stderr
        everyone = edge_emo("evaluate", model, corpus)
        warning = (
            f"warning: {len(trained_on)} of the 5 speakers scored here trained this model ({trained_on[0]}"
        )
        assert warning in everyone.stderr and "--split val" in everyone.stderr, everyone.stderr
        assert "| macro-F1 |" in everyone.stdout


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("evaluate", "--split", "'all', 'train', 'val'"),
        ("pretrain", "--loss-on", "'masked', 'all'"),
        ("experiment", "--cv", "'speakers'"),
    ],
)
def test_options_with_choices_list_them_in_help_and_errors(corpus, tmp_path, command, option, choices):
    usage = edge_emo(command, "--help").stdout
    metavar = "<" + choices.replace("'", "").replace(", ", "|") + ">"
    assert metavar in usage
    args = {"evaluate": ["m"], "pretrain": [], "experiment": [corpus, "--out", tmp_path]}[command]
    proc = edge_emo(command, *args, option, "validation", check=False)
    assert proc.returncode == 2 and f"'validation' is not one of {choices}" in proc.stderr, proc.stderr


def test_version_names_the_package_the_shipped_model_and_libraries():
    from edge_emo import __version__
    from edge_emo.runtime.shipped import DEFAULT_MODEL

    lines = edge_emo("--version").stdout.splitlines()
    model = json.loads((DEFAULT_MODEL / "manifest.json").read_text())["version"]
    assert lines[:2] == [f"edge-emo {__version__}", f"shipped model {model}"]
    assert lines[2].startswith("onnxruntime 1.") and lines[3].startswith("openSMILE (opensmile) ")


def test_a_speaker_adapting_model_is_trained_exported_and_scored_with_and_without_the_estimate(
    corpus, tmp_path
):
    from edge_emo.runtime.bundle import load_bundle
    from edge_emo.train.checkpoint import load_checkpoint
    from tests.core.test_evaluate import read_csv

    out, bundle_dir = tmp_path / "adapt.safetensors", tmp_path / "adapt.bundle"
    edge_emo("finetune", corpus, "--speaker-adaptation", "--epochs", "2", "--hidden", "16", "--out", out)
    ckpt = load_checkpoint(out)
    assert ckpt.adaptation is not None and ckpt.provenance["finetune"]["speaker_adaptation"]["prior_s"] > 0
    edge_emo("export", out, "--out", bundle_dir, "--precision", "fp32")
    assert load_bundle(bundle_dir).adaptation == ckpt.adaptation
    reports = {}
    for model in (out, bundle_dir):
        for flag in ("--speaker-estimate", "--no-speaker-estimate"):
            csv_path = tmp_path / f"{model.suffix}{flag}.csv"
            proc = edge_emo("evaluate", model, corpus, flag, "--json", "--predictions", csv_path)
            rep = json.loads(proc.stdout)
            assert rep["speaker_estimate"] is (flag == "--speaker-estimate")
            reports[model.suffix, flag] = np.array(
                [[float(r[e]) for e in EMOTIONS] for r in read_csv(csv_path)]
            )
    # the bundle predicts what its checkpoint predicts, with the estimate and without it; the two differ
    for flag in ("--speaker-estimate", "--no-speaker-estimate"):
        np.testing.assert_allclose(reports[".safetensors", flag], reports[".bundle", flag], atol=2e-3)
    assert not np.allclose(
        reports[".bundle", "--speaker-estimate"], reports[".bundle", "--no-speaker-estimate"]
    )
    text = edge_emo("evaluate", bundle_dir, corpus).stdout
    assert "each speaker's clips standardised by the estimate from all of them" in text


def test_a_network_taught_by_two_of_its_recipe(corpus, tmp_path):
    """`finetune --distill-from A --distill-from B`: one network trained toward its labels and the mean of
    two teachers of the same recipe; a teacher of another recipe (other statistics) is a one-line error."""
    from edge_emo.train.checkpoint import load_checkpoint

    recipe = (
        "finetune",
        corpus,
        "--speaker-adaptation",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--cue-margin",
        "0.3",
    )
    for seed in (0, 1):
        edge_emo(*recipe, "--seed", seed, "--out", tmp_path / f"t{seed}.safetensors")
    student = tmp_path / "student.safetensors"
    teachers = ("--distill-from", tmp_path / "t0.safetensors", "--distill-from", tmp_path / "t1.safetensors")
    edge_emo(*recipe, *teachers, "--distill-weight", "0.7", "--out", student)
    finetune = load_checkpoint(student).provenance["finetune"]
    assert finetune["distill_weight"] == 0.7 and finetune["teachers"] == [0, 1]
    other = cli.edge_emo(
        *recipe[:2], "--epochs", "1", "--hidden", "8", *teachers, "--out", tmp_path / "x.safetensors"
    )
    assert other.returncode == 2 and "distil from networks trained on the same clips" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()

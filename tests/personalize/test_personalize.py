"""`edge-emo personalize`: the new head is the closed-form fit on the bundle's own embeddings, written and
validated before the swap (int8 and fp32), the previous bundle kept and restored by --rollback (one step
back per rollback, down to the shipped model), nothing written when nothing changes, the whole
loop without torch, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from edge_emo.features import extract_file, load_audio
from edge_emo.personalize.method import DEFAULT, fit
from edge_emo.personalize.ridge import predict
from edge_emo.personalize.wearer import read_head
from edge_emo.runtime.bundle import load_bundle
from edge_emo.runtime.shipped import DEFAULT_MODEL
from tests.cli import CLI, ROOT, cli_env, edge_emo, edge_emo_without_torch
from tests.fixtures import write_wav
from tests.personalize.conftest import speech_of, write_happy_wearer, write_wearer


def test_labeled_clips_are_fitted_on_their_speech_not_the_silence_around_it(bundles, tmp_path):
    from edge_emo.personalize.wearer import load_wearer_clips

    labels = write_wearer(tmp_path / "padded", n=5)
    for path in sorted((tmp_path / "padded" / "clips").glob("*.wav")):  # a second of silence either side
        signal, rate = load_audio(path)
        write_wav(path, np.concatenate([np.zeros(rate), signal, np.zeros(rate)]), rate)
    clips = load_wearer_clips(labels, bundles["fp32"])
    for path, frames in zip(clips.paths, clips.features):
        whole = extract_file(path, bundles["fp32"].spec)
        assert len(whole) - len(frames) >= 180  # the two seconds of silence are not in it
        np.testing.assert_array_equal(frames, speech_of(path, bundles["fp32"].spec))


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_new_head_is_the_fit_on_the_bundles_embeddings(bundles, wearer_labels, tmp_path, precision):
    shipped = bundles[precision]
    out = tmp_path / "personal.bundle"
    run = edge_emo(
        "personalize",
        "--model",
        str(shipped.path),
        "--labels",
        str(wearer_labels),
        "--out",
        str(out),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    new = load_bundle(out)
    assert result["version"] == new.version != shipped.version and new.precision == precision
    assert new.provenance["personalization"]["from_version"] == shipped.version
    from edge_emo.data.labels import read_labels

    records = read_labels(wearer_labels)
    features = [speech_of(r.path, shipped.spec) for r in records]
    y = np.array([r.intensities for r in records])
    x = shipped.embed_utterances(features)
    # Without --unlabeled: the bundle's own normalisation, the default head fit (the guard accepted it: the
    # fixture's labels follow the voice's loudness, so a head learns them).
    fit_weight, fit_bias, _ = fit(DEFAULT, x, y, *read_head(shipped))
    weight, bias = read_head(new)
    assert not result["kept"] and result["method"]["norm"] == "global"
    np.testing.assert_allclose(weight, fit_weight, atol=1e-6)
    np.testing.assert_allclose(bias, fit_bias, atol=1e-6)
    np.testing.assert_allclose(new.predict_utterances(features), predict(x, weight, bias), atol=1e-4)
    # The GRU is untouched: same embeddings.
    np.testing.assert_array_equal(new.embed_utterances(features[:2]), x[:2])
    assert result["before"]["n_clips"] == result["after"]["n_clips"] == len(records)
    assert not (tmp_path / "personal.bundle.prev").exists()  # nothing was replaced


def test_personalizing_again_keeps_the_previous_and_rollback_undoes_once(bundles, wearer_labels, tmp_path):
    out = tmp_path / "personal.bundle"
    shutil.copytree(bundles["int8"].path, out)
    shipped_version = load_bundle(out).version
    run = edge_emo("personalize", "--model", str(out), "--labels", str(wearer_labels))  # --out: itself
    assert run.returncode == 0, run.stderr
    assert "held out" in run.stdout and "all-zeros" in run.stdout and "--rollback" in run.stdout
    assert "no labeled clip is calm or neutral" in run.stdout  # these labels name an emotion on every clip
    personal_version = load_bundle(out).version
    assert load_bundle(f"{out}.prev").version == shipped_version != personal_version
    run = edge_emo("personalize", "--rollback", "--model", str(out))
    assert run.returncode == 0, run.stderr
    assert personal_version in run.stdout and shipped_version in run.stdout
    assert load_bundle(out).version == shipped_version and not (tmp_path / "personal.bundle.prev").exists()
    # A second rollback does not toggle back: there is no personalization left to undo.
    run = edge_emo("personalize", "--rollback", "--out", str(out))
    assert run.returncode == 2 and "not a personalized bundle" in run.stderr, run.stderr
    assert load_bundle(out).version == shipped_version


def test_rollback_steps_back_to_the_shipped_model_and_says_so(bundles, wearer_labels, tmp_path):
    """The README's flow: personalize the shipped model (twice, with other clips), then roll back twice:
    first to the earlier personalization, then to the shipped model; a third has nothing to undo."""
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    personal = tmp_path / "data/edge-emo/personal.bundle"
    more = write_happy_wearer(tmp_path / "more", n=10, seconds=1.2)  # labels the guard sees improve on
    assert edge_emo("personalize", "--labels", wearer_labels, env=env).returncode == 0
    first = load_bundle(personal).version
    assert edge_emo("personalize", "--labels", more, env=env).returncode == 0
    second = load_bundle(personal).version
    assert first != second
    run = edge_emo("personalize", "--rollback", env=env)
    assert run.returncode == 0 and f"removed {second}" in run.stdout and first in run.stdout, run.stderr
    assert load_bundle(personal).version == first
    run = edge_emo("personalize", "--rollback", env=env)
    assert run.returncode == 0 and "listen now uses the shipped model" in run.stdout, run.stderr
    assert not personal.exists() and not (personal.parent / "personal.bundle.prev").exists()
    run = edge_emo("personalize", "--rollback", env=env)
    assert run.returncode == 2 and "does not exist: nothing to roll back" in run.stderr, run.stderr


def test_a_personalization_that_changes_nothing_writes_nothing(bundles, wearer_labels, tmp_path):
    out = tmp_path / "personal.bundle"
    args = ("personalize", "--model", bundles["int8"].path, "--labels", wearer_labels, "--out", out)
    assert edge_emo(*args).returncode == 0
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    run = edge_emo(*args)  # the same clips again: the same head
    assert run.returncode == 0 and "kept the current bundle" in run.stdout and "nothing written" in run.stdout
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == written
    assert not (tmp_path / "personal.bundle.prev").exists()


def test_the_shipped_model_is_personalized_into_the_users_folder(bundles, wearer_labels, tmp_path):
    """Without --out, a bundle inside the installed package is never written; the result goes to
    $XDG_DATA_HOME/edge-emo/personal.bundle."""
    # the package edge_emo is imported from: the checkout, or site-packages when the tests run on a wheel
    installed = DEFAULT_MODEL.parent / f"test-{os.getpid()}.bundle"
    shutil.copytree(bundles["fp32"].path, installed)
    try:
        env = {"XDG_DATA_HOME": str(tmp_path / "data")}
        run = edge_emo("personalize", "--model", str(installed), "--labels", str(wearer_labels), env=env)
        assert run.returncode == 0, run.stderr
        assert load_bundle(tmp_path / "data/edge-emo/personal.bundle").provenance["stage"] == "personalized"
        assert not installed.with_name(installed.name + ".prev").exists()
        assert load_bundle(installed).version == bundles["fp32"].version
    finally:
        shutil.rmtree(installed)


def test_record_personalize_evaluate_and_roll_back_without_torch(bundles, tmp_path):
    """A fresh interpreter in which `import torch` fails, as on a device without it."""
    clips = sorted((write_wearer(tmp_path / "source").parent / "clips").glob("*.wav"))
    labels = tmp_path / "me" / "labels.csv"
    model = tmp_path / "model.bundle"
    shutil.copytree(bundles["int8"].path, model)
    commands = [
        [
            "record",
            "--labels",
            str(labels),
            "--label",
            "happy=2",
            *[arg for p in clips[:3] for arg in ("--input", str(p))],
        ],
        [
            "record",
            "--labels",
            str(labels),
            "--label",
            "anger=1",
            *[arg for p in clips[3:] for arg in ("--input", str(p))],
        ],
        ["personalize", "--model", str(model), "--labels", str(labels)],
        ["evaluate", str(model), str(labels.parent)],
        ["personalize", "--rollback", "--model", str(model)],
    ]
    run = edge_emo_without_torch(*commands)
    assert run.returncode == 0, run.stderr
    assert "| macro-F1 |" in run.stdout and "rolled back" in run.stdout
    assert load_bundle(model).version == bundles["int8"].version


@pytest.mark.parametrize(
    "problem", ["few-clips", "no-speech", "label-range", "feature-set", "read-only", "missing-model"]
)
def test_bad_input_is_a_clear_error_and_changes_nothing(bundles, wearer_labels, tmp_path, problem):
    labels = write_wearer(tmp_path / "me", n=6)
    model = tmp_path / "models" / "model.bundle"
    shutil.copytree(bundles["int8"].path, model)
    args = ["--model", str(model), "--labels", str(labels)]
    prefix: list[str] = []
    if problem == "few-clips":
        labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:5]))
        expected = "4 labeled clip(s); personalization needs at least 5"
    elif problem == "no-speech":
        import soundfile

        soundfile.write(str(labels.parent / "clips/0003.wav"), np.zeros(16000), 16000, subtype="PCM_16")
        expected = "0003.wav: no speech"
    elif problem == "label-range":
        lines = labels.read_text().splitlines()
        lines[2] = lines[2].rsplit(",", 1)[0] + ",4"
        labels.write_text("\n".join(lines) + "\n")
        expected = "labels.csv:3: fear='4' is outside 0..3"
    elif problem == "feature-set":
        args = ["--model", str(bundles["mismatch"].path), "--labels", str(labels), "--out", str(model)]
        expected = "differs from what this openSMILE extracts"
    elif problem == "read-only":
        model.parent.chmod(0o555)
        if os.geteuid() == 0:  # root ignores permission bits unless it gives up CAP_DAC_OVERRIDE
            prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        expected = "is not writable"
    else:
        args = ["--model", str(tmp_path / "nope.bundle"), "--labels", str(labels), "--out", str(model)]
        expected = "nope.bundle does not exist"
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    run = subprocess.run(
        [*prefix, *CLI, "personalize", *args], capture_output=True, text=True, cwd=ROOT, env=cli_env()
    )
    model.parent.chmod(0o755)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and expected in run.stderr, run.stderr
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_rollback_of_a_bundle_that_is_not_personalized_is_an_error(bundles, tmp_path):
    run = edge_emo("personalize", "--rollback", "--out", str(bundles["int8"].path))
    assert run.returncode == 2 and "not a personalized bundle" in run.stderr


def test_listen_uses_the_personalized_model_only_if_it_fits_the_shipped_one(bundles, tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    wearer_labels = write_happy_wearer(tmp_path / "me")  # learnable by the shipped model: the guard accepts
    personal = tmp_path / "data/edge-emo/personal.bundle"

    def listen(*args: str) -> tuple[str, list[dict]]:
        run = edge_emo("listen", "--input", "sample", "--fast", "--json", "--duration", "3", *args, env=env)
        assert run.returncode == 0, run.stderr
        return run.stderr, [json.loads(line)["intensities"] for line in run.stdout.splitlines()]

    shipped_err, shipped = listen()
    assert "personalized" not in shipped_err
    assert edge_emo("personalize", "--labels", wearer_labels, env=env).returncode == 0
    err, personalized = listen()
    assert f"model: your personalized bundle {personal}" in err
    assert personalized != shipped  # the wearer's head is in use
    assert listen("--model", "shipped")[1] == shipped
    # Personalizing again starts from the shipped model again, not from the personalized one: same head.
    assert edge_emo("personalize", "--labels", wearer_labels, env=env).returncode == 0
    assert listen()[1] == personalized
    # A personalized bundle of another model (e.g. made before an upgrade of the shipped one) is not used.
    run = edge_emo(
        "personalize", "--model", bundles["fp32"].path, "--labels", wearer_labels, "--out", personal
    )
    assert run.returncode == 0, run.stderr
    err, out = listen()
    assert "was made from" in err and "using the shipped model" in err and out == shipped
    # Nor a damaged one: the shipped model keeps the device working and the message says what to do.
    (personal / "manifest.json").write_text("{")
    err, out = listen()
    assert "not using your personalized model" in err and "--rollback" in err and out == shipped
    # Its rollback restores the one before it (the first personalized bundle of another model here).
    run = edge_emo("personalize", "--rollback", env=env)
    assert run.returncode == 0 and "the bundle it replaced is back" in run.stdout, run.stderr
    (personal / "manifest.json").write_text("{")  # damaged again, now with nothing before it
    run = edge_emo("personalize", "--rollback", env=env)
    assert run.returncode == 2 and "no bundle before it" in run.stderr and "rm -r" in run.stderr


def test_when_the_shipped_head_fits_best_nothing_is_written(bundles, tmp_path):
    """Clips labeled with the model's own outputs (those within 0..3): the shipped head is the best fit."""
    from edge_emo.data.labels import read_labels

    labels = write_wearer(tmp_path / "me", n=24)
    shipped = bundles["fp32"]
    records = read_labels(labels)
    own = shipped.predict_utterances([extract_file(r.path, shipped.spec) for r in records])
    rows = labels.read_text().splitlines()[:1]
    for r, values in zip(records, own):
        if values.min() >= 0 and values.max() <= 3:
            rel = r.path.relative_to(labels.parent).as_posix()
            rows.append(f"{rel},wearer,wearer,x," + ",".join(f"{v:.6f}" for v in values))
    assert len(rows) > 5, own
    labels.write_text("\n".join(rows) + "\n")
    out = tmp_path / "personal.bundle"
    run = edge_emo("personalize", "--model", shipped.path, "--labels", labels, "--out", out, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["kept"] is True and not out.exists()
    run = edge_emo("personalize", "--model", shipped.path, "--labels", labels, "--out", out)
    assert "kept the current bundle" in run.stdout and "nothing written" in run.stdout and not out.exists()

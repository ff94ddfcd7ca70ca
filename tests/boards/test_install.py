"""The device side installed as a board installs it: `pip install edge-emo` (the built wheel, no extras) into
fresh virtual environments on the oldest and the newest Python that pyproject.toml declares, and into one with
the oldest supported onnxruntime (1.16.3: the last release with manylinux2014 wheels, for glibc before 2.27),
on the oldest Python and on Python 3.11. Each environment runs tests/boards/device_check.py on the same inputs:
openSMILE features of a WAV and both bundles' predictions on fixed feature clips must agree with this (newest
onnxruntime) environment; then every device command (DEVICE_COMMANDS) must run.

The four environments are installed in parallel (pip mostly waits on the registry); a missing interpreter
skips its tests with the reason, an install that fails fails them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tomllib

from tests.boards.shared import listen_differences, write_inputs
from tests.personalize.conftest import write_wearer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEVICE_CHECK = Path(__file__).with_name("device_check.py")
NOT_PACKAGED = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "runs")
LISTEN = ("listen", "--input", "sample", "--fast", "--json")  # the bundled model on the shipped sample
OLDEST_ONNXRUNTIME = "1.16.3"
# Largest difference of an utterance intensity (0..3 scale) allowed against this environment. Measured: none
# at all, fp32 and int8, onnxruntime 1.16.3 to 1.31.1 and Python 3.9 to 3.13 on the same CPU. The bound
# leaves room for float rounding of another build, nothing more: one int8 rounding step would move an
# intensity by about 1e-3 and fail.
TOLERANCE = {"fp32": 1e-6, "int8": 1e-6}


def declared_pythons() -> list[str]:
    """The Python versions pyproject.toml declares (classifiers), checked against requires-python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: 3."
    versions = sorted(
        (
            c.removeprefix("Programming Language :: Python :: ")
            for c in project["classifiers"]
            if c.startswith(prefix)
        ),
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    assert project["requires-python"] == f">={versions[0]}", "requires-python and the classifiers disagree"
    return versions


@dataclass(frozen=True)
class Target:
    python: str  # "3.9"
    pins: tuple[str, ...] = ()  # requirements installed beside the wheel


PYTHONS = declared_pythons()
TARGETS = {
    "oldest-python": Target(PYTHONS[0]),
    "newest-python": Target(PYTHONS[-1]),
    # onnxruntime 1.16.3 was built against numpy 1.x and does not import under numpy 2.
    "oldest-onnxruntime": Target(PYTHONS[0], (f"onnxruntime=={OLDEST_ONNXRUNTIME}", "numpy<2")),
    # The same pins on the newest Python onnxruntime 1.16.3 has wheels for: there pip picks pandas 3 and a
    # pyarrow that refuses numpy 1.x, so importing the opensmile package (which imports pandas) fails; the
    # device commands must never import it (`evaluate` did, through the corpus cache key).
    "oldest-onnxruntime-py3.11": Target("3.11", (f"onnxruntime=={OLDEST_ONNXRUNTIME}", "numpy<2")),
}


def find_python(version: str) -> str | None:
    """An interpreter of `version` that can make virtual environments: on PATH, or installed by pyenv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob(str(pyenv / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import ensurepip, venv"], capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


def clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the venv must import edge_emo from its wheel."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_NO_INPUT"] = "1"
    return env


def run(cmd: list, cwd: Path, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{what} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@dataclass
class Installed:
    """What one environment did, or why it was skipped."""

    skipped: str | None = None
    error: str | None = None  # why installing or running failed
    report: dict | None = None
    outputs: dict | None = None
    help_text: str = ""
    listen: str = ""  # `edge-emo listen --input sample --fast --json` output
    venv: Path | None = None
    commands: dict | None = None  # every device command (DEVICE_COMMANDS) -> its failure, or None


# Every device command, as a wearer runs them (the wearer's clips from `reference`): import a clip, personalize
# the shipped model, listen with the result, score the shipped model, and the quick bench.
DEVICE_COMMANDS = {
    "record": [
        "record",
        "--labels",
        "{work}/recorded/labels.csv",
        "--input",
        "{inputs}/speech.wav",
        "--label",
        "happy=1",
    ],
    "personalize": ["personalize", "--labels", "{inputs}/wearer/labels.csv", "--json"],
    "listen-personalized": ["listen", "--input", "sample", "--fast", "--json", "--duration", "2"],
    "evaluate": ["evaluate", "shipped", "{inputs}/wearer", "--json"],
    "bench": ["bench", "--quick"],
}


def run_device_commands(venv: Path, inputs: Path) -> dict:
    """DEVICE_COMMANDS in the venv (own XDG_DATA_HOME), each command -> None or why it failed."""
    work = venv.parent / f"{venv.name}-work"
    work.mkdir()
    env = {**clean_env(), "XDG_DATA_HOME": str(work / "xdg")}
    failures = {}
    for name, args in DEVICE_COMMANDS.items():
        argv = [a.format(work=work, inputs=inputs) for a in args]
        done = subprocess.run(
            [venv / "bin/edge-emo", *argv], cwd=work, env=env, capture_output=True, text=True
        )
        failures[name] = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-1500:]}"
    return failures


def install_and_check(
    target: Target, venv: Path, wheel: Path, inputs: Path, bundle_paths: list[str]
) -> Installed:
    python = find_python(target.python)
    if python is None:
        return Installed(skipped=f"no Python {target.python} interpreter here (looked on PATH and in pyenv)")
    work = venv.parent
    run([python, "-m", "venv", venv], work, f"python{target.python} -m venv")
    run(
        [venv / "bin/python", "-m", "pip", "install", "-q", wheel, *target.pins], work, "pip install edge-emo"
    )
    output = work / f"{venv.name}.npz"
    check = run(
        [venv / "bin/python", "-I", DEVICE_CHECK, inputs, output, *bundle_paths], work, "device_check.py"
    )
    help_text = run([venv / "bin/edge-emo", "--help"], work, "edge-emo --help").stdout
    listen = run([venv / "bin/edge-emo", *LISTEN], work, "edge-emo listen").stdout
    with np.load(output) as stored:
        outputs = dict(stored)
    report = json.loads(check.stdout)
    commands = run_device_commands(venv, inputs)
    return Installed(
        report=report, outputs=outputs, help_text=help_text, listen=listen, venv=venv, commands=commands
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a copy of the checkout (so the build leaves nothing in it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=shutil.ignore_patterns(*NOT_PACKAGED))
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", tmp / "src"],
        tmp,
        "pip wheel",
    )
    (built,) = (tmp / "dist").glob("edge_emo-*.whl")
    return built


def test_the_wheel_holds_only_edge_emo_and_firmware_bridge(wheel):
    """One namespace: the repository's export/ and benchmarks/ folders (scripts) are not installed as
    top-level packages of those generic names; their code the commands need is inside edge_emo."""
    with zipfile.ZipFile(wheel) as built:
        names = built.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"edge_emo", "firmware_bridge"}
    assert {
        "edge_emo/export/graph.py",
        "edge_emo/bench/core.py",
        "edge_emo/models/default.bundle/model.onnx",
    } <= set(names)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bundles) -> dict:
    """Inputs for every environment, and this environment's results on them."""
    inputs = tmp_path_factory.mktemp("inputs")
    clips = write_inputs(inputs)
    write_wearer(inputs / "wearer", n=5, seconds=0.6)
    outputs = {"features": clips[-1], **{p: b.predict_utterances(clips) for p, b in bundles.items()}}
    listen = subprocess.run(
        [sys.executable, "-m", "edge_emo", *LISTEN],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {"inputs": inputs, "outputs": outputs, "listen": listen}


@pytest.fixture(scope="module")
def installs(tmp_path_factory, wheel, reference, bundles) -> dict[str, Installed]:
    root = tmp_path_factory.mktemp("venvs")
    bundle_paths = [str(b.path) for b in bundles.values()]
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        jobs = {
            name: pool.submit(install_and_check, t, root / name, wheel, reference["inputs"], bundle_paths)
            for name, t in TARGETS.items()
        }
        return {name: job.result() for name, job in jobs.items()}


def result_of(installs: dict[str, Installed], name: str) -> Installed:
    result = installs[name]
    if result.skipped:
        pytest.skip(result.skipped)
    if result.error:
        pytest.fail(result.error, pytrace=False)
    return result


def assert_same_predictions(result: Installed, reference: dict) -> None:
    """Both bundles on the same clips, and `edge-emo listen` with the bundled (int8) model on the sample."""
    outputs, expected = result.outputs, reference["outputs"]
    for precision, tolerance in TOLERANCE.items():
        assert outputs[precision].shape == expected[precision].shape
        difference = np.abs(outputs[precision] - expected[precision]).max()
        assert difference <= tolerance, f"{precision}: differs by {difference:.3g}"
    listen = listen_differences(reference["listen"], result.listen)
    assert listen["updates"][0] > 10 and listen["same_times_and_flags"], listen
    assert listen["max_intensity_difference"] <= TOLERANCE["int8"], listen  # the bundled model is int8


@pytest.mark.parametrize("name", ["oldest-python", "newest-python"])
def test_plain_install_runs_the_device_path(installs, reference, name):
    result = result_of(installs, name)
    report = result.report
    assert report["python"].startswith(TARGETS[name].python + ".")
    assert Path(report["edge_emo_file"]).is_relative_to(result.venv), (
        "edge_emo was not imported from the wheel"
    )
    assert not report["torch_installed"] and not report["torch_imported"]
    # the same openSMILE build gives the same frames on every Python
    assert np.array_equal(result.outputs["features"], reference["outputs"]["features"])
    assert_same_predictions(result, reference)
    for command in ("listen", "devices", "personalize", "bridge-monitor"):
        assert command in result.help_text


@pytest.mark.parametrize("name", ["oldest-onnxruntime", "oldest-onnxruntime-py3.11"])
def test_oldest_onnxruntime_gives_the_same_outputs(installs, reference, name):
    result = result_of(installs, name)
    assert result.report["onnxruntime"] == OLDEST_ONNXRUNTIME
    newest = tuple(int(p) for p in onnxruntime.__version__.split(".")[:2])
    assert newest > (1, 16), (
        f"this environment should have a newer onnxruntime, has {onnxruntime.__version__}"
    )
    assert_same_predictions(result, reference)


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_device_command_runs(installs, name):
    """record, personalize, listen, evaluate and bench --quick in each install; on the oldest onnxruntime
    (numpy 1.x) too, where importing the opensmile package would load pyarrow, which needs numpy 2."""
    result = result_of(installs, name)
    assert set(result.commands) == set(DEVICE_COMMANDS)
    failed = {command: why for command, why in result.commands.items() if why}
    assert not failed, failed

"""Bad input, as a new or a careless user gives it, across every command: each case runs `edge-emo` in a
child process and must exit with the documented code (2: bad input) and one line `error: ...` naming the
input, never a traceback, and leave every file as it was (the whole test folder is compared before and
after: names, sizes, modes, contents' hashes)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile

from edge_emo.runtime.bundle import manifest_digest
from edge_emo.runtime.shipped import DEFAULT_MODEL
from tests.cli import edge_emo
from tests.fixtures import synth_speech, write_wav
from tests.personalize.conftest import write_wearer

SAMPLE = Path(DEFAULT_MODEL).parents[1] / "samples" / "1355-39947-0000.flac"


class Folder:
    """Builders of bad (and good) inputs inside one test's folder."""

    def __init__(self, root: Path, bundle: Path):
        self.root = root
        self.good_bundle = bundle

    def path(self, name: str) -> Path:
        return self.root / name

    def wav(self, name: str, seconds: float = 1.0, rate: int = 16000, channels: int = 1, **kw) -> Path:
        x = synth_speech(max(seconds, 0.01), 16000, seed=1)[: max(1, round(seconds * 16000))]
        x = np.resize(x, max(1, round(seconds * rate)))
        if channels > 1:
            x = np.stack([x] * channels, axis=1)
        soundfile.write(self.root / name, x, rate, **kw)
        return self.root / name

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def folder(self, name: str) -> Path:
        """A folder of the user's, with a file in it."""
        (self.root / name).mkdir()
        (self.root / name / "notes.txt").write_text("mine\n")
        return self.root / name

    def bundle(self, name: str = "model.bundle", rehash: bool = True, **changes) -> Path:
        """A copy of the good bundle with manifest fields changed (digest recomputed unless not rehash)."""
        path = self.root / name
        shutil.copytree(self.good_bundle, path)
        manifest = json.loads((path / "manifest.json").read_text())
        manifest.update(changes)
        if rehash:
            manifest["manifest_sha256"] = manifest_digest(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
        return path

    def raw_bundle(self, manifest: str | bytes, name: str = "raw.bundle") -> Path:
        path = self.root / name
        shutil.copytree(self.good_bundle, path)
        (path / "manifest.json").write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
        return path

    def wearer(self, n: int = 5, rows: Callable[[list[str]], list[str]] | None = None) -> Path:
        """labels.csv with `n` clips; `rows` may rewrite its lines (header first)."""
        labels = write_wearer(self.root / "me", n=n, seconds=0.6)
        if rows is not None:
            labels.write_text("\n".join(rows(labels.read_text().splitlines())) + "\n")
        return labels

    def long_wav(self, name: str, seconds: float) -> Path:
        """A WAV whose header says `seconds` of 16 kHz audio: a sparse file, no disk space used."""
        path = self.wav(name, 1.0)
        data = bytearray(path.read_bytes())
        at = data.index(b"data")
        size = round(seconds * 16000) * 2
        data[at + 4 : at + 8] = size.to_bytes(4, "little")
        data[4:8] = (at + 8 + size - 8).to_bytes(4, "little")
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate(at + 8 + size)
        return path


def _row(rows: list[str], i: int, change: Callable[[list[str]], list[str]]) -> list[str]:
    cells = rows[i].split(",")
    return [*rows[:i], ",".join(change(cells)), *rows[i + 1 :]]


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Folder], list]  # the command line
    says: str  # a part of the error line (it names the input and the limit)
    code: int = 2
    usage: bool = False  # rejected by the command-line parser itself (typer's usage message)


def listen(*extra) -> Callable[[Folder], list]:
    return lambda f: ["listen", "--fast", "--json", "--input", "sample", *extra]


def record(
    clip: Callable[[Folder], Path] | None = lambda f: f.wav("a.wav"),
    *extra: str,
    label: str = "happy=1",
    labels: Callable[[Folder], Path] = lambda f: f.path("w/labels.csv"),
) -> Callable[[Folder], list]:
    """`edge-emo record` importing `clip` (None: from the microphone) into `labels`."""
    source = [] if clip is None else ["--input"]
    return lambda f: [
        "record",
        "--labels",
        labels(f),
        *source,
        *([clip(f)] if clip else []),
        "--label",
        label,
        *extra,
    ]


def refused_by_typer(name: str, option: str, value: str) -> Case:
    """A value with a typer `min=`, which lets NaN through (typer < 0.29, as pinned): edge-emo's own range
    check refuses it in one line, exit 2."""
    return Case(name, listen(option, value), f"{option} {value}")


def _truncated(f: Folder, n: int) -> Path:
    return f.text(f"cut{n}.flac", SAMPLE.read_bytes()[:n])


CASES = [
    # listen: audio
    Case(
        "flac-200-bytes",
        lambda f: ["listen", "--fast", "--json", "--input", _truncated(f, 200)],
        "nothing decodes",
    ),
    Case(
        "wav-1-hz",
        lambda f: ["listen", "--fast", "--json", "--input", f.wav("a.wav", 10, rate=1)],
        "1 Hz is outside 8..192 kHz",
    ),
    Case(
        "wav-100-hz",
        lambda f: ["listen", "--fast", "--json", "--input", f.wav("a.wav", 2, rate=100)],
        "100 Hz is outside 8..192 kHz",
    ),
    Case(
        "wav-384-khz",
        lambda f: ["listen", "--fast", "--json", "--input", f.wav("a.wav", 0.1, rate=384000)],
        "384000 Hz is outside",
    ),
    Case("empty-file", lambda f: ["listen", "--fast", "--json", "--input", f.text("e.wav", b"")], "e.wav"),
    Case(
        "text-as-wav",
        lambda f: ["listen", "--fast", "--json", "--input", f.text("t.wav", "hello")],
        "not a readable audio file",
    ),
    Case(
        "missing-file",
        lambda f: ["listen", "--fast", "--json", "--input", f.path("nope.wav")],
        "no such audio file",
    ),
    Case(
        "folder-as-input",
        lambda f: ["listen", "--fast", "--json", "--input", f.folder("d")],
        "is a folder, not an audio file",
    ),
    Case(
        "eight-channels",
        lambda f: ["listen", "--fast", "--json", "--input", f.wav("a.wav", 0.5, channels=8)],
        "8 audio channels",
    ),
    Case("nan-samples", lambda f: ["listen", "--fast", "--json", "--input", _nan_wav(f)], "NaN"),
    # listen: options
    Case("update-interval-inf", listen("--update-interval", "inf"), "--update-interval inf"),
    refused_by_typer("update-interval-nan", "--update-interval", "nan"),
    Case("update-interval-huge", listen("--update-interval", "1e9"), "within 0.01..60"),
    Case("smoothing-inf", listen("--smoothing", "inf"), "--smoothing inf"),
    refused_by_typer("smoothing-nan", "--smoothing", "nan"),
    Case("cue-after-nan", listen("--cue-after", "nan"), "--cue-after nan"),
    Case("cue-after-negative", listen("--cue-after", "-1"), "within 0..60"),
    Case("vad-threshold-nan", listen("--vad-threshold-db", "nan"), "--vad-threshold-db nan"),
    Case("vad-threshold-positive", listen("--vad-threshold-db", "10"), "within -120..0"),
    Case("vad-threshold-minus-inf", listen("--vad-threshold-db", "-inf"), "--vad-threshold-db -inf"),
    Case("threads-100000", listen("--threads", "100000"), "--threads 100000 is outside 1.."),
    Case("threads-1000-forced", listen("--threads", "1000", "--force-threads"), "outside 1..256"),
    Case("threads-0", listen("--threads", "0"), "Invalid value", usage=True),  # typer's min=1
    Case("duration-inf", listen("--duration", "inf"), "--duration inf"),
    refused_by_typer("buffer-nan", "--buffer", "nan"),
    Case("log-max-mb-inf", listen("--log-max-mb", "inf"), "--log-max-mb inf"),
    refused_by_typer("log-shard-nan", "--log-shard-s", "nan"),
    Case("json-with-stdout-bridge", listen("--bridge", "stdout://"), "--json writes its lines"),
    Case("bridge-unknown-scheme", listen("--bridge", "carrier-pigeon://x"), "carrier-pigeon"),
    Case(
        "log-features-is-a-file",
        lambda f: [*listen()(f), "--log-features", f.text("log", "x")],
        "not a folder",
    ),
    # listen: model bundles
    Case("model-missing", lambda f: [*listen()(f), "--model", f.path("no.bundle")], "does not exist"),
    Case(
        "model-foreign-folder", lambda f: [*listen()(f), "--model", f.folder("d")], "not an edge-emo bundle"
    ),
    Case(
        "model-is-a-file",
        lambda f: [*listen()(f), "--model", f.text("m.bundle", "x")],
        "is a file, not a model bundle",
    ),
    Case(
        "manifest-nested-100000",
        lambda f: [*listen()(f), "--model", f.raw_bundle("[" * 100000 + "]" * 100000)],
        "nested too deeply",
    ),
    Case(
        "manifest-not-json", lambda f: [*listen()(f), "--model", f.raw_bundle("{oops")], "unreadable manifest"
    ),
    Case(
        "manifest-not-utf8",
        lambda f: [*listen()(f), "--model", f.raw_bundle(b"\xff\xfe{}")],
        "unreadable manifest",
    ),
    Case(
        "manifest-2-mb",
        lambda f: [*listen()(f), "--model", f.raw_bundle(" " * (2 << 20) + "{}")],
        "more than a manifest's",
    ),
    Case(
        "manifest-a-list",
        lambda f: [*listen()(f), "--model", f.raw_bundle("[]")],
        "not an edge-emo bundle manifest",
    ),
    Case(
        "chunk-frames-1e9",
        lambda f: [*listen()(f), "--model", f.bundle(chunk_frames=10**9)],
        "chunk_frames 1000000000 is outside 1..1000",
    ),
    Case(
        "chunk-frames-2.7",
        lambda f: [*listen()(f), "--model", f.bundle(chunk_frames=2.7)],
        "'chunk_frames' should be a whole number",
    ),
    Case(
        "chunk-frames-0",
        lambda f: [*listen()(f), "--model", f.bundle(chunk_frames=0)],
        "chunk_frames 0 is outside",
    ),
    Case(
        "chunk-frames-text", lambda f: [*listen()(f), "--model", f.bundle(chunk_frames="10")], "whole number"
    ),
    Case(
        "state-shape-huge",
        lambda f: [*listen()(f), "--model", f.bundle(state_shape=[2, 1, 10**9])],
        "state_shape",
    ),
    Case(
        "state-shape-float",
        lambda f: [*listen()(f), "--model", f.bundle(state_shape=[2.5, 1, 128])],
        "whole number",
    ),
    Case(
        "normalization-nan",
        lambda f: [
            *listen()(f),
            "--model",
            f.bundle(normalization={"mean": [float("nan")] * 25, "std": [1.0] * 25}),
        ],
        "normalisation",
    ),
    Case(
        "format-version-99",
        lambda f: [*listen()(f), "--model", f.bundle(format_version=99)],
        "format version 99",
    ),
    Case(
        "manifest-edited",
        lambda f: [*listen()(f), "--model", f.bundle(rehash=False, emotions=["joy"] * 6)],
        "modified after export",
    ),
    Case("graph-modified", lambda f: [*listen()(f), "--model", _graph_modified(f)], "sha256 mismatch"),
    # record
    Case(
        "record-clip-0.05-s", record(lambda f: f.wav("s.wav", 0.05)), "0.05 s of audio; a clip is 0.5 to 60 s"
    ),
    Case("record-clip-2-hours", record(lambda f: f.long_wav("l.wav", 7200)), "7200.00 s of audio"),
    Case("record-clip-1-hz", record(lambda f: f.wav("a.wav", 10, rate=1)), "1 Hz is outside"),
    Case("record-clip-100-hz", record(lambda f: f.wav("a.wav", 2, rate=100)), "100 Hz is outside"),
    Case("record-missing-clip", record(lambda f: f.path("no.wav")), "no such audio file"),
    Case("record-silent-clip", record(lambda f: _silent(f)), "no speech"),
    Case("record-label-5", record(label="happy=5"), "within 0..3"),
    Case("record-label-unknown", record(label="hungry=1"), "unknown emotion"),
    Case("record-label-nan", record(label="happy=nan"), "within 0..3"),
    Case("record-seconds-inf", record(None, "--seconds", "inf"), "--seconds inf"),
    Case("record-seconds-3600", record(None, "--seconds", "3600"), "within 0.5..60"),
    Case(
        "record-broken-labels",
        record(labels=lambda f: f.wearer(rows=lambda r: _row(r, 2, lambda c: [*c[:4], "x", *c[5:]]))),
        "is not a number",
    ),
    Case(
        "record-duplicate-labels",
        record(labels=lambda f: f.wearer(rows=lambda r: [*r, r[1]])),
        "is already on line 2",
    ),
    # personalize
    Case(
        "personalize-out-foreign-folder",
        lambda f: ["personalize", "--labels", f.wearer(), "--out", f.folder("mine")],
        "is not an edge-emo bundle: refusing",
    ),
    Case(
        "personalize-out-a-file",
        lambda f: ["personalize", "--labels", f.wearer(), "--out", f.text("mine.txt", "x")],
        "is not an edge-emo bundle: refusing",
    ),
    Case(
        "personalize-prev-foreign",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(),
            "--out",
            f.bundle("p.bundle") and f.folder("p.bundle.prev") and f.path("p.bundle"),
        ],
        "p.bundle.prev exists and is not an edge-emo bundle",
    ),
    Case(
        "personalize-duplicate-clips",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(rows=lambda r: [*r, r[1], r[1], r[1]]),
            "--out",
            f.path("p.bundle"),
        ],
        "is already on line 2",
    ),
    Case(
        "personalize-two-clips",
        lambda f: ["personalize", "--labels", f.wearer(rows=lambda r: r[:3]), "--out", f.path("p.bundle")],
        "needs at least 5",
    ),
    Case(
        "personalize-missing-clip",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(rows=lambda r: _row(r, 3, lambda c: ["clips/9999.wav", *c[1:]])),
            "--out",
            f.path("p.bundle"),
        ],
        "9999.wav: no such audio file",
    ),
    Case(
        "personalize-clip-1-hz",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(rows=lambda r: _row(r, 3, lambda c: [str(f.wav("one.wav", 10, rate=1)), *c[1:]])),
            "--out",
            f.path("p.bundle"),
        ],
        "1 Hz is outside",
    ),
    Case(
        "personalize-clip-2-hours",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(rows=lambda r: _row(r, 3, lambda c: [str(f.long_wav("l.wav", 7200)), *c[1:]])),
            "--out",
            f.path("p.bundle"),
        ],
        "7200.00 s of audio",
    ),
    Case(
        "personalize-intensity-inf",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(rows=lambda r: _row(r, 2, lambda c: [*c[:4], "inf", *c[5:]])),
            "--out",
            f.path("p.bundle"),
        ],
        "outside 0..3",
    ),
    Case(
        "personalize-labels-nul",
        lambda f: [
            "personalize",
            "--labels",
            f.text("l.csv", b"path,speaker\x00,x\n"),
            "--out",
            f.path("p.bundle"),
        ],
        "l.csv",
    ),
    Case(
        "personalize-labels-not-utf8",
        lambda f: ["personalize", "--labels", f.text("l.csv", b"\xff\xfe\x00p"), "--out", f.path("p.bundle")],
        "not a readable CSV",
    ),
    Case(
        "personalize-labels-no-columns",
        lambda f: ["personalize", "--labels", f.text("l.csv", "a,b\n1,2\n"), "--out", f.path("p.bundle")],
        "missing column(s)",
    ),
    Case(
        "personalize-model-garbage",
        lambda f: [
            "personalize",
            "--labels",
            f.wearer(),
            "--model",
            f.raw_bundle("{}"),
            "--out",
            f.path("p.bundle"),
        ],
        "not an edge-emo bundle manifest",
    ),
    Case(
        "rollback-without-prev",
        lambda f: ["personalize", "--rollback", "--out", f.bundle("p.bundle")],
        "nothing to roll back",
    ),
    # evaluate
    Case("evaluate-shipped-missing-dir", lambda f: ["evaluate", "shipped", f.path("nodata")], "nodata"),
    Case(
        "evaluate-not-a-model",
        lambda f: ["evaluate", f.text("notes.txt", "x"), f.path("nodata")],
        "not a safetensors checkpoint",
    ),
    Case(
        "evaluate-missing-model",
        lambda f: ["evaluate", f.path("nothing"), f.path("nodata")],
        "no such checkpoint (.safetensors) or bundle",
    ),
    Case(
        "evaluate-duplicate-clips",
        lambda f: ["evaluate", "shipped", f.wearer(rows=lambda r: [*r, r[1]]).parent],
        "is already on line 2",
    ),
    Case(
        "evaluate-foreign-folder",
        lambda f: ["evaluate", f.folder("m"), f.path("nodata")],
        "not an edge-emo bundle",
    ),
    # export
    Case(
        "export-missing-checkpoint",
        lambda f: ["export", f.path("none.safetensors"), "--out", f.path("x.bundle")],
        "none.safetensors",
    ),
    Case(
        "export-out-foreign-folder",
        lambda f: ["export", _checkpoint(f), "--out", f.folder("mine")],
        "is not an edge-emo bundle: refusing",
    ),
    Case(
        "export-chunk-frames-huge",
        lambda f: ["export", _checkpoint(f), "--out", f.path("x.bundle"), "--chunk-frames", "100000"],
        "--chunk-frames 100000 is outside 1..1000",
    ),
    # bridge-monitor
    Case(
        "monitor-unknown-scheme",
        lambda f: ["bridge-monitor", "carrier-pigeon://x", "--timeout", "0.1"],
        "carrier-pigeon",
    ),
    Case(
        "monitor-bad-port",
        lambda f: ["bridge-monitor", "udp://127.0.0.1:notaport", "--timeout", "0.1"],
        "notaport",
    ),
    Case(
        "monitor-missing-serial",
        lambda f: ["bridge-monitor", f"serial://{f.path('ttyNONE')}", "--timeout", "0.1"],
        "ttyNONE",
    ),
    Case(
        "monitor-count-0",
        lambda f: ["bridge-monitor", "udp://127.0.0.1:9", "--count", "0"],
        "Invalid value",
        usage=True,
    ),
    Case(
        "monitor-timeout-nan",
        lambda f: ["bridge-monitor", "udp://127.0.0.1:0", "--timeout", "nan"],
        "Invalid value",
        usage=True,
    ),
]


def _nan_wav(f: Folder) -> Path:
    x = np.full(8000, np.nan, np.float32)
    soundfile.write(f.root / "nan.wav", x, 16000, subtype="FLOAT")
    return f.root / "nan.wav"


def _silent(f: Folder) -> Path:
    return write_wav(f.root / "silent.wav", np.zeros(16000, np.float32))


def _graph_modified(f: Folder) -> Path:
    path = f.bundle("g.bundle")
    with open(path / "model.onnx", "r+b") as g:
        g.seek(-8, os.SEEK_END)
        g.write(b"\0" * 8)
    return path


def _checkpoint(f: Folder) -> Path:
    """The checkpoint the test bundles were exported from (tests/conftest.py)."""
    manifest = json.loads((f.good_bundle / "manifest.json").read_text())
    return Path(manifest["provenance"]["export"]["checkpoint"])


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: mode, size and content hash (files)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and st.st_size < 2**22 else ""
        )
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size if path.is_file() else 0, digest)
    return out


def test_the_table_is_wide():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, bundles, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    folder = Folder(work, bundles["int8"].path)
    args = case.args(folder)
    before = snapshot(tmp_path)
    run = edge_emo(*args, env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert run.returncode == case.code, (args, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    if case.usage:  # the parser's own message box
        assert case.says in run.stderr
    else:
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and case.says in errors[0], run.stderr
        assert not run.stderr.strip().splitlines()[-1:] or run.stderr.strip().splitlines()[-1] == errors[0]
    assert snapshot(tmp_path) == before  # nothing written, nothing removed

"""What `listen --json` keeps out of its process. Its peak memory is measured by `edge-emo bench` (the
command in a process of its own; benchmarks/README.md), never asserted; this guards the libraries whose absence brought it
under 80 MB: pydantic (typer 0.29 imports it for every command), rich (only the live view draws),
OpenSSL's libcrypto (hashlib) and numpy.random (the first run's graph measurement); torch and onnx never; and
on a bundle's first run, the graph it does not run (the fp32 one, measured in a child process)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import python

KEPT_OUT = ("pydantic", "rich", "_hashlib", "numpy.random", "torch", "onnx")


def test_listen_json_never_imports_what_it_does_not_need(bundle, tmp_path):
    code = (
        "import json, os, runpy, sys\n"
        "os.environ.pop('EDGE_EMO_GRAPH', None)  # the first run on a machine: both graphs measured\n"
        "import onnxruntime\n"
        "opened = []  # every graph this process opens a session on\n"
        "class Noted(onnxruntime.InferenceSession):\n"
        "    def __init__(self, model, *args, **kwargs):\n"
        "        opened.append(model if isinstance(model, str) else 'bytes')\n"
        "        super().__init__(model, *args, **kwargs)\n"
        "onnxruntime.InferenceSession = Noted\n"
        f"os.environ['XDG_CACHE_HOME'] = {str(tmp_path)!r}\n"
        f"sys.argv = ['edge-emo', 'listen', '--model', {str(bundle.path)!r}, '--input', 'sample', '--fast',\n"
        "            '--json', '--duration', '2']\n"
        "try:\n"
        "    runpy.run_module('edge_emo', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print(json.dumps(opened), file=sys.stderr)\n"
        f"print(json.dumps([m for m in {KEPT_OUT!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    run = python(code)
    assert run.returncode == 0, run.stderr
    assert "just now" in run.stderr  # the graph choice was measured, for this first run
    *_, opened, kept_out = run.stderr.strip().splitlines()
    assert json.loads(kept_out) == []
    # The listening process opened a session on the graph it runs, never on the other one.
    chosen = run.stderr.split(": graph ", 1)[1].split(",", 1)[0]
    files = {g.name: g.file for g in bundle.graphs}
    assert [Path(p).name for p in json.loads(opened) if p != "bytes"] == [files[chosen]]

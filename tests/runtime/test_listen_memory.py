"""What `listen --json` keeps out of its process. Its peak memory is measured by `edge-emo bench` (the
memory worker; benchmarks/README.md), never asserted; this guards the libraries whose absence brought it
under 80 MB: pydantic (typer 0.29 imports it for every command), rich (only the live view draws),
OpenSSL's libcrypto (hashlib) and numpy.random (the first run's graph measurement); torch and onnx never."""

from __future__ import annotations

import json

from tests.cli import python

KEPT_OUT = ("pydantic", "rich", "_hashlib", "numpy.random", "torch", "onnx")


def test_listen_json_never_imports_what_it_does_not_need(bundle, tmp_path):
    code = (
        "import json, os, runpy, sys\n"
        "os.environ.pop('EDGE_EMO_GRAPH', None)  # the first run on a machine: both graphs measured\n"
        f"os.environ['XDG_CACHE_HOME'] = {str(tmp_path)!r}\n"
        f"sys.argv = ['edge-emo', 'listen', '--model', {str(bundle.path)!r}, '--input', 'sample', '--fast',\n"
        "            '--json', '--duration', '2']\n"
        "try:\n"
        "    runpy.run_module('edge_emo', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(json.dumps([m for m in {KEPT_OUT!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    run = python(code)
    assert run.returncode == 0, run.stderr
    assert "just now" in run.stderr  # the graph choice was measured in this process
    assert json.loads(run.stderr.strip().splitlines()[-1]) == []

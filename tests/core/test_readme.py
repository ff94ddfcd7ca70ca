"""The README's example outputs are what the shipped model prints: `scripts/readme_examples.py --check`
reruns `edge-emo listen --input sample --fast` (the live view and --json) and fails on any difference.
When the shipped model changes, rerun `python scripts/readme_examples.py` and commit README.md."""

from __future__ import annotations

import subprocess
import sys

from tests.cli import ROOT, cli_env


def test_readme_examples_match_the_shipped_model():
    run = subprocess.run(
        [sys.executable, "scripts/readme_examples.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "examples match the shipped model (listen-view, listen-json)" in run.stdout


def test_the_examples_sit_between_markers_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = ("listen-view", "listen-json", "evaluate", "evaluate-ordinary")
    for name in names:
        assert readme.count(f"<!-- example: {name} -->") == 1, name
    assert readme.count("<!-- /example -->") == len(names)

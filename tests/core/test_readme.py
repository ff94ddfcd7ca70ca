"""The README's example outputs are what the shipped model prints: `scripts/readme_examples.py --check`
reruns `edge-emo listen --input sample --fast` (the live view and --json), remakes the quality table from the
committed cross-validation summaries, and fails on any difference.
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
    assert "examples match the shipped model (listen-view, listen-json, quality-cv)" in run.stdout


def test_the_examples_sit_between_markers_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = ("listen-view", "listen-json", "quality-cv", "evaluate", "evaluate-ordinary")
    for name in names:
        assert readme.count(f"<!-- example: {name} -->") == 1, name
    assert readme.count("<!-- /example -->") == len(names)


def test_the_quality_table_is_the_cross_validation_summary(tmp_path, monkeypatch):
    """Every number of the generated table comes from docs/quality-cv-default; a changed summary changes it."""
    import json

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import readme_examples
    finally:
        sys.path.pop(0)
    table = readme_examples.quality_table()
    summary = json.loads((readme_examples.CV_SUMMARY / "summary.json").read_text())
    f1 = summary["corpora"]["emo_speech_dev"]["model"]["macro_f1"]
    assert f"| RAVDESS actors | macro-F1 | {f1['mean']:.3f} [" in table
    pooled = summary["ordinary"]["speech_unlabeled"]["pooled"]
    assert f"({pooled['k']} of {pooled['n']})" in table
    # another summary (copied, the macro-F1 raised over the target) gives another table and verdict
    copy = tmp_path / "cv"
    (copy / "cold").mkdir(parents=True)
    (copy / "cold" / "summary.json").write_text(
        (readme_examples.CV_SUMMARY / "cold" / "summary.json").read_text()
    )
    summary["corpora"]["emo_speech_dev"]["model"]["macro_f1"]["mean"] = 0.6
    (copy / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(readme_examples, "CV_SUMMARY", copy)
    table = readme_examples.quality_table()
    assert "| RAVDESS actors | macro-F1 | 0.600 [" in table
    assert "0.55: **met**" in table

"""The README's example outputs, produced by the commands they show, on the shipped model, so they cannot
drift from what a fresh install prints. Each block sits between marker comments in README.md:

    <!-- example: NAME -->
    ...generated...
    <!-- /example -->

    python scripts/readme_examples.py                  # rewrite the listen live-view and --json blocks
    python scripts/readme_examples.py --data ../shared/data/emo_speech_dev   # and the evaluate table
        [--ordinary ../shared/data/speech_unlabeled]                          # and the false cues
    python scripts/readme_examples.py --check          # exit 1 and show the difference if README differs

The quality table (`quality-cv`) is made from the cross-validation summaries the build script writes
(docs/quality-cv-default/summary.json and cold/summary.json), so it is always rewritten and checked.

Every command runs as a user runs it (`python -m edge_emo ...` from this checkout), with an empty
$XDG_DATA_HOME so that no personalized model of yours is used, the int8 graph (EDGE_EMO_GRAPH, not the
graph this machine measures faster) and 80 terminal columns. `listen --fast` on the shipped sample is
deterministic, so the blocks are compared exactly (tests/core/test_readme.py).
Not part of the package: the device never runs this."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHIPPED = ROOT / "edge_emo" / "models" / "default.bundle"
BLOCK = re.compile(r"(<!-- example: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /example -->)", re.S)


def edge_emo(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": home, "COLUMNS": "80"}
        env.update({"TERM": "dumb", "NO_COLOR": "1"})
        env["EDGE_EMO_GRAPH"] = "int8"  # the shipped graph, not the one this machine measures faster
        run = subprocess.run(
            [sys.executable, "-m", "edge_emo", *args], capture_output=True, text=True, cwd=ROOT, env=env
        )
    if run.returncode != 0:
        sys.exit(f"edge-emo {' '.join(args)} failed:\n{run.stderr}")
    return run


def fenced(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```\n"


def listen_view() -> str:
    """The live view's last frame (listen writes it once, plain, when stdout is not a terminal)."""
    return fenced(edge_emo("listen", "--input", "sample", "--fast").stdout)


def listen_json() -> str:
    """The last JSON line of the sample: the end of its second utterance."""
    return fenced(edge_emo("listen", "--input", "sample", "--fast", "--json").stdout.splitlines()[-1], "json")


def evaluate_table(data: Path) -> str:
    """`edge-emo evaluate` of the shipped model on DATA's validation speakers, with its warnings."""
    run = edge_emo("evaluate", str(SHIPPED.relative_to(ROOT)), str(data), "--split", "val")
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    shown = f"$ edge-emo evaluate edge_emo/models/default.bundle {data} --split val\n"
    return fenced(shown + "".join(f"{w}\n" for w in warnings) + run.stdout)


def ordinary_table(ordinary: Path) -> str:
    """`edge-emo evaluate` of the shipped model on unlabeled ordinary speech: its false cues."""
    run = edge_emo("evaluate", str(SHIPPED.relative_to(ROOT)), str(ordinary))
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    shown = f"$ edge-emo evaluate edge_emo/models/default.bundle {ordinary}\n"
    return fenced(shown + "".join(f"{w}\n" for w in warnings) + run.stdout)


CV_SUMMARY = ROOT / "docs" / "quality-cv-default"
LABELED, WILD, ORDINARY = "emo_speech_dev", "emo_speech_wild", "speech_unlabeled"
# issue 16's targets: (corpus, measure, row label, limit, higher is better); None: reported only
TARGETS = (
    (LABELED, "macro_f1", "RAVDESS actors | macro-F1", 0.55, True),
    (LABELED, "uar", "RAVDESS actors | categorical UAR (7 classes, calm = neutral)", 0.60, True),
    (LABELED, "false_cue_neutral", "RAVDESS actors | neutral and calm clips with a false cue", 0.20, False),
    (
        WILD,
        "macro_f1",
        "`emo_speech_wild` speakers and places | macro-F1 (happiness, anger, fear)",
        0.40,
        True,
    ),
    (
        WILD,
        "false_cue_neutral",
        "`emo_speech_wild` speakers and places | calm clips with a false cue",
        None,
        False,
    ),
)


def _interval(stat: dict, percent: bool) -> str:
    fmt = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.3f}")
    return f"{fmt(stat['mean'])} [{fmt(max(stat['ci95'][0], 0.0))}, {fmt(stat['ci95'][1])}]"


def _verdict(mean: float, limit: float | None, higher: bool, percent: bool) -> str:
    if limit is None:
        return "reported"
    shown = f"{100 * limit:.0f}%" if percent else f"{limit:.2f}"
    met = mean >= limit if higher else mean <= limit
    by = f"{100 * abs(mean - limit):.1f} points" if percent else f"{abs(mean - limit):.3f}"
    return f"{shown}: **met**" if met else f"{shown}: missed by {by}"


def quality_table() -> str:
    """The cross-validation table of README's "Model quality", from the summaries the build script wrote."""
    import json

    warm = json.loads((CV_SUMMARY / "summary.json").read_text())
    cold = json.loads((CV_SUMMARY / "cold" / "summary.json").read_text())
    lines = [
        f"{warm['folds']}-fold cross-validation, mean [95% interval over folds], outputs clipped to 0..3, "
        "from docs/quality-cv-default/:",
        "",
        "| on unseen ... | measure | with the estimate | first words | all-zeros | target |",
        "|---|---|---|---|---|---|",
    ]
    for corpus, measure, label, limit, higher in TARGETS:
        percent = measure.startswith("false_cue")
        stat, first = warm["corpora"][corpus]["model"][measure], cold["corpora"][corpus]["model"][measure]
        zeros = warm["corpora"][corpus]["zeros"][measure]["mean"]
        shown_zeros = f"{100 * zeros:.0f}%" if percent else f"{zeros:.3f}"
        verdict = _verdict(stat["mean"], limit, higher, percent)
        lines.append(
            f"| {label} | {_interval(stat, percent)} | {_interval(first, percent)} | {shown_zeros} | {verdict} |"
        )
    for summary, column in ((warm, "estimate"), (cold, "first words")):
        pooled = summary["ordinary"][ORDINARY]["pooled"]
        summary[column] = f"{100 * pooled['rate']:.1f}% ({pooled['k']} of {pooled['n']})"
    lines.append(
        f"| LibriSpeech readers | utterances with a false cue | {warm['estimate']} | {cold['first words']} | 0% | "
        f"{_verdict(warm['ordinary'][ORDINARY]['pooled']['rate'], 0.10, False, True)} |"
    )
    return "\n".join(lines) + "\n"


def blocks(data: Path | None, ordinary: Path | None = None) -> dict[str, str]:
    out = {"listen-view": listen_view(), "listen-json": listen_json(), "quality-cv": quality_table()}
    if data is not None:
        out["evaluate"] = evaluate_table(data)
    if ordinary is not None:
        out["evaluate-ordinary"] = ordinary_table(ordinary)
    return out


def rewrite(readme: str, generated: dict[str, str]) -> str:
    """`readme` with each generated block in place (blocks not generated stay as they are)."""
    found = {m["name"] for m in BLOCK.finditer(readme)}
    missing = set(generated) - found
    if missing:
        sys.exit(f"README.md has no marker for {', '.join(sorted(missing))}")

    def replace(m: re.Match) -> str:
        body = generated.get(m["name"], m["body"])
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="Labeled corpus for the evaluate table (optional).")
    parser.add_argument(
        "--ordinary", type=Path, help="Unlabeled ordinary speech for the false-cue table (optional)."
    )
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if README differs.")
    args = parser.parse_args()
    before = README.read_text()
    generated = blocks(args.data, args.ordinary)
    after = rewrite(before, generated)
    if args.check:
        if after != before:
            diff = difflib.unified_diff(
                before.splitlines(), after.splitlines(), "README.md", "generated", lineterm=""
            )
            sys.exit("README.md differs from the shipped model's output; run python scripts/readme_examples.py\n"
                     + "\n".join(diff))  # fmt: skip
        print(f"README.md examples match the shipped model ({', '.join(generated)})")
        return
    if after != before:
        tmp = README.with_name(README.name + ".tmp")
        tmp.write_text(after)
        os.replace(tmp, README)
    print(f"README.md: {'updated' if after != before else 'already up to date'} ({', '.join(generated)})")


if __name__ == "__main__":
    main()

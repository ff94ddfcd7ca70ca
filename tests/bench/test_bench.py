"""`edge-emo bench --quick` runs end to end and writes well-formed results, with torch and with torch blocked.
Times are never checked (they belong to the JSON, not to assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_emo.bench.core import CHUNKS, GRU_OP, INT8, STREAM, TARGETS, TORCH, TORCH_SKIP, load_warnings
from edge_emo.bench.live import CASES, STAGE_NAMES
from tests.cli import edge_emo

ROOT = Path(__file__).resolve().parents[2]
# The bench through the CLI with `import torch` failing, as on a board without torch.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from edge_emo.cli import app; "
    "app(sys.argv[1:], prog_name='edge-emo')"
)


def _bench(tmp_path: Path, torch_blocked: bool) -> tuple[dict, str]:
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runner = ["-c", NO_TORCH] if torch_blocked else ["-m", "edge_emo"]
    done = subprocess.run(
        [sys.executable, *runner, "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def _check_structure(result: dict, table: str, with_torch: bool) -> None:
    cores = os.cpu_count()
    assert result["torch"] is with_torch
    machine = result["machine"]
    assert machine["cores"] == cores and machine["arch"] and machine["cpu_model"]
    assert machine["libraries"]["onnxruntime"] and len(machine["load_average_at_start"]) == 3
    cells = {(r["variant"], r["threads"], r["chunk"]): r for r in result["latency"]}
    for variant in (TORCH, GRU_OP, INT8, STREAM):
        for threads in {1, cores}:
            for chunk in CHUNKS:
                row = cells[(variant, threads, chunk)]
                if variant in (TORCH, GRU_OP) and not with_torch:
                    assert row["skipped"] == TORCH_SKIP
                else:
                    us = row["us_per_frame"]
                    assert 0 < us["median"] <= us["p90"] <= us["p99"]
    pairs = {r["pair"] for r in result["ratios"]}
    assert any(p.startswith(TORCH) for p in pairs) is with_torch
    assert all(r["speedup_median"] > 0 for r in result["ratios"])
    front_ends = {(f["feature_set"], f["hop_ms"]): f for f in result["features"]}
    assert set(front_ends) == {(fs, hop) for fs in ("egemaps", "egemaps-lite", "compare") for hop in (10, 20)}
    assert all(f["frames"] > 0 and f["rtf_cpu"] > 0 for f in result["features"])
    for fs in ("egemaps", "egemaps-lite", "compare"):  # the same audio, a frame every 10 or 20 ms
        assert abs(front_ends[fs, 10]["frames"] - 2 * front_ends[fs, 20]["frames"]) <= 3
    assert all(e["updates"] > 0 and e["rtf_wall"] > 0 for e in result["end_to_end"])
    latency = result["audio_to_update_latency"]
    assert latency["updates"] > 0
    # An update can only carry frames whose audio was written: at least the newest frame's hop has passed.
    assert latency["newest_frame_ms"]["median"] > 0
    memory = result["memory"]
    assert memory["runtime"]["peak_rss_mb"] > 0 and memory["runtime"]["torch_imported"] is False
    assert memory["listen"]["peak_rss_mb"] > 0 and memory["listen"]["torch_imported"] is False
    # A bundle's first run measures its graphs in a child process: the tree's peak counts it, listen's not.
    first = memory["listen_first_run"]
    assert first["graph_measured"] is True and memory["listen"]["graph_measured"] is False
    assert first["process_tree_peak_rss_mb"] > 0 and first["torch_imported"] is False
    floor = result["framework_floor"]
    assert floor["run_call_us"] > 0 and floor["scan_steps_per_frame"] >= 1 and floor["nodes_per_frame"] > 0
    assert floor["overhead_us_per_frame_at_10"] > 0
    assert ("peak_rss_mb" in memory["torch"]) is with_torch
    assert result["sizes"]["bundle_graph_bytes"] > 0
    assert [t["target"] for t in result["targets"]] == list(TARGETS)
    assert result["warnings"] == load_warnings(result)
    # The Markdown table: every variant row, the targets, skipped torch rows when torch is absent.
    for variant in (TORCH, GRU_OP, INT8, STREAM):
        assert f"| {variant} |" in table
    assert "| target | limit | measured | met |" in table
    assert (f"| {TORCH} | skipped" in table) is not with_torch
    _check_live(result, table)


def _has_portaudio() -> bool:
    import ctypes.util

    return ctypes.util.find_library("portaudio") is not None


def _check_live(result: dict, table: str) -> None:
    """The live share: every case ran `listen` with openSMILE's thread (and PortAudio's for a microphone)
    busy in the window; every stage was measured; the warnings are a list (of sentences, when loaded)."""
    live = result["live"]
    assert [c["case"] for c in live["cases"]] == [c.name for c in CASES]
    for case in live["cases"]:
        if "skipped" in case:  # a microphone case without PortAudio: never on a machine that has it
            assert case["microphone"] and not _has_portaudio(), case["skipped"]
            continue
        threads = case["thread_share_pct"]
        assert case["cpu_share_pct"] > 0 and case["window_s"] > 0 and "main" in threads
        assert any(k.startswith("edge-emo-smile") for k in threads)
        assert any(k.startswith("edge-emo-audio") for k in threads) is case["microphone"]
    assert set(live["stages_pct_of_core"]) >= set(STAGE_NAMES)
    assert all(v >= 0 for v in live["stages_pct_of_core"].values())
    assert "Live CPU share of `edge-emo listen`" in table and "| file, --json |" in table
    front_ends = [(f["feature_set"], f["hop_ms"]) for f in live["frontends"]]
    assert front_ends[0] == ("egemaps", 10) and live["frontends"][0]["ratio_to_egemaps_median"] == 1
    assert set(front_ends) == {(fs, hop) for fs in ("egemaps", "egemaps-lite", "compare") for hop in (10, 20)}
    assert "| egemaps | 20 ms | 25 |" in table
    assert isinstance(result["warnings"], list)


@pytest.mark.slow
def test_bench_quick_with_torch(tmp_path):
    pytest.importorskip("torch")
    result, table = _bench(tmp_path, torch_blocked=False)
    _check_structure(result, table, with_torch=True)


@pytest.mark.slow
def test_bench_quick_without_torch(tmp_path):
    result, table = _bench(tmp_path, torch_blocked=True)
    _check_structure(result, table, with_torch=False)


def test_random_bundle_of_another_size_runs(tmp_path):
    """benchmarks/random_bundle.py: a bundle the bench can time for a model size nobody trained yet."""
    pytest.importorskip("torch")
    import numpy as np

    from benchmarks.random_bundle import random_bundle
    from edge_emo.runtime.bundle import load_bundle

    bundle = load_bundle(random_bundle(tmp_path / "2x16.bundle", hidden=16).path)
    assert bundle.state_shape == (2, 1, 16) and bundle.precision == "int8"
    frames = np.random.default_rng(0).standard_normal((23, bundle.spec.dim)).astype(np.float32)
    assert bundle.predict_utterances([frames]).shape == (1, len(bundle.emotions))

    # another front end: its spec, the shipped statistics of the columns it shares with the shipped set
    from edge_emo.features import spec_for

    lite = load_bundle(random_bundle(tmp_path / "lite.bundle", hidden=16, feature_set="egemaps-lite").path)
    shipped = load_bundle(ROOT / "edge_emo" / "models" / "default.bundle")
    assert lite.spec == spec_for("egemaps-lite", shipped.spec.hop_s) and lite.spec.dim == 13
    loudness = shipped.spec.columns.index("Loudness_sma3")
    assert lite.norm.mean[0] == shipped.norm.mean[loudness]
    frames = np.random.default_rng(0).standard_normal((23, 13)).astype(np.float32)
    assert lite.predict_utterances([frames]).shape == (1, len(lite.emotions))

    # another hop: the shipped columns and statistics, a frame every 10 or 20 ms, one 80 ms update per call
    other_ms = 10 if shipped.spec.hop_s == 0.02 else 20
    other = load_bundle(random_bundle(tmp_path / "hop.bundle", hidden=16, hop_ms=other_ms).path)
    assert other.spec == spec_for(shipped.spec.name, other_ms / 1000) and other.chunk_frames == 80 // other_ms
    assert np.array_equal(other.norm.mean, shipped.norm.mean)


def test_a_loaded_machine_is_named_in_the_results():
    """The warning logic on the facts a bench records (a real run's load cannot be ordered in a test)."""
    ratio = {"pair": f"{TORCH} / {INT8}", "threads": 1, "chunk": 10, "speedup_median": 3.1}
    quiet = {
        "machine": {
            "cores": 2,
            "load_average_at_start": [0.4, 0.5, 0.6],
            "load_average_at_end": [0.9, 0.6, 0.6],
        },
        "ratios": [{**ratio, "speedup_min": 2.8, "speedup_max": 3.3}],
    }
    assert load_warnings(quiet) == []
    loaded = {
        "machine": {**quiet["machine"], "load_average_at_end": [6.4, 3.0, 2.0]},
        "ratios": [*quiet["ratios"], {**ratio, "chunk": 1, "speedup_min": 0.9, "speedup_max": 1811.0}],
    }
    warnings = load_warnings(loaded)
    assert "the machine was loaded (load average up to 6.4 on 2 cores)" in warnings[0]
    assert "1 of 2 speedups vary more than" in warnings[1] and "0.90-1811.00x" in warnings[1]


@pytest.mark.slow
def test_bench_live_only(tmp_path):
    """`edge-emo bench --live-only --quick`: only the live share, in the same JSON shape and table."""
    out = tmp_path / "live.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "edge_emo", "bench", "--live-only", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["command"].startswith("edge-emo bench --live-only") and "latency" not in result
    assert "Model step latency" not in done.stdout
    _check_live(result, done.stdout)
    # a loaded machine's warnings open the table, each once
    for warning in (f"**Warning:** {w}." for w in result["warnings"]):
        assert done.stdout.count(warning) == 1 and done.stdout.index(warning) < done.stdout.index("Machine:")


def test_bench_refuses_a_folder_as_its_output_before_measuring(tmp_path):
    run = edge_emo("bench", "--quick", "--out", tmp_path, timeout=60)
    assert run.returncode == 2 and run.stderr.strip() == f"error: {tmp_path}: is a folder, not a file name"
    assert list(tmp_path.iterdir()) == []

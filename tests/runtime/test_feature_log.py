"""`edge-emo listen --log-features DIR` keeps feature frames, never audio: the logged frames are exactly the
offline extractor's frames of the speech segments, nothing audio-like is written anywhere, a SIGKILL at any
moment loses at most the shard being collected, and the size cap drops the oldest shards first."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_emo.features import extract_file, load_audio, resample, spec_for
from edge_emo.features.audio import to_pcm16
from edge_emo.features.log_format import (
    FORMAT,
    FeatureLogError,
    read_shard,
    shard_paths,
    spec_id,
    temporary_paths,
)
from edge_emo.runtime.log_writer import FeatureLogger
from tests.cli import CLI, cli_env, edge_emo_without_torch
from tests.fixtures import synth_speech, write_wav

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".raw", ".pcm", ".aiff", ".au", ".webm", ".m4a"}


def talk(seconds: float, seed: int) -> np.ndarray:
    """Speech-like bursts separated by pauses longer than the detector's hangover (several utterances)."""
    rng = np.random.default_rng(seed)
    parts, total = [np.zeros(3000, np.float32)], 0.0
    while total < seconds:
        burst = rng.uniform(0.8, 2.5)
        parts += [synth_speech(burst, seed=seed + len(parts)), np.zeros(int(16000 * rng.uniform(0.7, 1.2)))]
        total += burst
    return np.concatenate(parts).astype(np.float32)


def listen(bundle, *args: str, cwd: Path, tmp: Path, home: Path) -> subprocess.CompletedProcess:
    """`edge-emo listen` in a fresh interpreter, with its own working, temporary and home folders."""
    env = cli_env({"TMPDIR": str(tmp), "HOME": str(home)})
    env.pop("ORT_DISABLE_TELEMETRY", None)  # edge-emo's own default, not the test runner's
    return subprocess.run(
        [*CLI, "listen", "--model", str(bundle.path), "--fast", "--json", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def logged(bundle, tmp_path_factory):
    """One logging session over two files (16 kHz and 48 kHz): what it wrote and where."""
    root = tmp_path_factory.mktemp("logged")
    inputs = root / "inputs"
    inputs.mkdir()
    a = write_wav(inputs / "a.wav", talk(6.0, seed=1))
    x48, _ = load_audio(write_wav(inputs / "b16.wav", talk(4.0, seed=2)))
    import soxr

    b = write_wav(inputs / "b.wav", soxr.resample(x48, 16000, 48000), 48000)
    (inputs / "b16.wav").unlink()
    work, tmp, home, log = root / "cwd", root / "tmp", root / "home", root / "log"
    for folder in (work, tmp, home):
        folder.mkdir()
    before = set(root.rglob("*"))
    run = listen(bundle, "--input", str(a), "--input", str(b), "--log-features", str(log), "--log-shard-s",
                 "1.5", cwd=work, tmp=tmp, home=home)  # fmt: skip
    assert run.returncode == 0, run.stderr
    written = sorted(p for p in root.rglob("*") if p not in before and p.is_file())
    return {"inputs": [a, b], "log": log, "written": written, "run": run}


def test_the_logged_frames_are_the_offline_frames_of_the_speech_segments(bundle, logged):
    shards = [read_shard(p) for p in shard_paths(logged["log"])]
    assert len(shards) >= 3  # rotation happened
    # Segments (pieces split at shard boundaries joined again) are the utterances listen reported.
    pieces = [(s.header["streams"][str(seg["stream"])]["source"], seg, frames)
              for s in shards for seg, frames in zip(s.header["segments"], s.segments)]  # fmt: skip
    joined: list[list] = []
    for source, seg, frames in pieces:
        last = joined[-1] if joined else None
        if last and last[0] == source and last[1] + len(last[2]) == seg["start_frame"] and seg["continued"]:
            last[2] = np.concatenate([last[2], frames])
        else:
            joined.append([source, seg["start_frame"], frames])
    lines = [json.loads(line) for line in logged["run"].stdout.splitlines()]
    finals = [u for u in lines if u["final"]]
    assert len(joined) == len(finals) >= 4
    offline = {p.name: extract_file(p, bundle.spec) for p in logged["inputs"]}
    for (source, start, frames), final in zip(joined, finals):
        assert start * 0.01 == pytest.approx(final["utterance_start_s"])
        assert len(frames) * 0.01 == pytest.approx(final["utterance_s"])
        reference = offline[source.split(" ")[0]][start : start + len(frames)]
        assert frames.shape == reference.shape
        assert np.max(np.abs(frames - reference)) == 0.0  # exactly the offline extractor's frames
    # The header describes them: spec and its identity, frame period, model, times, format.
    head = shards[0].header
    assert head["format"] == FORMAT and head["format_version"] == 1 and head["normalized"] is False
    assert head["feature_spec"] == bundle.spec.to_dict() and head["spec_id"] == spec_id(bundle.spec)
    assert head["model_version"] == bundle.version and head["frame_period_s"] == bundle.spec.hop_s
    seg = head["segments"][0]
    assert seg["end_s"] == pytest.approx(seg["start_s"] + seg["frames"] * 0.01)
    assert "feature log" in logged["run"].stderr and "shards written" in logged["run"].stderr


def test_a_logging_session_leaves_no_audio_anywhere(bundle, logged):
    written = logged["written"]
    elsewhere = [str(p) for p in written if p.parent != logged["log"]]
    assert written and not elsewhere, elsewhere  # nothing in its cwd, TMPDIR or HOME
    assert [p.name for p in written] == [p.name for p in shard_paths(logged["log"])]  # no temporaries
    # Pieces of the input audio, as the bytes any writer would store them in (int16, float32 at 16 kHz and
    # at the file's own rate), looked for in every byte of every file written.
    patterns = []
    for path in logged["inputs"]:
        x, rate = load_audio(path)
        x16 = resample(x, rate, 16000)  # what openSMILE is fed
        for pcm in (x, x16):
            loud = np.flatnonzero(np.abs(pcm) > 0.1)
            for k in loud[:: max(1, len(loud) // 20)][:20]:
                piece = pcm[k : k + 16]
                patterns += [piece.tobytes(), to_pcm16(piece).tobytes(), piece.astype(np.float64).tobytes()]
    for path in written:
        assert path.suffix.lower() not in AUDIO_SUFFIXES
        with pytest.raises(soundfile.LibsndfileError):
            soundfile.info(str(path))
        data = path.read_bytes()
        assert not any(p in data for p in patterns), f"{path} holds audio samples"
        with np.load(path, allow_pickle=False) as npz:
            assert sorted(npz.files) == ["frames", "header", "offsets"]
            frames, offsets, header = npz["frames"], npz["offsets"], json.loads(str(npz["header"]))
        assert frames.dtype == np.float32 and frames.shape[1] == bundle.spec.dim == 25
        assert offsets.ndim == 1 and offsets[-1] == len(frames)
        numbers = [v for seg in header["segments"] for v in seg.values() if isinstance(v, (int, float))]
        assert len(numbers) < 10 * len(header["segments"]) + 1  # the header holds no sample data either


def test_a_kill_at_any_moment_loses_at_most_the_shard_being_collected(bundle, tmp_path):
    wav = write_wav(tmp_path / "long.wav", talk(30.0, seed=7))
    args = ["--input", str(wav), "--log-shard-s", "1"]

    def start(folder: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [*CLI, "listen", "--model", str(bundle.path), "--fast", "--json", *args, "--log-features", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=cli_env(),
        )  # fmt: skip

    def first_shard(proc: subprocess.Popen, folder: Path, began: float) -> float | None:
        """Seconds from `began` until the first shard appeared (None if the process ended first)."""
        while proc.poll() is None:
            if folder.is_dir() and shard_paths(folder):
                return time.monotonic() - began
            time.sleep(0.01)
        return None

    began = time.monotonic()
    proc = start(tmp_path / "complete")
    startup = first_shard(proc, tmp_path / "complete", began)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    logging = time.monotonic() - began - startup  # how long shards kept coming
    reference = [read_shard(p) for p in shard_paths(tmp_path / "complete")]
    assert len(reference) >= 10
    rng = random.Random(12)
    cut_short = 0
    for k in range(8):
        folder = tmp_path / f"killed{k}"
        began = time.monotonic()
        proc = start(folder)
        if k % 4 == 0:  # any moment of the start-up
            time.sleep(rng.uniform(0.0, startup))
        elif first_shard(proc, folder, began) is not None:  # the others while shards are being written
            time.sleep(rng.uniform(0.0, 0.9) * logging)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        shards = shard_paths(folder) if folder.is_dir() else []
        # Every shard there loads and is the uninterrupted run's shard of that number: no gap, nothing torn.
        assert [p.name for p in shards] == [p.path.name for p in reference[: len(shards)]]
        for path, ref in zip(shards, reference):
            shard = read_shard(path)
            assert np.array_equal(shard.frames, ref.frames)
            assert shard.header["segments"] == ref.header["segments"]
        assert len(temporary_paths(folder) if folder.is_dir() else []) <= 1
        cut_short += 0 < len(shards) < len(reference)
    assert cut_short >= 3  # kills really landed while shards were being written
    # A restart in a folder a crash left a temporary in removes it, says so, and goes on numbering.
    folder = tmp_path / "killed0"
    folder.mkdir(exist_ok=True)
    leftover = folder / ".features-00000099.npz.tmp-12345"
    leftover.write_bytes(b"PK\x03\x04 half a shard")
    before = len(shard_paths(folder))
    proc = start(folder)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert f"removed {leftover.name}" in err.decode() and not leftover.exists()
    after = shard_paths(folder)
    assert len(after) == before + len(reference) and [read_shard(p) for p in after]


def test_a_reader_that_stops_early_ends_listen_quietly_and_the_log_whole(bundle, tmp_path):
    """`listen --json --log-features DIR | head`: the reader leaves after 10 s of updates; listen ends
    with the status of a program whose reader went away (141, as `yes | head`), no error on stderr, and
    every shard it wrote loads and is the uninterrupted run's shard of that number (the last one cut
    where the reader left)."""
    wav = write_wav(tmp_path / "long.wav", talk(30.0, seed=11))
    command = [*CLI, "listen", "--model", str(bundle.path), "--fast", "--json", "--input", str(wav),
               "--log-shard-s", "1", "--log-features"]  # fmt: skip
    complete = subprocess.run([*command, str(tmp_path / "complete")], capture_output=True, env=cli_env())
    assert complete.returncode == 0, complete.stderr.decode()
    reference = [read_shard(p) for p in shard_paths(tmp_path / "complete")]
    folder = tmp_path / "cut"
    proc = subprocess.Popen(
        [*command, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=cli_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if json.loads(line)["time_s"] >= 10.0:
            break
    proc.stdout.close()  # the reader goes away, as `head` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "error" not in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"feature log {folder}: ")  # the log says what it kept
    shards = shard_paths(folder)
    assert 0 < len(shards) < len(reference) and not temporary_paths(folder)
    for path, ref in zip(shards, reference):  # the last one: the frames collected when the reader left
        frames = read_shard(path).frames
        assert path.name == ref.path.name and np.array_equal(frames, ref.frames[: len(frames)])


def frames_of(seconds: float, seed: int) -> np.ndarray:
    from edge_emo.features import extract

    return extract(synth_speech(seconds, seed=seed), 16000, spec_for("egemaps"))


def test_the_size_cap_deletes_the_oldest_shards_first(tmp_path):
    spec = spec_for("egemaps")
    frames = frames_of(3.2, seed=3)[:300]
    log = FeatureLogger(tmp_path, spec, "v1", shard_s=0.5, max_bytes=40_000, say=lambda m: None)
    log.start_stream("test")
    for start in range(0, 3000, 300):  # ten segments of 3 s of frames, 6 shards each
        log.start_segment(start)
        for row in frames:
            log.add_frame(row)
        log.end_segment()
    log.close()
    shards = shard_paths(tmp_path)
    assert log.shards_written == 60 and log.shards_deleted == 60 - len(shards) > 0
    assert sum(p.stat().st_size for p in shards) <= 40_000
    assert [p.name for p in shards] == [f"features-{n:08d}.npz" for n in range(61 - len(shards), 61)]
    last = read_shard(shards[-1])
    assert np.array_equal(last.frames, frames[-50:])  # the newest frames survive
    assert last.header["segments"] == [
        {"stream": 0, "start_frame": 2700 + 250, "frames": 50, "continued": True, "start_s": 29.5,
         "end_s": 30.0}
    ]  # fmt: skip


def test_one_folder_holds_one_feature_set_and_one_logger(tmp_path):
    spec = spec_for("egemaps")
    log = FeatureLogger(tmp_path, spec, "v1", say=lambda m: None)
    log.start_segment(0)
    log.add_frame(frames_of(0.5, seed=1)[0])
    log.close()
    with pytest.raises(FeatureLogError, match="holds feature logs of 'egemaps'.*uses 'compare'"):
        FeatureLogger(tmp_path, spec_for("compare"), "v1", say=lambda m: None)
    # and one logger at a time: a second one would take the same shard numbers
    first = FeatureLogger(tmp_path, spec, "v1", say=lambda m: None)
    with pytest.raises(FeatureLogError, match="another edge-emo process is logging features here"):
        FeatureLogger(tmp_path, spec, "v1", say=lambda m: None)
    first.close()
    FeatureLogger(tmp_path, spec, "v1", say=lambda m: None).close()


def test_broken_or_foreign_shards_are_clear_errors(tmp_path):
    spec = spec_for("egemaps")
    log = FeatureLogger(tmp_path, spec, "v1", say=lambda m: None)
    log.start_segment(0)
    for row in frames_of(0.5, seed=2):
        log.add_frame(row)
    log.close()
    (good,) = shard_paths(tmp_path)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "pickled": None,
        "not a zip": b"RIFF....WAVEfmt ",
    }
    for name, content in cases.items():
        bad = tmp_path / f"{name}.npz"
        if content is None:
            np.savez(bad, header=np.array([{"format": FORMAT}], dtype=object), frames=np.zeros((1, 25)),
                     offsets=np.array([0, 1]))  # fmt: skip
        else:
            bad.write_bytes(content)
        with pytest.raises(FeatureLogError, match=str(bad)):
            read_shard(bad)


def test_logging_runs_without_torch(bundle, tmp_path):
    listen = ["listen", "--model", bundle.path, "--input", "sample", "--fast", "--json"]
    run = edge_emo_without_torch([*listen, "--log-features", tmp_path / "log"])
    assert run.returncode == 0, run.stderr
    assert [read_shard(p).frames.shape[1] for p in shard_paths(tmp_path / "log")] == [bundle.spec.dim]

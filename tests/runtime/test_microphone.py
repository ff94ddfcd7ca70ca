"""The real microphone path: PortAudio (sounddevice) capturing from ALSA devices that play a known recording,
no sound card or kernel module needed (the ALSA `file` plugin, see PROBES.md).

Each test writes an ALSA configuration and runs `edge-emo listen` in a subprocess with ALSA_CONFIG_PATH set
(PortAudio reads it when sounddevice is imported). These devices deliver audio much faster than real time
and then repeat their last buffer, so runs stop after the recording's length with --duration and get a queue
that holds the whole recording (--buffer) unless the test is about overflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_emo.features import resample
from tests.cli import edge_emo
from tests.fixtures import synth_speech, write_wav


def speech(rate: int = 16000) -> np.ndarray:
    x = np.concatenate(
        [np.zeros(3000), synth_speech(2.0, 16000, seed=21), np.zeros(9000), synth_speech(1.2, 16000, seed=22)]
    )
    return resample(np.concatenate([x, np.zeros(12000)]).astype(np.float32), 16000, rate)


def alsa_env(tmp_path: Path, config: str) -> dict:
    conf = tmp_path / "asound.conf"
    conf.write_text(config)
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}


def recording(tmp_path: Path, rate: int, name: str = "in") -> tuple[Path, Path, float]:
    """The same audio as a WAV (for --input) and as the raw s16le the ALSA device plays."""
    wav = write_wav(tmp_path / f"{name}.wav", speech(rate), rate)
    pcm, _ = soundfile.read(str(wav), dtype="int16")
    raw = tmp_path / f"{name}.raw"
    pcm.astype("<i2").tofile(raw)
    return wav, raw, len(pcm) / rate


def file_device(raw: Path, rate: int, output: str = "/dev/null", extra: str = "") -> str:
    return f"""
pcm.wavfile {{ type file; slave.pcm "null"; file "{output}"; infile "{raw}"; format "raw" }}
pcm.virtualmic {{ type plug; slave {{ pcm "wavfile"; format S16_LE; rate {rate}; channels 1 }} {extra} }}
pcm.!default {{ type asym; capture.pcm "virtualmic"; playback.pcm "null" }}
"""


def listen(bundle, *args: str, env: dict):
    return edge_emo("listen", "--model", str(bundle.path), "--json", *args, env=env)


def test_listening_through_portaudio_gives_the_updates_of_the_file(bundle, tmp_path):
    wav, raw, seconds = recording(tmp_path, 16000)
    env = alsa_env(tmp_path, file_device(raw, 16000))
    devices = edge_emo("devices", env=env)
    assert devices.returncode == 0 and "virtualmic" in devices.stdout, devices.stderr

    mic = listen(bundle, "--device", "virtualmic", "--duration", str(seconds), "--buffer", "30", env=env)
    assert mic.returncode == 0, mic.stderr
    from_file = listen(bundle, "--input", str(wav), "--fast", env=env)
    assert from_file.returncode == 0, from_file.stderr
    assert mic.stdout == from_file.stdout
    updates = [json.loads(line) for line in mic.stdout.splitlines()]
    assert (
        sum(u["final"] for u in updates) == 2
        and "16000 Hz" in mic.stderr
        and "0 dropped blocks" in mic.stderr
    )
    index = next(line.split()[0].strip("*") for line in devices.stdout.splitlines() if "virtualmic" in line)
    by_index = listen(bundle, "--device", index, "--duration", str(seconds), "--buffer", "30", env=env)
    assert by_index.stdout == mic.stdout


def test_a_device_that_only_offers_48_khz_is_resampled(bundle, tmp_path):
    wav, raw, seconds = recording(tmp_path, 48000)
    # plug without a usable rate converter: the device opens at its own 48 kHz only
    env = alsa_env(tmp_path, file_device(raw, 48000, extra='rate_converter "none_available"'))
    mic = listen(bundle, "--device", "virtualmic", "--duration", str(seconds), "--buffer", "30", env=env)
    assert mic.returncode == 0, mic.stderr
    assert "48000 Hz" in mic.stderr
    from_file = listen(bundle, "--input", str(wav), "--fast", env=env)
    assert mic.stdout == from_file.stdout and mic.stdout.count('"final": true') == 2


def test_input_overflow_is_counted_not_fatal(bundle, tmp_path):
    _, raw, _ = recording(tmp_path, 16000)
    env = alsa_env(tmp_path, file_device(raw, 16000))
    # The device delivers hundreds of times faster than real time; a 50 ms queue cannot keep up.
    run = listen(bundle, "--device", "virtualmic", "--duration", "60", "--buffer", "0.05", env=env)
    assert run.returncode == 0, run.stderr
    assert "warning: input overflow" in run.stderr and "Traceback" not in run.stderr
    dropped = int(run.stderr.split(" dropped blocks")[0].split()[-1])
    assert dropped > 0
    assert all(json.loads(line) for line in run.stdout.splitlines())


def test_a_device_that_fails_mid_stream_ends_with_exit_code_4(bundle, tmp_path):
    _, raw, _ = recording(tmp_path, 16000)
    # The file plugin also writes what it captures to `file`; here a pipe into a reader that quits after
    # about a second of audio. The next write fails and ALSA reports an error to PortAudio, whose stream
    # stops as when a USB microphone is pulled out.
    env = alsa_env(tmp_path, file_device(raw, 16000, output="|head -c 32000 > /dev/null"))
    run = listen(bundle, "--device", "virtualmic", "--buffer", "30", env=env)
    assert run.returncode == 4, run.stderr
    assert "failed while streaming" in run.stderr and "Traceback" not in run.stderr
    updates = [json.loads(line) for line in run.stdout.splitlines()]
    assert updates and all(isinstance(u["time_s"], float) for u in updates)


@pytest.mark.skipif(
    bool(list(Path("/dev/snd").glob("pcmC*c"))), reason="this machine has a real capture device"
)
@pytest.mark.parametrize("command", ["listen", "devices"])
def test_no_input_device_is_exit_code_3_with_a_hint(bundle, command):
    # ALSA's own configuration and no sound card: PortAudio finds no input device.
    env = {"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    args = ["--model", str(bundle.path)] if command == "listen" else []
    run = edge_emo(command, *args, env=env)
    assert run.returncode == 3, run.stderr
    assert "no audio input device" in run.stderr and "Traceback" not in run.stderr
    if command == "listen":
        assert "--input sample" in run.stderr


def test_an_unknown_device_name_is_exit_code_3(bundle, tmp_path):
    _, raw, _ = recording(tmp_path, 16000)
    env = alsa_env(tmp_path, file_device(raw, 16000))
    run = listen(bundle, "--device", "no such microphone", env=env)
    assert run.returncode == 3 and "is not an input device" in run.stderr and "virtualmic" in run.stderr

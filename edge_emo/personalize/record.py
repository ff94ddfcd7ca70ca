"""The wearer's labeled clips: audio under clips/NNNN.wav next to a labels.csv in the corpus layout
(path,speaker,corpus,emotion,happiness,...,fear; see edge_emo/data/labels.py).

Every file is replaced, never edited: the clip and then the new labels.csv are written completely to a
temporary file in the same folder, flushed to disk and renamed over the old one. A kill at any moment leaves
the old labels.csv or the old one plus one whole new row (at worst also a clip file no row names yet, which
the next clip number skips).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from edge_emo.data.labels import LABEL_COLUMNS, read_labels
from edge_emo.emotions import EMOTIONS, MAX_INTENSITY
from edge_emo.features import resample, to_mono
from edge_emo.files import leftover_pid, private_folder, replace_file

CLIP_RATE = 16000
CLIPS_DIR = "clips"
# Clips `record` takes: at least as long as the shortest microphone recording (--seconds 0.5), so that the
# speech check and the feature extractor have frames to work on (a 0.05 s clip made every later
# `personalize` fail); at most a minute: a clip is one utterance with one label, and a 2-hour file took
# 2.3 GB to import and as much to personalize on.
MIN_CLIP_S, MAX_CLIP_S = 0.5, 60.0
CORPUS = "wearer"
# Short names accepted in the quick form ("happy=2 sad=1"); a unique prefix of an emotion works too.
ALIASES = {
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "mad": "anger",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
}
LABEL_HELP = (
    "emotion=intensity pairs (0..3), e.g. 'happy=2 surprise=1'; unnamed emotions are 0; 'neutral': all 0"
)


def parse_labels(text: str) -> tuple[float, ...]:
    """The six intensities (EMOTIONS order) of the quick form: 'happy=2 sad=1', commas or spaces between
    pairs, 'neutral' for all zeros. ValueError names the bad part."""
    values = dict.fromkeys(EMOTIONS, 0.0)
    parts = [p for p in re.split(r"[\s,]+", text.strip().lower()) if p]
    if not parts:
        raise ValueError(f"no labels given ({LABEL_HELP})")
    if parts == ["neutral"]:
        return tuple(values.values())
    for part in parts:
        name, sep, number = part.partition("=")
        if not sep:
            raise ValueError(f"label {part!r} is not emotion=intensity ({LABEL_HELP})")
        emotion = ALIASES.get(name) or _by_prefix(name)
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"label {part!r}: {number!r} is not a number") from None
        if not 0.0 <= value <= MAX_INTENSITY:
            raise ValueError(f"label {part!r}: intensity must be within 0..{MAX_INTENSITY:g}")
        values[emotion] = value
    return tuple(values.values())


def _by_prefix(name: str) -> str:
    matches = [e for e in EMOTIONS if name and e.startswith(name)]
    if len(matches) != 1:
        raise ValueError(f"unknown emotion {name!r} (known: {', '.join(EMOTIONS)}, or {', '.join(ALIASES)})")
    return matches[0]


def check_clip_length(seconds: float, source: str) -> None:
    """ValueError unless a clip of `seconds` is within MIN_CLIP_S..MAX_CLIP_S."""
    if not MIN_CLIP_S <= seconds <= MAX_CLIP_S:
        raise ValueError(
            f"{source}: {seconds:.2f} s of audio; a clip is {MIN_CLIP_S:g} to {MAX_CLIP_S:g} s (one utterance)"
        )


def recover_labels(labels_csv: Path) -> list[str]:
    """Remove what a killed `record` left beside `labels_csv` (one line each): temporary files of processes
    that no longer run, and clips/NNNN.wav saved after labels.csv was last written, numbered after every
    clip it names and named by no row (saved, then killed before its row was added)."""
    said = []
    clips = labels_csv.parent / CLIPS_DIR
    for folder, pattern in ((labels_csv.parent, f".{labels_csv.name}.tmp-*"), (clips, ".*.wav.tmp-*")):
        for tmp in folder.glob(pattern) if folder.is_dir() else []:
            if leftover_pid(tmp.name, ".tmp-") is not None and tmp.is_file():
                tmp.unlink()
                said.append(f"removed {tmp}, a file left unfinished by an interrupted `edge-emo record`")
    if not labels_csv.is_file() or not clips.is_dir():
        return said
    named = {r.path.resolve() for r in read_labels(labels_csv)}
    numbers = [int(p.stem) for p in named if p.parent == clips.resolve() and re.fullmatch(r"\d{4,}", p.stem)]
    if not numbers:
        return said
    written = labels_csv.stat().st_mtime_ns
    for clip in sorted(clips.glob("*.wav")):
        # Saved after labels.csv was last written, numbered after its clips and named by no row: a clip
        # record saved and was killed before adding. A clip whose row the wearer deleted is older: kept.
        if (
            re.fullmatch(r"\d{4,}", clip.stem)
            and int(clip.stem) > max(numbers)
            and clip.resolve() not in named
            and clip.stat().st_mtime_ns > written
        ):
            clip.unlink()
            said.append(f"removed {clip}, a clip an interrupted `edge-emo record` saved without its labels")
    return said


def next_clip_path(labels_csv: Path) -> Path:
    """clips/NNNN.wav after the highest number already in the clips folder."""
    folder = labels_csv.parent / CLIPS_DIR
    numbers = [int(p.stem) for p in folder.glob("*.wav") if p.stem.isdigit()] if folder.is_dir() else []
    return folder / f"{max(numbers, default=0) + 1:04d}.wav"


def save_clip(labels_csv: Path, signal: np.ndarray, rate: int) -> Path:
    """The clip as 16 kHz 16-bit WAV at the next clips/NNNN.wav; returns its path."""
    path = next_clip_path(labels_csv)
    private_folder(path.parent)
    x = np.clip(resample(to_mono(signal), rate, CLIP_RATE), -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, x, CLIP_RATE, format="WAV", subtype="PCM_16")
    replace_file(path, buffer.getvalue())
    return path


def append_label(labels_csv: Path, clip: Path, speaker: str, intensities: tuple[float, ...]) -> None:
    """Add one row for `clip` to labels.csv (created with the corpus header if missing), atomically. An
    existing labels.csv must parse (read_labels) first: a broken file is reported, not extended."""
    labels_csv = Path(labels_csv)
    if len(intensities) != len(EMOTIONS):
        raise ValueError(f"expected {len(EMOTIONS)} intensities, got {len(intensities)}")
    if labels_csv.exists():
        read_labels(labels_csv)
        old = labels_csv.read_text(encoding="utf-8")
        header = next(csv.reader([old.splitlines()[0]]))
    else:
        old, header = "", list(LABEL_COLUMNS)
    strongest = int(np.argmax(intensities))
    row = {
        "path": clip.relative_to(labels_csv.parent).as_posix(),
        "speaker": speaker,
        "corpus": CORPUS,
        "emotion": EMOTIONS[strongest] if intensities[strongest] > 0 else "neutral",
        **{e: f"{v:g}" for e, v in zip(EMOTIONS, intensities)},
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, restval="", extrasaction="ignore", lineterminator="\n")
    if not old:
        writer.writeheader()
    elif not old.endswith("\n"):
        out.write("\n")
    writer.writerow(row)
    replace_file(labels_csv, (old + out.getvalue()).encode("utf-8"))


def capture(
    device: str | None, seconds: float, started: Callable[[], None] = lambda: None
) -> tuple[np.ndarray, int]:
    """`seconds` of microphone audio (int16) through the runtime's PortAudio input, and its rate. `started`
    runs once the device is open and recording (to say "speak now" only when it is true)."""
    from edge_emo.runtime.audio_input import Microphone, find_device

    with Microphone(find_device(device), CLIP_RATE, buffer_s=seconds + 1.0, max_s=seconds) as mic:
        started()
        blocks = list(mic.blocks())
        if mic.dropped_blocks:
            raise OSError(f"{mic.describe()}: {mic.dropped_blocks} audio blocks were lost; record again")
        return (np.concatenate(blocks) if blocks else np.zeros(0, np.int16)), mic.rate


def record(
    labels: Path,
    input_files: list[Path] | None,
    given: tuple[float, ...] | None,
    seconds: float,
    device: str | None,
    speaker: str,
    ask: Callable[[str], tuple[float, ...]],
    recover: Callable[[], None],
    say: Callable[[str], None],
    tell: Callable[[str], None],
) -> None:
    """`edge-emo record`: clips from `input_files` (or `seconds` from the microphone), each checked for
    speech before anything is written, labeled with `given` or what `ask(clip name)` returns, added to
    `labels`, each told in one line. `recover` finishes what a killed run left, once labels.csv was read.
    A missing microphone raises AudioSourceError."""
    from edge_emo.features import audio_seconds, load_audio
    from edge_emo.features.speech import Vad, speech_seconds
    from edge_emo.options import check_range

    check_range("--seconds", seconds, 0.5, MAX_CLIP_S)
    if labels.exists():
        read_labels(labels)  # a broken labels.csv is reported before anything is recorded
    recover()
    if input_files:
        for p in input_files:  # from the header, before decoding: a 2-hour file is refused at once
            check_clip_length(audio_seconds(p), str(p))
        clips = [(str(p), *load_audio(p)) for p in input_files]
    else:
        clips = [
            ("microphone", *capture(device, seconds, lambda: say(f"recording {seconds:g} s: speak now")))
        ]
    vad = Vad()
    for name, signal, rate in clips:  # every clip is checked before anything is written
        if speech_seconds(signal, rate, vad) < vad.min_speech_s:
            raise ValueError(f"{name}: no speech (voice-activity detector: {vad.describe}); nothing recorded")
    for name, signal, rate in clips:
        intensities = given if given is not None else ask(name)
        clip = save_clip(labels, signal, rate)
        append_label(labels, clip, speaker, intensities)
        named = " ".join(f"{e}={v:g}" for e, v in zip(EMOTIONS, intensities) if v) or "neutral"
        tell(f"added {clip.relative_to(labels.parent)} ({named}) to {labels}")

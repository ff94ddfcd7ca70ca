"""The labeled and unlabeled corpus files: `labels.csv` and `manifest.csv`.

labels.csv:   path,speaker,corpus,emotion,happiness,sadness,anger,surprise,disgust,fear (extra columns allowed)
manifest.csv: path,speaker[,...]  (unlabeled audio)
Paths are relative to the folder holding the file.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from edge_emo.emotions import EMOTIONS, MAX_INTENSITY

# Models record the emotion order; the runtime reads it from the model bundle, never from here.
LABEL_COLUMNS: tuple[str, ...] = ("path", "speaker", "corpus", "emotion", *EMOTIONS)


class CorpusError(ValueError):
    """A corpus file is missing, malformed or refers to something that is not there."""


@dataclass(frozen=True)
class ClipRecord:
    path: Path  # absolute
    speaker: str
    intensities: tuple[float, ...] | None  # None for unlabeled clips


def read_labels(csv_path: Path) -> list[ClipRecord]:
    """Read a labels.csv, checking every row; errors name the file and line."""
    return _read(csv_path, labeled=True)


def read_manifest(csv_path: Path) -> list[ClipRecord]:
    """Read an unlabeled manifest.csv (path, speaker)."""
    return _read(csv_path, labeled=False)


def _read(csv_path: Path, labeled: bool) -> list[ClipRecord]:
    csv_path = Path(csv_path)
    required = ("path", "speaker", *EMOTIONS) if labeled else ("path", "speaker")
    try:
        handle = csv_path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise CorpusError(f"{csv_path}: cannot read ({e.strerror})") from e
    try:
        with handle:
            records = _rows(csv_path, handle, labeled, required)
    except (csv.Error, UnicodeDecodeError) as e:  # NUL bytes, a field over the csv limit, not UTF-8
        raise CorpusError(f"{csv_path}: not a readable CSV file ({e})") from None
    if not records:
        raise CorpusError(f"{csv_path}: no rows")
    return records


def _rows(csv_path: Path, handle, labeled: bool, required: tuple[str, ...]) -> list[ClipRecord]:
    """The rows of an open corpus file, each checked; a clip named twice is an error naming both lines."""
    reader = csv.DictReader(handle)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusError(f"{csv_path}:1: missing column(s) {', '.join(missing)}")
    records = []
    seen: dict[str, int] = {}  # clip -> the line naming it: one clip counted twice would score itself
    for line, row in enumerate(reader, start=2):
        if None in row or any(row[c] is None for c in required):
            raise CorpusError(f"{csv_path}:{line}: wrong number of fields")
        if not row["path"].strip():
            raise CorpusError(f"{csv_path}:{line}: empty path")
        clip = os.path.normpath(row["path"].strip())
        if clip in seen:
            raise CorpusError(
                f"{csv_path}:{line}: clip {row['path']!r:.80} is already on line {seen[clip]} (each clip once)"
            )
        seen[clip] = line
        intensities = None
        if labeled:
            intensities = tuple(_intensity(csv_path, line, e, row[e]) for e in EMOTIONS)
        records.append(ClipRecord(csv_path.parent / row["path"], row["speaker"].strip(), intensities))
    return records


def _intensity(csv_path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(f"{csv_path}:{line}: {column}={text!r:.40} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_INTENSITY:
        raise CorpusError(f"{csv_path}:{line}: {column}={text!r:.40} is outside 0..{MAX_INTENSITY:g}")
    return value

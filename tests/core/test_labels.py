from pathlib import Path

import pytest

from edge_emo.data.labels import CorpusError, read_labels, read_manifest
from edge_emo.emotions import EMOTIONS

HEADER = "path,speaker,corpus,emotion," + ",".join(EMOTIONS)


def write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_rows_with_absolute_paths(tmp_path):
    p = write(tmp_path, f"{HEADER}\na/x.flac,s1,c,happy,2,0,0,0,0,0\nb/y.flac,s2,c,sad,0,3,0,0,0,0.5\n")
    rows = read_labels(p)
    assert [r.speaker for r in rows] == ["s1", "s2"]
    assert rows[0].path == tmp_path / "a/x.flac"
    assert rows[1].intensities == (0, 3, 0, 0, 0, 0.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a.flac,s1,c,happy,2,0,0,0,0,zero\n", "labels.csv:2: fear='zero' is not a number"),
        (
            "a.flac,s1,c,happy,2,0,0,0,0,0\nb.flac,s1,c,happy,4,0,0,0,0,0\n",
            "labels.csv:3: happiness='4' is outside 0..3",
        ),
        ("a.flac,s1,c,happy,2,0,0,0,0,nan\n", "labels.csv:2: fear='nan' is outside"),
        ("a.flac,s1,c,happy,2,0,0\n", "labels.csv:2: wrong number of fields"),
        (",s1,c,happy,2,0,0,0,0,0\n", "labels.csv:2: empty path"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, body, message):
    with pytest.raises(CorpusError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_labels(write(tmp_path, f"{HEADER}\n{body}"))


def test_missing_column(tmp_path):
    p = write(tmp_path, "path,speaker,happiness\na.flac,s,1\n")
    with pytest.raises(CorpusError, match=r"labels\.csv:1: missing column\(s\) sadness, anger"):
        read_labels(p)


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="no rows"):
        read_labels(write(tmp_path, HEADER + "\n"))
    with pytest.raises(CorpusError, match="cannot read"):
        read_labels(tmp_path / "nope.csv")


def test_manifest_needs_no_labels(tmp_path):
    rows = read_manifest(
        write(tmp_path, "path,speaker,corpus,duration_s\nu.flac,spk,libri,1.0\n", "manifest.csv")
    )
    assert rows[0].intensities is None and rows[0].speaker == "spk"

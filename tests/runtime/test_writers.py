"""Output records, formula escaping, the lock, atomic publication and resume points."""

import csv
import io
import json

import numpy as np
import pytest

from mlbert.errors import OutputLocked, UsageError
from mlbert.io.lock import OutputLock
from mlbert.io.records import ChunkResult, RecordFormatter, escape_formula
from mlbert.io.writers import OutputFile
from mlbert.io.formats import output_format, output_gzip

LABELS = ["anger", "joy", "sadness"]
THRESHOLDS = np.array([0.5, 0.3, 0.9], dtype=np.float32)


def _result():
    return ChunkResult(
        row_numbers=[1, 2, 3],
        ids=[("a",), ("b",), ("c",)],
        errors=[None, "empty text", None],
        probabilities=np.array([[0.6, 0.35, 0.1], [0.2, 0.1, 0.95]], dtype=np.float32),
    )


def test_jsonl_records_labels_scores_and_errors():
    text = RecordFormatter("jsonl", ["id"], LABELS, THRESHOLDS).format_chunk(_result())
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0] == {"id": "a", "labels": ["anger", "joy"], "scores": {"anger": 0.6, "joy": 0.35, "sadness": 0.1}}
    assert records[1] == {"id": "b", "row": 2, "error": "empty text"}
    assert records[2]["labels"] == ["sadness"]
    assert list(records[2]["scores"]) == LABELS  # model order without --top-k


def test_top_k_and_no_scores():
    text = RecordFormatter("jsonl", ["id"], LABELS, THRESHOLDS, top_k=1).format_chunk(_result())
    first = json.loads(text.splitlines()[0])
    assert first["labels"] == ["anger"]
    assert first["scores"] == {"anger": 0.6}
    text = RecordFormatter("jsonl", ["id"], LABELS, THRESHOLDS, scores=False).format_chunk(_result())
    assert json.loads(text.splitlines()[0]) == {"id": "a", "labels": ["anger", "joy"]}


def test_csv_layout_and_formula_escaping():
    formatter = RecordFormatter("csv", ["id"], LABELS, THRESHOLDS)
    result = _result()
    result.ids = [("=cmd|' /C calc'!A0",), ("+1",), ("@SUM(1)",)]
    text = formatter.header() + formatter.format_chunk(result)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "row", "labels", "anger", "joy", "sadness", "error"]
    assert rows[1] == ["'=cmd|' /C calc'!A0", "1", "anger;joy", "0.6", "0.35", "0.1", ""]
    assert rows[2] == ["'+1", "2", "", "", "", "", "empty text"]
    assert rows[3][0] == "'@SUM(1)"


def test_tsv_and_score_column_that_collides_with_an_id():
    formatter = RecordFormatter("tsv", ["joy"], LABELS, THRESHOLDS)
    assert formatter.header().rstrip("\n").split("\t") == ["joy", "row", "labels", "anger", "score_joy", "sadness", "error"]


@pytest.mark.parametrize("cell,escaped", [("=1+1", "'=1+1"), ("-2", "'-2"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("ok", "ok"), ("", "")])
def test_escape_formula(cell, escaped):
    assert escape_formula(cell) == escaped


def test_output_format_from_name():
    assert output_format("-") == "jsonl"
    assert output_format("a.CSV") == "csv"
    assert output_format("a.tsv") == "tsv"
    assert output_format("a.json") == "jsonl"
    assert output_format("a.txt", "csv") == "csv"
    assert output_format("a.jsonl.gz") == "jsonl" and output_format("a.csv.gz") == "csv"
    assert output_gzip("a.jsonl.gz", "jsonl") and not output_gzip("a.jsonl", "jsonl")
    with pytest.raises(UsageError, match="compresses itself"):
        output_gzip("a.parquet.gz", "parquet")


def test_lock_is_exclusive_and_released(tmp_path):
    target = str(tmp_path / "out.jsonl")
    with OutputLock(target):
        with pytest.raises(OutputLocked, match="another mlb-batch run") as info:
            OutputLock(target).acquire()
        assert info.value.exit_code == 4
    with OutputLock(target):  # released: can be taken again
        pass


def test_publish_is_atomic_and_close_keeps_previous_output(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    out = OutputFile(str(target), {"k": 1})
    out.open("")
    out.write("new 1\n")
    out.checkpoint(1, 0)
    assert target.read_text() == "previous\n"
    out.close()  # a failure: the output is untouched, partial + progress stay for --resume
    assert target.read_text() == "previous\n"
    assert (tmp_path / "out.jsonl.partial").read_text() == "new 1\n"
    assert json.loads((tmp_path / "out.jsonl.progress").read_text())["rows_done"] == 1

    out = OutputFile(str(target), {"k": 1})
    point = out.read_resume_point()
    assert (point.rows_done, point.bytes_done) == (1, len("new 1\n"))
    with open(tmp_path / "out.jsonl.partial", "a") as f:
        f.write("torn half-writ")  # written after the last checkpoint, then killed
    out.open("", point)
    out.write("new 2\n")
    out.publish()
    assert target.read_text() == "new 1\nnew 2\n"
    assert not (tmp_path / "out.jsonl.partial").exists()
    assert not (tmp_path / "out.jsonl.progress").exists()


def test_resume_point_refused_when_fingerprint_differs(tmp_path):
    target = tmp_path / "out.jsonl"
    out = OutputFile(str(target), {"input": {"size": 1}})
    out.open("")
    out.write("x\n")
    out.checkpoint(1, 0)
    out.close()
    other = OutputFile(str(target), {"input": {"size": 2}})
    assert other.read_resume_point() is None
    assert "different input" in other.resume_note
    assert OutputFile(str(tmp_path / "none.jsonl"), {}).read_resume_point() is None

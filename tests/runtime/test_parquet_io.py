"""Parquet in and out: the records of a Parquet output, its metadata, resume, inboxes of parts,
bad bytes in Parquet strings, and the one-line error when pyarrow is missing.

pyarrow is optional (the ``[parquet]`` extra): the runtime-only environment lacks it, so the
tests that need it skip there; the missing-pyarrow test simulates the import failure and runs
in both environments.
"""

import json
import signal
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli
from test_batch_cli import KILLER, LABELS, TEXTS, _python, _write, records, run


def _pyarrow():
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    return pa, pq


def write_parquet(path, texts, ids=None, row_group_size=10):
    pa, pq = _pyarrow()
    ids = ids if ids is not None else [f"r{i}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=row_group_size)
    return path


def test_parquet_output_holds_the_jsonl_records_with_types_and_metadata(tmp_path, golden_model):
    pa, pq = _pyarrow()
    texts = [TEXTS[i % len(TEXTS)] for i in range(50)] + ["  "]
    source = write_parquet(tmp_path / "in.parquet", texts, ids=list(range(100, 151)))
    out = tmp_path / "labels.parquet"
    result = run([str(source), "-o", str(out), "--chunk-size", "16"], golden_model)
    assert result.exit_code == 3, result.output  # the blank row
    as_jsonl = records(run([str(source), "--chunk-size", "16"], golden_model).stdout)

    parquet = pq.ParquetFile(out)
    table = parquet.read()
    assert table.num_rows == len(texts) == len(as_jsonl)
    assert table.schema.field("id").type == pa.int64()  # ids keep the input's type
    assert table.schema.field("labels").type == pa.list_(pa.string())
    assert [table.schema.field(n).type for n in LABELS] == [pa.float32()] * len(LABELS)
    meta = json.loads(parquet.schema_arrow.metadata[b"mlb"])
    assert meta["label_names"] == LABELS and len(meta["thresholds"]) == len(LABELS)
    for row, rec in zip(table.to_pylist(), as_jsonl):
        assert row["id"] == rec["id"]
        if "error" in rec:
            assert (row["labels"], row["error"], row["row"]) == (None, rec["error"], rec["row"])
            assert all(row[n] is None for n in LABELS)
            continue
        assert row["labels"] == rec["labels"] and row["error"] is None
        assert {n: round(row[n], 4) for n in LABELS} == pytest.approx(rec["scores"], abs=1e-4)


def test_parquet_output_from_csv_top_k_and_no_scores(tmp_path, golden_model):
    pa, pq = _pyarrow()
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "top.parquet"
    assert run([str(source), "-o", str(out), "--top-k", "1"], golden_model).exit_code == 0
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string()  # ids from a text format are text
    for row in table.to_pylist():
        shown = [n for n in LABELS if row[n] is not None]
        assert len(shown) == 1 and len(row["labels"]) <= 1
    bare = tmp_path / "bare.pq"
    assert run([str(source), "-o", str(bare), "--no-scores", "--output-format", "parquet"], golden_model).exit_code == 0
    assert pq.read_table(bare).column_names == ["id", "row", "labels", "error"]
    result = run([str(source), "--output-format", "parquet"], golden_model)
    assert result.exit_code == 2 and "Parquet output needs a file" in result.stderr


def test_parquet_resume_after_sigkill_gives_identical_bytes(tmp_path, golden_model):
    _pyarrow()
    texts = [TEXTS[(i * 5) % len(TEXTS)] + (" !" * (i % 4)) for i in range(120)]
    source = write_parquet(tmp_path / "in.parquet", texts, row_group_size=33)
    reference = tmp_path / "reference.parquet"
    done = _python(["-c", KILLER, str(source), str(reference), str(golden_model), "20", "-1", "0"], tmp_path)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out.parquet"
    out.write_bytes(b"yesterday")
    killed = _python(["-c", KILLER, str(source), str(out), str(golden_model), "20", "3", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"yesterday"
    resumed = CliRunner().invoke(cli, [str(source), "-o", str(out), "-m", str(golden_model), "--chunk-size", "20",
                                       "--threads", "1", "--device", "cpu", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after row 60" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet", "reference.parquet"]


def test_a_folder_of_parquet_parts_is_an_inbox(tmp_path, golden_model):
    _, pq = _pyarrow()
    parts = tmp_path / "dataset"
    parts.mkdir()
    for i in range(3):
        write_parquet(parts / f"part-{i:05d}.snappy.parquet", TEXTS[i:i + 3], ids=[f"p{i}-{j}" for j in range(3)])
    (parts / "_SUCCESS").write_text("")
    out = tmp_path / "labels"
    result = run([str(parts), "-o", f"{out}/", "--output-format", "parquet"], golden_model)
    assert result.exit_code == 0, result.output
    assert "3 files: 3 written" in result.stderr and "_SUCCESS" in result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"part-{i:05d}.snappy.parquet{s}" for i in range(3) for s in ("", ".done")]
    assert [pq.read_table(out / f"part-{i:05d}.snappy.parquet").num_rows for i in range(3)] == [3, 3, 3]
    again = run([str(parts), "-o", f"{out}/", "--output-format", "parquet"], golden_model)
    assert "3 already done" in again.stderr


def test_parquet_strings_that_are_not_utf8_cost_one_row(tmp_path, golden_model):
    pa, pq = _pyarrow()
    raw = [t.encode() for t in TEXTS[:3]] + [b"caf\xe9 au lait"] + [t.encode() for t in TEXTS[3:]]
    binary = pa.array(raw, type=pa.binary())
    text = pa.Array.from_buffers(pa.string(), len(raw), binary.buffers())  # a writer that did not check UTF-8
    ids = pa.array([f"r{i}".encode() for i in range(len(raw))], type=pa.binary())
    pq.write_table(pa.table({"id": ids, "text": text}), tmp_path / "bad.parquet")
    result = run([str(tmp_path / "bad.parquet")], golden_model)
    assert result.exit_code == 3, result.output
    recs = records(result.stdout)
    assert len(recs) == len(raw)  # rows in == rows out
    assert recs[3] == {"id": "r3", "row": 4, "error": "bytes that are not UTF-8 (at byte 3 of 'text')"}
    assert [r["id"] for r in recs] == [f"r{i}" for i in range(len(raw))]  # binary ids decoded
    assert all("labels" in r for i, r in enumerate(recs) if i != 3)


def test_without_pyarrow_parquet_is_one_line_naming_the_extra(tmp_path, golden_model, monkeypatch):
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.ipc"):
        monkeypatch.setitem(sys.modules, name, None)  # import pyarrow now raises ImportError
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1 whatever")
    result = run([str(source)], golden_model)
    assert result.exit_code == 2 and result.stderr == "Error: reading Parquet needs pyarrow: pip install 'mlbert[parquet]'\n"
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("text\nhello\n")
    result = run([str(csv_in), "-o", str(tmp_path / "out.parquet")], golden_model)
    assert result.exit_code == 2 and result.stderr == "Error: writing Parquet needs pyarrow: pip install 'mlbert[parquet]'\n"
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out.parquet.partial").exists()


def test_write_parquet_gathers_chunks_into_row_groups(tmp_path, monkeypatch):
    pa, pq = _pyarrow()
    from mlbert.io import parquet_output
    from mlbert.io.records import ChunkResult

    monkeypatch.setattr(parquet_output, "ROW_GROUP_ROWS", 25)
    formatter = parquet_output.ParquetRecords(["id"], LABELS, np.full(4, 0.5))
    journal = tmp_path / "journal"
    with open(journal, "wb") as f:
        f.write(formatter.header())
        for start in range(0, 100, 10):
            chunk = ChunkResult(list(range(start + 1, start + 11)), [(f"r{i}",) for i in range(start, start + 10)],
                                [None] * 10, np.full((10, 4), 0.7, dtype=np.float32))
            f.write(formatter.format_chunk(chunk))
    parquet_output.write_parquet(str(journal), str(tmp_path / "out.parquet"))
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [30, 30, 30, 10]
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [f"r{i}" for i in range(100)]

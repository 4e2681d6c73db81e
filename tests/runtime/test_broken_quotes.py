"""Rows in == rows out for CSV/TSV whatever the quotes do, and the header rule of one-column files.

Before: a text starting with a quote that never closes made csv read every following line into that
field: 2,000 rows in, 3 records out, exit 0, report "ok". A headerless list of texts lost its first one
as a "header".
"""

import json

import pytest

from mlbert.errors import InputError
from mlbert.io.delimited import MAX_QUOTED_LINES
from mlbert.io.readers import open_table
from test_batch_cli import records, run


def _rows(path, **kwargs):
    with open_table(str(path), **kwargs) as table:
        return table, list(table.rows())


@pytest.mark.parametrize("separator,suffix", [(",", "csv"), ("\t", "tsv")])
def test_an_unclosed_quote_costs_its_row_only(tmp_path, golden_model, separator, suffix):
    lines = [f"id{separator}text"] + [f"{i}{separator}i am so happy today number {i}" for i in range(1, 2001)]
    lines[5] = f'5{separator}"a tweet quoting someone and never closing it'
    source = tmp_path / f"in.{suffix}"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = run([str(source), "-o", str(out), "--report-json", str(tmp_path / "report.json")], golden_model)
    assert result.exit_code == 3, result.output
    recs = records(out.read_text())
    assert len(recs) == 2000
    assert recs[4]["row"] == 5 and recs[4]["error"].startswith("broken quote: the quoted field opened on line 6 ")
    assert [r["id"] for r in recs[5:]] == [str(i) for i in range(6, 2001)]  # every row after it, as usual
    assert "2000 rows read, 2000 records written" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["rows_read"], report["records_written"], report["status"]) == (2000, 2000, "row_errors")
    assert report["error_rows_by_kind"] == {"broken_quote": 1}


def test_a_quote_open_at_the_end_of_the_file_and_one_closed_badly_later(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b'id,text\n1,"oops\n2,plain\n3,"a real\nmulti-line text"\n4,"never closed\n5,last')
    _, rows = _rows(source)
    assert [r.number for r in rows] == [1, 2, 3, 4, 5]
    assert "opened on line 2 is closed badly on line 4" in rows[0].error
    assert rows[1].values == {"id": "2", "text": "plain"}
    assert rows[2].values == {"id": "3", "text": "a real\nmulti-line text"}  # a real quoted field spans lines
    assert "opened on line 6 never closes" in rows[3].error
    assert rows[4].values == {"id": "5", "text": "last"}


def test_a_quoted_field_longer_than_any_real_text_is_broken_even_if_it_closes(tmp_path):
    body = "".join(f"{i},plain row\n" for i in range(2, MAX_QUOTED_LINES + 50))
    source = tmp_path / "in.csv"
    source.write_text(f'id,text\n1,"runs away\n{body}x,closes here"\n')
    _, rows = _rows(source)
    assert len(rows) == 1 + (MAX_QUOTED_LINES + 48) + 1
    assert f"is still open after {MAX_QUOTED_LINES:,} lines" in rows[0].error
    assert rows[1].values == {"id": "2", "text": "plain row"} and rows[-2].values["id"] == str(MAX_QUOTED_LINES + 49)
    assert rows[-1].values == {"id": "x", "text": 'closes here"'}  # the stray closing quote's line: its own row


def test_a_quote_closed_then_followed_by_text_is_read_as_csv_always_read_it(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('text\n"say "hi" to them"\n"quoted" then more\n')
    _, rows = _rows(source)
    assert [r.values["text"] for r in rows] == ['say hi" to them"', "quoted then more"]


def test_a_broken_first_row_refuses_the_file_naming_the_line(tmp_path, golden_model):
    source = tmp_path / "in.csv"
    source.write_text('"id,text\n1,hello\n2,world\n')
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    result = run([str(source), "-o", str(out)], golden_model)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {source}: line 1: broken quote: the quoted field opened on line 1 ") and result.stderr.count("\n") == 1
    assert out.read_text() == "yesterday\n"
    with pytest.raises(InputError, match="the first row decides the columns"):
        _rows(source)


def test_a_headerless_one_column_file_keeps_its_first_text(tmp_path, golden_model):
    source = tmp_path / "reviews.csv"
    source.write_text("Great product\nthis is terrible\nso happy\nno\n")
    result = run([str(source)], golden_model)
    assert result.exit_code == 0, result.output
    assert [r["row"] for r in records(result.stdout)] == [1, 2, 3, 4]  # 4 lines in, 4 records out
    assert "text column 'column_1': the only column; no header row" in result.stderr
    # A header only when the first line is a known column name, or --header says so.
    named = tmp_path / "named.csv"
    named.write_text("Comment\nGreat product\nthis is terrible\n")
    assert len(records(run([str(named)], golden_model).stdout)) == 2
    forced = run([str(source), "--header"], golden_model)
    assert len(records(forced.stdout)) == 3 and "text column 'Great product'" in forced.stderr
    assert len(records(run([str(named), "--no-header"], golden_model).stdout)) == 3


def test_several_columns_keep_the_name_rule(tmp_path):
    table, rows = _rows(_write_bytes(tmp_path / "a.csv", b"id,text\n1,hello there\n"))
    assert table.has_header and len(rows) == 1
    table, rows = _rows(_write_bytes(tmp_path / "b.csv", b"1,hello there friend\n2,no\n"))
    assert not table.has_header and len(rows) == 2


def test_blank_lines_before_the_header_lose_nothing(tmp_path):
    """Before: csv gave [] for the blank first line, the file had no columns, and every row was dropped."""
    table, rows = _rows(_write_bytes(tmp_path / "a.csv", b"\r\n\nid,text\n1,hello\n\n2,world\n"))
    assert table.columns == ["id", "text"] and [r.values["text"] for r in rows] == ["hello", "world"]


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def test_a_carriage_return_inside_an_unquoted_field_is_an_error_row_not_a_crash(tmp_path):
    _, rows = _rows(_write_bytes(tmp_path / "a.csv", b'id,text\n1,a\rb\n2,"x" \ry\n3,ok\n'))
    assert [r.number for r in rows] == [1, 2, 3] and rows[2].values == {"id": "3", "text": "ok"}
    assert rows[0].error.startswith("malformed CSV row (") and rows[1].error.startswith("malformed CSV row (")


def test_a_run_that_would_write_fewer_records_than_rows_is_not_published(tmp_path, golden_model, monkeypatch):
    """The last line of defence, checked by both engines before publishing: rows read == records written."""
    from mlbert.batch.pipeline import BatchJob

    source = tmp_path / "in.csv"
    source.write_text("id,text\n" + "".join(f"{i},i am so happy today {i}\n" for i in range(30)))
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    real = BatchJob._publish_chunk

    def losing_a_chunk(self, output, formatter, result, *args):
        if result.row_numbers[0] == 11:  # a bug that drops the second chunk
            return None
        return real(self, output, formatter, result, *args)

    monkeypatch.setattr(BatchJob, "_publish_chunk", losing_a_chunk)
    result = run([str(source), "-o", str(out), "--chunk-size", "10"], golden_model)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {source}: read 30 rows but wrote 20 records; the output is not published " \
                            "(please report this)\n"
    assert out.read_text() == "yesterday\n"

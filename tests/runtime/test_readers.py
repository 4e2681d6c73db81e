"""The streaming readers: every data row comes out, bad ones flagged, never dropped."""

import gzip
import io
import json
import sys

import pytest

from mlbert.errors import InputError, UsageError
from mlbert.io.readers import open_table


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def read_all(path, **kwargs):
    with open_table(path, **kwargs) as table:
        return table, list(table.rows())


def test_csv_with_header_bom_crlf_and_quoted_newline(tmp_path):
    data = '\ufeffid,text\r\n1,"hello, world"\r\n2,"two\r\nlines"\r\n3,"say ""hi"""\r\n'.encode()
    table, rows = read_all(write(tmp_path, "a.csv", data))
    assert table.columns == ["id", "text"] and table.has_header
    assert [r.values for r in rows] == [
        {"id": "1", "text": "hello, world"},
        {"id": "2", "text": "two\r\nlines"},
        {"id": "3", "text": 'say "hi"'},
    ]
    assert [r.number for r in rows] == [1, 2, 3]


def test_headerless_tsv_like_goemotions(tmp_path):
    data = b"My favourite food is anything I didn't have to cook myself.\t27\teebbqej\nWOW\t0,17\teeabc\n"
    table, rows = read_all(write(tmp_path, "train.tsv", data))
    assert not table.has_header
    assert table.columns == ["column_1", "column_2", "column_3"]
    assert rows[1].values == {"column_1": "WOW", "column_2": "0,17", "column_3": "eeabc"}


def test_header_can_be_forced_either_way(tmp_path):
    path = write(tmp_path, "a.tsv", b"text\tlabel\nhappy day\tjoy\n")
    assert read_all(path, header=False)[0].columns == ["column_1", "column_2"]
    assert len(read_all(path, header=False)[1]) == 2
    assert read_all(path, header=True)[0].columns == ["text", "label"]


def test_ragged_and_undecodable_rows_are_flagged_not_dropped(tmp_path):
    data = b"id,text\n1,fine\n2,too,many\n3,caf\xe9 latin-1\n4,ok\n"
    _, rows = read_all(write(tmp_path, "a.csv", data))
    assert [r.number for r in rows] == [1, 2, 3, 4]
    assert rows[0].error is None and rows[3].error is None
    assert rows[1].values is None and "expected 2 fields, found 3" in rows[1].error
    assert rows[2].values is None and "not UTF-8" in rows[2].error


def test_jsonl_malformed_line_and_non_object(tmp_path):
    data = b'{"id": 7, "text": "a"}\n{"text": broken\n\n[1, 2]\n"just text"\n'
    table, rows = read_all(write(tmp_path, "a.jsonl", data))
    assert table.columns == ["id", "text"]
    assert [r.number for r in rows] == [1, 2, 3, 4]
    assert rows[0].values == {"id": 7, "text": "a"}
    assert "malformed JSON" in rows[1].error
    assert "must be an object" in rows[2].error
    assert rows[3].values == {"text": "just text"}


def test_text_lines_keep_blank_lines_as_rows(tmp_path):
    _, rows = read_all(write(tmp_path, "a.txt", b"one\r\n\r\nthree\n"))
    assert [r.values["text"] for r in rows] == ["one", "", "three"]


@pytest.mark.parametrize("name", ["a.csv.gz", "a.csv"])
def test_gzip_by_name_or_magic(tmp_path, name):
    path = write(tmp_path, name, gzip.compress(b"text\nhello\n"))
    assert [r.values for r in read_all(path)[1]] == [{"text": "hello"}]


def test_gz_name_without_gzip_content(tmp_path):
    with pytest.raises(InputError, match=r"a.csv.gz: named .gz but is not gzip"):
        read_all(write(tmp_path, "a.csv.gz", b"text\nhello\n"))


def test_file_not_what_its_extension_says(tmp_path):
    with pytest.raises(InputError, match=r"a.jsonl: does not look like JSON lines"):
        read_all(write(tmp_path, "a.jsonl", b"id,text\n1,hi\n"))
    with pytest.raises(InputError, match=r"b.csv: is a Parquet file"):
        read_all(write(tmp_path, "b.csv", b"PAR1\x00\x00garbage"))
    with pytest.raises(InputError, match=r"c.tsv: looks binary"):
        read_all(write(tmp_path, "c.tsv", b"text\x00\x01\x02"))


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=r"nope.csv: no such file"):
        open_table(str(tmp_path / "nope.csv"))
    with pytest.raises(UsageError, match=r"--format"):
        open_table(write(tmp_path, "data.weird", b"x"))


def test_stdin_defaults(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"I'm so happy\n")))
    with open_table("-", default_format="text") as table:
        assert table.size is None
        assert [r.values for r in table.rows()] == [{"text": "I'm so happy"}]


def test_very_long_field(tmp_path):
    long_text = "word " * 100_000
    _, rows = read_all(write(tmp_path, "a.csv", f'text\n"{long_text}"\n'.encode()))
    assert rows[0].values["text"] == long_text


def test_bytes_read_tracks_progress(tmp_path):
    path = write(tmp_path, "a.csv", b"text\n" + b"hello\n" * 50_000)
    with open_table(path) as table:
        assert table.size == 5 + 6 * 50_000
        count = sum(1 for _ in table.rows())
        assert count == 50_000
        assert table.bytes_read == table.size


def test_sample_does_not_consume_rows(tmp_path):
    path = write(tmp_path, "a.tsv", b"".join(b"text %d\t%d\n" % (i, i) for i in range(100)))
    with open_table(path) as table:
        first = table.sample(10)
        assert [r.number for r in first] == list(range(1, 11))
        assert [r.number for r in table.sample(5)] == [1, 2, 3, 4, 5]
        assert [r.number for r in table.rows()] == list(range(1, 101))


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "shift_jis", "gb18030", "utf-16", "utf-16-le", "utf-32"])
def test_inputs_in_other_encodings(tmp_path, encoding):
    texts = ["caf\u00e9 cr\u00e8me", "na\u00efve \u00fcber"] if encoding in ("latin-1", "cp1252") else \
        ["cafe \u65e5\u672c\u8a9e", "\u3053\u3093\u306b\u3061\u306f, \"quoted\""]
    data = ("id\ttext\n" + "".join(f"{i}\t{t}\r\n" for i, t in enumerate(texts))).encode(encoding)
    table, rows = read_all(write(tmp_path, "a.tsv", data), encoding=encoding)
    assert table.columns == ["id", "text"] and [r.values["text"] for r in rows] == texts
    jsonl = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode(encoding)
    assert [r.values["text"] for r in read_all(write(tmp_path, "a.jsonl", jsonl), encoding=encoding)[1]] == texts


def test_bad_bytes_in_another_encoding(tmp_path):
    cp1252 = write(tmp_path, "a.txt", b"fine\nbad \x81 byte\nfine too\n")  # 0x81 is not a cp1252 character
    rows = read_all(cp1252, encoding="cp1252")[1]
    assert [r.error for r in rows] == [None, "bytes that are not cp1252 (at byte 4 of the line)", None]
    utf16 = write(tmp_path, "b.txt", "one\ntwo\n".encode("utf-16") + b"\x00\xd8")  # a lone surrogate half
    with pytest.raises(InputError, match=r"b.txt: is not valid utf-16 after line 2"):
        read_all(utf16, encoding="utf-16")
    with pytest.raises(UsageError, match="--encoding 'klingon': unknown encoding"):
        read_all(cp1252, encoding="klingon")

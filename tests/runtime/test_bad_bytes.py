"""No row lost to a few bad bytes: NUL, control characters and invalid UTF-8 inside rows cost at
most that row (an error record) or are cleaned from its text; only a mostly binary file is refused."""

import json

import pytest

from mlbert.errors import InputError
from mlbert.io.readers import BINARY_SHARE, binary_share, open_table
from mlbert.texts import clean_text
from test_batch_cli import TEXTS, records, run


def test_binary_share_counts_nul_control_and_non_utf8_bytes():
    assert binary_share(b"") == 0.0
    assert binary_share("plain text, caf\u00e9 \U0001F600\ttab\r\n".encode()) == 0.0
    assert binary_share(b"ab\x00d") == 0.25
    assert binary_share(b"a\xff\xfeb") == 0.5
    assert binary_share(bytes(range(256)) * 4) > BINARY_SHARE


def test_a_few_nul_and_control_bytes_near_the_start_do_not_refuse_the_file(tmp_path, golden_model):
    # Before: any NUL in the first 8 KiB refused the whole file.
    lines = ["id,text", "a,i am so happy today !", "b,i am so\x00 happy\x07 today !\x00", "c,no",
             "d,\x00\x01\x02", "e,what a terrible awful day"]
    path = tmp_path / "in.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    result = run([str(path)], golden_model)
    assert result.exit_code == 3, result.output  # d has nothing left once cleaned
    recs = records(result.stdout)
    assert [r["id"] for r in recs] == ["a", "b", "c", "d", "e"]  # rows in == rows out
    assert recs[1]["scores"] == recs[0]["scores"]  # cleaned: scored as the clean text
    assert recs[3]["error"] == "empty text"


def test_json_lines_with_raw_control_characters_are_classified(tmp_path, golden_model):
    good = json.dumps({"id": 1, "text": "i am so happy today !"})
    raw = '{"id": 2, "text": "i am so\x0b happy\x1b today !"}'  # an exporter that did not escape them
    path = tmp_path / "in.jsonl"
    path.write_bytes(f"{good}\n{raw}\n{{broken\n".encode())
    recs = records(run([str(path)], golden_model).stdout)
    assert len(recs) == 3
    assert recs[1]["scores"] == recs[0]["scores"]  # before: "malformed JSON (Invalid control character)"
    assert recs[2]["error"].startswith("malformed JSON")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "txt"])
def test_rows_in_equal_rows_out_with_bad_bytes_in_every_format(tmp_path, golden_model, fmt):
    bad = [b"caf\xe9 au lait", b"nul\x00inside", b"bell\x07and\x1bescape", b"\xff\xfe\xfd"]
    texts = [t.encode() for t in TEXTS] + bad
    if fmt == "jsonl":
        body = b"".join(b'{"text": "' + t + b'"}\n' for t in texts)
    elif fmt in ("csv", "tsv"):
        body = b"text\n" + b"".join(b'"' + t + b'"\n' for t in texts)
    else:
        body = b"".join(t + b"\n" for t in texts)
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(body)
    result = run([str(path), "--format", fmt], golden_model)
    assert result.exit_code == 3, result.output
    recs = records(result.stdout)
    assert len(recs) == len(texts)
    by_text = dict(zip(texts, recs))
    assert "not UTF-8" in by_text[b"caf\xe9 au lait"]["error"] and "not UTF-8" in by_text[b"\xff\xfe\xfd"]["error"]
    assert "labels" in by_text[b"nul\x00inside"] and "labels" in by_text[b"bell\x07and\x1bescape"]


def test_mostly_binary_and_utf16_files_are_still_refused(tmp_path):
    png = tmp_path / "image.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"image.csv: looks binary \(\d+% of its first"):
        open_table(str(png))
    utf16 = tmp_path / "excel.tsv"
    utf16.write_bytes("id\ttext\n1\thello\n".encode("utf-16"))
    with pytest.raises(InputError, match="is UTF-16 text; convert it to UTF-8"):
        open_table(str(utf16))


def test_clean_text_drops_only_control_characters():
    assert clean_text("a\x00b\x07c\x1bd\x7fe\x85f") == "abcdef"
    assert clean_text("tab\tand\nnewline\r ok") == "tab\tand\nnewline\r ok"
    assert clean_text("caf\u00e9 \U0001F600") == "caf\u00e9 \U0001F600"


def test_encoding_option_reads_what_is_not_utf8(tmp_path, golden_model):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,text\n1,i am so happy today ! caf\u00e9\n".encode("latin-1"))
    utf8 = tmp_path / "utf8.csv"
    utf8.write_bytes("id,text\n1,i am so happy today ! caf\u00e9\n".encode("utf-8"))
    assert "not UTF-8" in records(run([str(latin1)], golden_model).stdout)[0]["error"]  # without --encoding
    read = run([str(latin1), "--encoding", "latin-1"], golden_model)
    assert read.exit_code == 0 and read.stdout == run([str(utf8)], golden_model).stdout
    utf16 = tmp_path / "excel.tsv"
    utf16.write_bytes("id\ttext\n1\ti am so happy today ! caf\u00e9\n".encode("utf-16"))
    refused = run([str(utf16)], golden_model)
    assert refused.exit_code == 1 and "--encoding utf-16" in refused.stderr
    assert run([str(utf16), "--encoding", "utf-16"], golden_model).stdout == read.stdout
    unknown = run([str(latin1), "--encoding", "latin-9000"], golden_model)
    assert unknown.exit_code == 2 and "unknown encoding" in unknown.stderr

"""Rows in == rows out, as a property: random CSV, TSV and JSON lines files full of what real exports hold
(stray and unclosed quotes, embedded newlines, separators, bad bytes, NUL, blank lines, BOMs, CRLF) go
through mlb-batch, and for every file the run either exits 0/3 with exactly one record per data row, in
order (each classified record keeps its row's id, each error record names its row), or refuses the file
(exit 1/2, one line) with the previous output untouched. Never exit 0 with fewer records.

hypothesis is not a dependency of the runtime tests, so the files come from a seeded generator: the same
cases on every run, and ``MLB_PROPERTY_SEED`` / ``MLB_PROPERTY_CASES`` explore others.

What the generator keeps to, and why (docs/BATCH.md, "Broken quotes"): a text never starts with a quote,
a separator or a line break, and a stray quote is followed by a letter. Under the CSV rules a quote
followed by a separator or a line end closes a quoted field, so a stray quote that meets one a few lines
later would make those lines one valid field: no reader can tell that from a real multi-line text.
"""

import csv
import io
import json
import os
import random

import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli

SEED = int(os.environ.get("MLB_PROPERTY_SEED", "20261205"))
CASES = int(os.environ.get("MLB_PROPERTY_CASES", "40"))  # per format
WORDS = ("happy sad so what a day great terrible love hate win lost wow oh no yes cafe thank you me we "
         "day night it is was not very glad angry".split())
YESTERDAY = b"yesterday's records\n"


def _text(rng: random.Random, separator: str) -> str:
    """A text as a person writes it: words, and sometimes separators, quotes, line breaks, emoji."""
    parts = [rng.choice(WORDS).capitalize()]
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.08:
            parts.append(separator)
        elif roll < 0.14:
            parts.append('"' + rng.choice(WORDS) + '"')
        elif roll < 0.20:
            parts.append(rng.choice(["\n", "\r\n", "\n\n"]))
        elif roll < 0.24:
            parts.append(rng.choice(["\U0001F600", "\u00e9t\u00e9", "\u4f60\u597d", "\t"]))
        else:
            parts.append(" " + rng.choice(WORDS))
    return "".join(parts)


def _raw_cell(rng: random.Random) -> bytes:
    """A cell written without quoting, as broken exports do: stray quotes, bad bytes, control bytes."""
    word = rng.choice(WORDS).encode()
    kind = rng.choice(["unclosed", "stray", "closed_then_text", "latin1", "nul", "controls"])
    if kind == "unclosed":  # "a tweet that quotes someone and never closes
        return b'"' + word + b" " + rng.choice(WORDS).encode()
    if kind == "stray":
        return word + b' said "' + rng.choice(WORDS).encode()
    if kind == "closed_then_text":
        return b'"' + word + b'" ' + rng.choice(WORDS).encode()
    if kind == "latin1":
        return word + b" caf\xe9"
    if kind == "nul":
        return word + b"\x00" + word
    return word + b"\x07\x1b" + word


def _delimited(rng: random.Random, separator: str):
    """(file bytes, expected ids or None per data row, --id-column arguments)."""
    layout = rng.choice(["id_text", "one_column", "one_column_header"])
    end = rng.choice(["\n", "\r\n"]).encode()
    lines, ids = [], []
    if layout == "id_text":
        lines.append(f"id{separator}text".encode())
    elif layout == "one_column_header":
        lines.append(b"text")
    for number in range(1, rng.randint(0, 30) + 1):
        if rng.random() < 0.12:
            lines.append(b"")  # a blank line is no data row
        row_id = f"r{number}"
        if rng.random() < 0.25:
            cell = _raw_cell(rng)
            lines.append((row_id + separator).encode() + cell if layout == "id_text" else cell)
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=separator, lineterminator="\r\n")  # quotes cells with CR or LF
            writer.writerow([row_id, _text(rng, separator)] if layout == "id_text" else [_text(rng, separator)])
            lines.append(buffer.getvalue()[:-2].encode())
        ids.append(row_id if layout == "id_text" else None)
    data = end.join(lines) + (end if rng.random() < 0.8 else b"")
    if rng.random() < 0.2:
        data = b"\xef\xbb\xbf" + data
    return data, ids, (["--id-column", "id"] if layout == "id_text" else [])


def _jsonl(rng: random.Random):
    lines, ids = [], []
    for number in range(1, rng.randint(0, 30) + 1):
        if rng.random() < 0.12:
            lines.append(rng.choice([b"", b"   ", b"\r"]))  # blank lines are no data rows
        row_id = f"r{number}"
        roll = rng.random()
        if roll < 0.08:
            lines.append(b'{"id": "' + row_id.encode() + b'", "text": "unterminated')
        elif roll < 0.14:
            lines.append(b'{"id": "' + row_id.encode() + b'", "text": "caf\xe9"}')
        elif roll < 0.18:
            lines.append(rng.choice([b"[1, 2]", b'"just a text"', b"42", b"{broken"]))
            row_id = None  # an error record, or a bare string's record (a text without an id)
        else:
            lines.append(json.dumps({"id": row_id, "text": _text(rng, ",")}, ensure_ascii=rng.random() < 0.5).encode())
        ids.append(row_id)
    data = b"\n".join(lines) + (b"\n" if rng.random() < 0.8 else b"")
    if rng.random() < 0.2:
        data = b"\xef\xbb\xbf" + data
    return data, ids, ["--id-column", "id"]


def _check(case: str, result, out, ids) -> None:
    if result.exit_code in (1, 2):  # a refusal: one line, yesterday's output untouched
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, (case, result.stderr)
        assert out.read_bytes() == YESTERDAY, case
        return
    assert result.exit_code in (0, 3), (case, result.exit_code, result.stderr)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(ids), (case, len(records), len(ids), result.stderr)
    errors = 0
    for number, (record, row_id) in enumerate(zip(records, ids), 1):
        if "error" in record:
            errors += 1
            assert record["row"] == number, (case, number, record)
        elif row_id is not None:
            assert record["id"] == row_id, (case, number, record)
    assert (result.exit_code == 3) == (errors > 0), (case, result.exit_code, errors)
    assert f"{len(ids)} rows read, {len(ids)} records written" in result.stderr, case


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_every_random_file_gives_one_record_per_row_or_is_refused(tmp_path, golden_model, fmt):
    rng = random.Random(f"{SEED}-{fmt}")
    runner = CliRunner()
    for index in range(CASES):
        data, ids, extra = _jsonl(rng) if fmt == "jsonl" else _delimited(rng, "," if fmt == "csv" else "\t")
        source = tmp_path / f"case{index}.{fmt}"
        source.write_bytes(data)
        out = tmp_path / "out.jsonl"
        out.write_bytes(YESTERDAY)
        result = runner.invoke(cli, [str(source), "-o", str(out), "-m", str(golden_model), "--device", "cpu",
                                     "--threads", "1", *extra], catch_exceptions=False)
        _check(f"{fmt} case {index} (seed {SEED}): {data[:300]!r}", result, out, ids)

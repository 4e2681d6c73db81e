"""mlb-batch with many inputs: folder / glob / several files -> one output each, done files skipped."""

import csv
import gzip
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli
from mlbert.errors import UsageError
from mlbert.batch.inbox import DONE_SUFFIX, expand_inputs, output_name, plan
from mlbert.io.lock import OutputLock

TEXTS = ["i am so happy today !", "what a terrible awful day", "wow , i love this", "no"]


def run(args, model, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["-m", str(model)], input=input, catch_exceptions=False)


def records(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_csv(path: Path, texts):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([f"a{i}", t] for i, t in enumerate(texts))


@pytest.fixture
def inbox(tmp_path):
    """Three readable inputs (one with bad rows), plus a file that is not an input."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    write_csv(folder / "a.csv", TEXTS)
    lines = [json.dumps({"id": f"b{i}", "text": t}) for i, t in enumerate(TEXTS)]
    lines.insert(2, "{not json")
    lines.append(json.dumps({"id": "b-empty", "text": "  "}))
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "c.txt.gz").write_bytes(gzip.compress(("\n".join(TEXTS) + "\n").encode()))
    (folder / "notes.md").write_text("not an input\n")
    (folder / ".hidden.csv").write_text("id,text\n1,hi\n")
    return folder


def test_folder_gives_one_output_per_input_equal_to_single_runs(inbox, tmp_path, golden_model):
    out = tmp_path / "out"
    result = run([inbox, "-o", f"{out}/"], golden_model)
    assert result.exit_code == 3, result.stderr  # b.jsonl has two bad rows
    assert "3 files: 3 written" in result.stderr and "ignored 1 file(s)" in result.stderr and "notes.md" in result.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == [
        "a.jsonl", "a.jsonl.done", "b.jsonl", "b.jsonl.done", "c.jsonl", "c.jsonl.done",
    ]
    # Rows in == rows out, and each file is exactly what a one-file run writes.
    assert [len(records(out / n)) for n in ("a.jsonl", "b.jsonl", "c.jsonl")] == [4, 6, 4]
    for name, source in (("a.jsonl", "a.csv"), ("b.jsonl", "b.jsonl"), ("c.jsonl", "c.txt.gz")):
        single = tmp_path / f"single-{name}"
        assert run([inbox / source, "-o", single], golden_model).exit_code in (0, 3)
        assert (out / name).read_bytes() == single.read_bytes()
    bad = [r for r in records(out / "b.jsonl") if "error" in r]
    assert [(r["row"], r["error"]) for r in bad][1] == (6, "empty text") and bad[0]["row"] == 3
    marker = json.loads((out / ("b.jsonl" + DONE_SUFFIX)).read_text())
    assert marker["rows"] == 6 and marker["errors"] == 2


def test_second_run_skips_done_files_and_redoes_changed_ones(inbox, tmp_path, golden_model):
    out = tmp_path / "out"
    assert run([inbox, "-o", f"{out}/"], golden_model).exit_code == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}

    again = run([inbox, "-o", f"{out}/"], golden_model)
    assert again.exit_code == 0, again.stderr  # nothing done this time, so no row errors
    assert "0 written, 3 already done" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == stamps

    # A changed input, an output deleted by hand, and other thresholds each force a redo.
    write_csv(inbox / "a.csv", TEXTS[:2])
    (out / "c.jsonl").unlink()
    third = run([inbox, "-o", f"{out}/"], golden_model)
    assert third.exit_code == 0 and "2 written, 1 already done" in third.stderr  # b (bad rows) skipped
    assert len(records(out / "a.jsonl")) == 2 and len(records(out / "c.jsonl")) == 4
    assert (out / "b.jsonl").stat().st_mtime_ns == stamps["b.jsonl"]
    assert "3 written" in run([inbox, "-o", f"{out}/", "--threshold", "0.3"], golden_model).stderr
    assert "3 written" in run([inbox, "-o", f"{out}/", "--threshold", "0.3", "--redo"], golden_model).stderr


def test_glob_and_files_with_csv_output(inbox, tmp_path, golden_model):
    out = tmp_path / "labels"
    result = run([str(inbox / "*.csv"), inbox / "c.txt.gz", "-o", f"{out}/", "--output-format", "csv"], golden_model)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.csv")) == ["a.csv", "c.csv"]
    assert (out / "a.csv").read_text().splitlines()[0].startswith("id,row,labels,")


def test_a_bad_file_is_reported_and_the_others_still_run(inbox, tmp_path, golden_model):
    (inbox / "d.csv.gz").write_text("id,text\n1,not gzip at all\n")
    out = tmp_path / "out"
    result = run([inbox, "-o", f"{out}/"], golden_model)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "d.csv.gz" in errors[0] and "Traceback" not in result.output
    assert "3 written" in result.stderr and "1 failed" in result.stderr
    assert not (out / "d.jsonl").exists() and not (out / "d.jsonl.done").exists()
    # Next run: only the failed file is tried again.
    again = run([inbox, "-o", f"{out}/"], golden_model)
    assert again.exit_code == 1 and "0 written, 3 already done, 1 failed" in again.stderr


def test_a_locked_output_is_exit_4_and_the_others_are_written(inbox, tmp_path, golden_model):
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(str(out / "b.jsonl")):
        result = run([inbox, "-o", f"{out}/"], golden_model)
    assert result.exit_code == 4 and "another mlb-batch run" in result.stderr
    assert (out / "a.jsonl").exists() and (out / "c.jsonl").exists() and not (out / "b.jsonl").exists()
    assert run([inbox, "-o", f"{out}/"], golden_model).exit_code == 3  # b now, with its bad rows


def test_one_input_to_a_folder_and_usage_errors(inbox, tmp_path, golden_model):
    out = tmp_path / "one"
    assert run([inbox / "a.csv", "-o", f"{out}/"], golden_model).exit_code == 0
    assert (out / "a.jsonl").exists() and (out / "a.jsonl.done").exists()

    result = run([inbox, "-o", tmp_path / "x.jsonl"], golden_model)
    assert result.exit_code == 2 and "need an output folder" in result.stderr
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "a.tsv").write_text("id\ttext\n1\thi\n")
    result = run([inbox / "a.csv", tmp_path / "dup" / "a.tsv", "-o", f"{tmp_path}/o2/"], golden_model)
    assert result.exit_code == 2 and "would both write" in result.stderr
    result = run(["-", "-o", f"{tmp_path}/o3/"], golden_model, input="hello\n")
    assert result.exit_code == 2 and "stdin" in result.stderr
    # Nothing to do is not an error a cron job should page anyone for (exit 0), but it is said.
    result = run([str(tmp_path / "nothing-*.csv"), "-o", f"{tmp_path}/o4/"], golden_model)
    assert result.exit_code == 0 and "no file matches" in result.stderr
    assert "mlb-batch: nothing to do: no input file" in result.stderr


def test_output_names_and_expansion(inbox, tmp_path):
    assert output_name("/x/tweets.csv.gz", "jsonl") == "tweets.jsonl"
    assert output_name("day.2024-01-01.tsv", "csv") == "day.2024-01-01.csv"
    assert output_name("texts.txt", "tsv") == "texts.tsv"
    assert output_name("noext", "jsonl") == "noext.jsonl"
    notes = []
    files = expand_inputs([str(inbox), str(inbox / "a.csv")], notes)
    assert [os.path.basename(f) for f in files] == ["a.csv", "b.jsonl", "c.txt.gz"]  # a.csv once
    assert notes and "notes.md" in notes[0]
    with pytest.raises(UsageError, match="overwrite an input"):
        plan([str(inbox / "b.jsonl")], f"{inbox}/")
    assert not plan([str(inbox / "a.csv")], str(tmp_path / "a.jsonl")).inbox

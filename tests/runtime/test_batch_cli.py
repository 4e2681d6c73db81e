"""mlb-batch end to end with the golden model: formats, rows in == rows out, cron safety.

Scores are checked against the PyTorch reference stored with the golden model; the CLI
writes them rounded to 4 decimals, hence a tolerance half a unit above the runtime's.
"""

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mlbert
from conftest import damaged_model_files
from mlbert.batch.cli import cli
from mlbert.batch.job import BatchOptions, parse_thresholds
from mlbert.batch.pipeline import BatchJob
from mlbert.errors import UsageError
from mlbert.io.records import SCORE_DECIMALS

TEXTS = [
    "i am so happy today !",
    "what a terrible awful day",
    "@user thank you, you made my day",
    "he was not very glad that day . she was scared and afraid",
    "no",
    "yes yes yes what a great win",
]
LABELS = ["anger", "joy", "sadness", "surprise"]


def run(args, model=None, input=None, env=None):
    runner = CliRunner()
    full = list(args) + (["-m", str(model)] if model else [])
    return runner.invoke(cli, full, input=input, env=env, catch_exceptions=False)


def records(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_scores(recs, texts, expected, tolerance=1e-4):
    assert len(recs) == len(texts)
    for rec, text in zip(recs, texts):
        got = np.array(list(rec["scores"].values()))
        np.testing.assert_allclose(got, expected[text], atol=tolerance + 0.5 * 10 ** -SCORE_DECIMALS, rtol=0)


# ---- formats --------------------------------------------------------------------------


def _write(path: Path, fmt: str, texts, gz=False):
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "text"])
        w.writerows([[f"r{i}", t] for i, t in enumerate(texts)])
        data = buf.getvalue()
    elif fmt == "tsv":
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "text"])
        w.writerows([[f"r{i}", t] for i, t in enumerate(texts)])
        data = buf.getvalue()
    elif fmt in ("jsonl", "ndjson"):
        data = "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    else:
        data = "".join(t + "\n" for t in texts)
    raw = data.encode("utf-8")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_parquet_input_gives_the_records_of_the_same_rows_as_csv(tmp_path, golden_model):
    """Row group by row group, with ids and the text column detected as in any other format."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    texts = TEXTS * 7
    table = pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": texts})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=10)
    parquet = run([str(tmp_path / "in.parquet"), "--chunk-size", "16"], golden_model)
    as_csv = run([str(_write(tmp_path / "in.csv", "csv", texts)), "--chunk-size", "16"], golden_model)
    assert parquet.exit_code == 0, parquet.output
    assert parquet.stdout == as_csv.stdout and len(records(parquet.stdout)) == len(texts)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    result = run([str(tmp_path / "bad.parquet")], golden_model)
    assert result.exit_code == 1 and "bad.parquet: cannot read Parquet" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "ndjson", "txt"])
@pytest.mark.parametrize("gz", [False, True])
def test_every_format_and_gzip_matches_pytorch(tmp_path, golden_model, golden, expected, fmt, gz):
    """Every golden text (emoji, mentions, URLs, quotes, long) through each input format:
    PyTorch's probabilities and labels at the model's thresholds, ids kept, rows in order."""
    texts = [row["text"] for row in golden["rows"]]
    path = _write(tmp_path / (f"in.{fmt}" + (".gz" if gz else "")), fmt, texts, gz)
    result = run([str(path)], golden_model)
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    check_scores(recs, texts, expected)
    assert [sorted(r["labels"]) for r in recs] == [sorted(row["labels"]) for row in golden["rows"]]
    if fmt == "txt":
        assert [r["row"] for r in recs] == list(range(1, len(texts) + 1))
    else:
        assert [r["id"] for r in recs] == [f"r{i}" for i in range(len(texts))]
    assert f"{len(texts)} rows, 0 errors" in result.stderr and "CPUExecutionProvider" in result.stderr


def test_stdin_plain_text_and_stdout(golden_model, golden, expected):
    texts = [row["text"] for row in golden["rows"]]
    result = run(["-"], golden_model, input="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    check_scores(recs, texts, expected)
    assert [sorted(r["labels"]) for r in recs] == [sorted(row["labels"]) for row in golden["rows"]]


def test_stdin_with_format_and_model_from_env(golden_model, expected):
    data = "".join(json.dumps({"text": t, "ID": i}) + "\n" for i, t in enumerate(TEXTS))
    result = run(["-", "--format", "jsonl"], input=data, env={"MLB_MODEL": str(golden_model)})
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [r["ID"] for r in recs] == list(range(len(TEXTS)))  # JSON ids pass through as numbers
    check_scores(recs, TEXTS, expected)


def test_order_kept_across_chunks_and_batches(tmp_path, golden_model, expected):
    texts = [TEXTS[i % len(TEXTS)] for i in range(500)]
    path = _write(tmp_path / "in.csv", "csv", texts)
    result = run([str(path), "--chunk-size", "37", "--token-budget", "128"], golden_model)
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [r["id"] for r in recs] == [f"r{i}" for i in range(500)]
    check_scores(recs, texts, expected)


def test_id_columns_repeatable_and_text_column(tmp_path, golden_model, expected):
    path = tmp_path / "in.csv"
    path.write_text("user,post,body\nu1,p1,i am so happy today !\nu2,p2,no\n")
    result = run([str(path), "--id-column", "user", "--id-column", "post"], golden_model)
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [(r["user"], r["post"]) for r in recs] == [("u1", "p1"), ("u2", "p2")]
    check_scores(recs, [TEXTS[0], "no"], expected)


def test_unknown_text_column_lists_the_columns(tmp_path, golden_model):
    path = tmp_path / "in.csv"
    path.write_text("a,b\nx,y\n")
    result = run([str(path)], golden_model)
    assert result.exit_code == 2
    assert "columns are: a, b" in result.stderr and "--text-column" in result.stderr
    result = run([str(path), "--text-column", "nope"], golden_model)
    assert result.exit_code == 2 and "no text column 'nope'; the columns are: a, b" in result.stderr


def test_headerless_tsv_with_text_column_like_goemotions(tmp_path, golden_model, expected):
    path = tmp_path / "g.tsv"
    path.write_text("".join(f"{t}\t27\tid{i}\n" for i, t in enumerate(TEXTS)))
    result = run([str(path), "--text-column", "column_1", "--id-column", "column_3"], golden_model)
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [r["column_3"] for r in recs] == [f"id{i}" for i in range(len(TEXTS))]
    check_scores(recs, TEXTS, expected)


# ---- bad rows: rows in == rows out ----------------------------------------------------


def test_each_kind_of_bad_row_gets_an_error_record(tmp_path, golden_model):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(
        b"id,text\n"
        b"1,i am so happy today !\n"
        b"2,\n"  # empty text
        b"3,one,too,many\n"  # ragged
        b"4,caf\xe9 latin-1 bytes\n"  # not UTF-8
        b"5,   \n"  # whitespace only
        b"6,no\n"
    )
    result = run([str(csv_path)], golden_model)
    assert result.exit_code == 3, result.output
    recs = records(result.stdout)
    assert [r["id"] if "labels" in r else r["row"] for r in recs] == ["1", 2, 3, 4, 5, "6"]
    assert recs[1]["error"] == "empty text"
    assert "expected 2 fields" in recs[2]["error"]
    assert "UTF-8" in recs[3]["error"]
    assert "6 rows, 4 errors" in result.stderr

    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "yes"}\n{"text": \n{"body": "no text key"}\n{"text": null}\n{"text": ["a"]}\n[1]\n{"text": "no"}\n')
    result = run([str(jsonl)], golden_model)
    assert result.exit_code == 3
    recs = records(result.stdout)
    assert len(recs) == 7
    assert [r["row"] for r in recs] == list(range(1, 8))
    assert "malformed JSON" in recs[1]["error"]
    assert recs[2]["error"] == "no 'text' field"
    assert "null" in recs[3]["error"] and "not text" in recs[4]["error"]
    assert "object" in recs[5]["error"]
    assert "labels" in recs[0] and "labels" in recs[6]


def test_bom_crlf_and_quoted_newlines(tmp_path, golden_model, expected):
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeffid,text\r\n1,i am so happy today !\r\n2,\"what a terrible\nawful day\"\r\n3,no\r\n".encode("utf-8")
    )
    result = run([str(path)], golden_model)
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [r["id"] for r in recs] == ["1", "2", "3"]  # no BOM in the first column name
    check_scores([recs[0], recs[2]], [TEXTS[0], "no"], expected)
    np.testing.assert_allclose(list(recs[1]["scores"].values()), expected[TEXTS[1]], atol=1e-4)  # newline ~ space


def test_empty_input_gives_empty_output(tmp_path, golden_model):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    out = tmp_path / "out.csv"
    result = run([str(empty), "-o", str(out)], golden_model)
    assert result.exit_code == 0, result.output
    assert out.read_text() == "row,labels,anger,joy,sadness,surprise,error\n"
    assert "0 rows, 0 errors" in result.stderr


def test_very_long_text(tmp_path, golden_model):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": "love " * 200_000}) + "\n" + json.dumps({"text": "no"}) + "\n")
    result = run([str(path)], golden_model)
    assert result.exit_code == 0, result.output
    assert len(records(result.stdout)) == 2


def test_file_that_is_not_what_its_extension_says(tmp_path, golden_model):
    path = tmp_path / "data.jsonl"
    path.write_text("id,text\n1,hello\n")
    result = run([str(path)], golden_model)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "data.jsonl" in result.stderr and "--format" in result.stderr
    assert "Traceback" not in result.output
    tsv = tmp_path / "really.csv"
    tsv.write_text("id\ttext\n1\thello\n")
    result = run([str(tsv)], golden_model)
    assert result.exit_code == 2 and "looks like TSV" in result.stderr and "--format tsv" in result.stderr
    assert run([str(tsv), "--format", "tsv"], golden_model).exit_code == 0
    gz = tmp_path / "fake.csv.gz"
    gz.write_text("id,text\n1,hello\n")
    result = run([str(gz)], golden_model)
    assert result.exit_code == 1 and "not gzip" in result.stderr
    result = run([str(tmp_path / "missing.csv")], golden_model)
    assert result.exit_code == 1 and "no such file" in result.stderr


# ---- thresholds, top-k, CSV output ------------------------------------------------------


def test_thresholds_and_top_k(tmp_path, golden_model, expected):
    path = _write(tmp_path / "in.jsonl", "jsonl", TEXTS)
    names = LABELS
    result = run([str(path), "--threshold", "0"], golden_model)
    assert all(sorted(r["labels"]) == sorted(names) for r in records(result.stdout))
    result = run([str(path), "-t", "1", "-t", "joy=0"], golden_model)
    assert all(r["labels"] == ["joy"] for r in records(result.stdout))
    result = run([str(path), "--threshold", "0", "--top-k", "2"], golden_model)
    for rec, text in zip(records(result.stdout), TEXTS):
        best = [names[i] for i in np.argsort(-expected[text])[:2]]
        assert rec["labels"] == best and list(rec["scores"]) == best
    result = run([str(path), "--no-scores"], golden_model)
    assert all(set(r) == {"id", "labels"} for r in records(result.stdout))
    model_thresholds = json.loads(run([str(path)], golden_model).stdout.splitlines()[0])
    assert set(model_thresholds) == {"id", "labels", "scores"}
    result = run([str(path), "-t", "nolabel=0.3"], golden_model)
    assert result.exit_code == 2 and "no label 'nolabel'" in result.stderr
    result = run([str(path), "-t", "1.5"], golden_model)
    assert result.exit_code == 2


def test_parse_thresholds():
    t = parse_thresholds(["0.4", "b=0.1,c=0.9"], ["a", "b", "c"], [0.5, 0.5, 0.5])
    assert np.allclose(t, [0.4, 0.1, 0.9])
    with pytest.raises(UsageError):
        parse_thresholds(["x"], ["a"], [0.5])


def test_csv_output_file_escapes_formulas(tmp_path, golden_model):
    path = tmp_path / "in.csv"
    path.write_text("id,text\n=HYPERLINK(1),i am so happy today !\n@x,no\n")
    out = tmp_path / "out.csv"
    result = run([str(path), "-o", str(out)], golden_model)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["'=HYPERLINK(1)", "'@x"]
    assert set(rows[0]) == {"id", "row", "labels", "anger", "joy", "sadness", "surprise", "error"}
    assert result.stdout == ""


# ---- cron safety ----------------------------------------------------------------------


def test_lock_held_exits_with_its_own_code(tmp_path, golden_model):
    from mlbert.io.lock import OutputLock

    path = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    with OutputLock(str(out)):
        result = run([str(path), "-o", str(out)], golden_model)
    assert result.exit_code == 4
    assert "another mlb-batch run" in result.stderr
    assert out.read_text() == "yesterday\n"
    assert run([str(path), "-o", str(out)], golden_model).exit_code == 0


def test_failure_mid_run_keeps_previous_output(tmp_path, golden_model):
    texts = [TEXTS[i % len(TEXTS)] for i in range(100)]
    path = _write(tmp_path / "in.csv", "csv", texts)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    job = BatchJob(BatchOptions(input=str(path), output=str(out), model=str(golden_model), chunk_size=10, device="cpu"))
    job.prepare()

    def boom(chunk_index):
        if chunk_index == 3:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        job.run(after_chunk=boom)
    assert out.read_text() == "yesterday\n"
    assert len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 30


def test_bad_model_fails_before_output_is_touched(tmp_path, golden_model):
    path = _write(tmp_path / "in.csv", "csv", TEXTS)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    result = run([str(path), "-o", str(out), "-m", str(bad)])
    assert result.exit_code == 1 and "bad.onnx" in result.stderr
    assert out.read_text() == "yesterday\n"
    assert not (tmp_path / "out.jsonl.partial").exists()


@pytest.mark.parametrize("kind", ["not-onnx", "truncated", "headerless", "checksum", "missing", "folder"])
def test_bad_model_files_are_one_line_and_exit_1(tmp_path, golden_model, kind):
    model = damaged_model_files(golden_model, tmp_path / "models")[kind]
    path = _write(tmp_path / "in.csv", "csv", TEXTS)
    result = run([str(path), "-o", str(tmp_path / "out.jsonl"), "-m", str(model)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {model}: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == "" and not (tmp_path / "out.jsonl").exists()


def test_device_cuda_fails_clearly_here(tmp_path, golden_model):
    path = _write(tmp_path / "in.csv", "csv", TEXTS)
    result = run([str(path), "--device", "cuda"], golden_model)
    if result.exit_code == 0:
        pytest.skip("this machine has a working CUDA provider")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --device cuda") and result.stderr.count("\n") == 1
    assert result.stdout == ""


# Runs a job and SIGKILLs itself after chunk argv[5] (never with -1); argv: input output model chunk_size at resume.
KILLER = """
import os, signal, sys
from mlbert.batch.job import BatchOptions
from mlbert.batch.pipeline import BatchJob
from mlbert.io.writers import OutputFile
job = BatchJob(BatchOptions(input=sys.argv[1], output=sys.argv[2], model=sys.argv[3], chunk_size=int(sys.argv[4]),
                            device="cpu", threads=1, resume=sys.argv[6] == "1"))
job.prepare()
def hook(i):
    if i == int(sys.argv[5]):
        with open(OutputFile(sys.argv[2]).partial_path, "ab") as f:
            f.write(b'{"torn": ')   # a record half-written after the last checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
job.run(after_chunk=hook)
"""


def _python(args, cwd, **kw):
    """This interpreter in a child process, run from ``cwd`` (a test folder): ``python -c`` and
    ``python -m`` put the working folder first on sys.path, and the repository's own mlbert/
    folder must not shadow the installed package."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kw)


def test_resume_after_sigkill_gives_identical_bytes(tmp_path, golden_model):
    texts = [TEXTS[(i * 7) % len(TEXTS)] + (" !" * (i % 5)) for i in range(300)]
    source = _write(tmp_path / "in.csv", "csv", texts)
    source.write_text(source.read_text().replace("\nr7,", "\nr7,\"\"\nr7b,", 1))  # an error row too
    reference = tmp_path / "reference.jsonl"
    done = _python(["-c", KILLER, str(source), str(reference), str(golden_model), "25", "-1", "0"], tmp_path)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    killed = _python(["-c", KILLER, str(source), str(out), str(golden_model), "25", "4", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL
    assert out.read_text() == "yesterday\n"
    progress = json.loads((tmp_path / "out.jsonl.progress").read_text())
    assert progress["rows_done"] == 100

    resumed = CliRunner().invoke(
        cli, [str(source), "-o", str(out), "-m", str(golden_model), "--chunk-size", "25", "--threads", "1",
               "--device", "cpu", "--resume"], catch_exceptions=False,
    )
    assert resumed.exit_code == 3, resumed.output  # the empty row
    assert "resuming after row 100" in resumed.stderr and "(resumed after row 100)" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "out.jsonl.partial").exists() and not (tmp_path / "out.jsonl.progress").exists()


def test_resume_with_changed_settings_starts_over(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS * 10)
    out = tmp_path / "out.jsonl"
    killed = _python(["-c", KILLER, str(source), str(out), str(golden_model), "10", "2", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL
    result = run([str(source), "-o", str(out), "--chunk-size", "20", "--threads", "1", "--device", "cpu", "--resume"],
                 golden_model)
    assert result.exit_code == 0
    assert "the earlier run used a different execution (chunk_size); starting over" in result.stderr
    assert len(out.read_text().splitlines()) == 60


def test_sigterm_stops_cleanly_and_keeps_previous_output(tmp_path, golden_model):
    texts = [TEXTS[i % len(TEXTS)] for i in range(200_000)]
    source = _write(tmp_path / "in.txt", "txt", texts)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlbert.batch", str(source), "-o", str(out), "-m", str(golden_model), "--chunk-size", "500",
         "--device", "cpu"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while not (tmp_path / "out.jsonl.progress").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert out.read_text() == "yesterday\n"


def test_stdin_resume_is_a_usage_error(golden_model):
    result = run(["-", "-o", "x.jsonl", "--resume"], golden_model, input="hi\n")
    assert result.exit_code == 2 and "stdin" in result.stderr


# ---- packaging ------------------------------------------------------------------------


def test_cli_never_imports_torch_or_transformers(tmp_path, golden_model):
    path = _write(tmp_path / "in.csv", "csv", TEXTS)
    code = (
        "import sys, mlbert.batch.cli, mlbert.batch.pipeline, mlbert.runtime.session, mlbert.io.readers, mlbert.io.writers\n"
        "try:\n"
        f"    mlbert.batch.cli.main([{str(path)!r}, '-m', {str(golden_model)!r}, '-o', {str(tmp_path / 'o.jsonl')!r}, '-q'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'optimum', 'onnx')]\n"
        "print(bad)\n"
    )
    result = _python(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == len(TEXTS)


def test_help_version_and_python_m(golden_model, tmp_path):
    result = run(["-h"])
    assert result.exit_code == 0 and "Examples (without --model or MLB_MODEL" in result.output and "Exit codes" in result.output
    assert mlbert.__version__ in run(["--version"]).output
    result = _python(["-m", "mlbert.batch", "-", "-m", str(golden_model)], tmp_path, input="i am so happy\n")
    assert result.returncode == 0, result.stderr
    assert len(records(result.stdout)) == 1
    assert "1 rows, 0 errors" in result.stderr


def _peak_rss_mib(args, cwd):
    proc = subprocess.Popen([sys.executable, "-m", "mlbert.batch", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    return usage.ru_maxrss / 1024


def test_memory_does_not_grow_with_rows(tmp_path, golden_model):
    """30x the rows, about the same resident memory: the input is streamed, never held."""
    small = _write(tmp_path / "small.txt", "txt", [TEXTS[i % len(TEXTS)] for i in range(1_000)])
    large = _write(tmp_path / "large.txt", "txt", [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(30_000)])
    common = ["-m", str(golden_model), "--device", "cpu", "--chunk-size", "1000", "-q"]
    small_rss = _peak_rss_mib([str(small), "-o", str(tmp_path / "s.jsonl"), *common], tmp_path)
    large_rss = _peak_rss_mib([str(large), "-o", str(tmp_path / "l.jsonl"), *common], tmp_path)
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 30_000
    assert large_rss < small_rss + 8, (small_rss, large_rss)  # measured: +2 MiB


def test_headerless_file_text_column_detected_and_positions_accepted(tmp_path, golden_model):
    """GoEmotions-like TSV without a header: text found from the data; ids by 1-based position."""
    path = tmp_path / "comments.tsv"
    path.write_text(
        "WOW\t0,17\teeabc\n"
        "My favourite food is anything I didn't have to cook myself.\t27\teebbqej\n"
        "I am so happy today, what a great day\t17\teexyz\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = run([str(path), "-m", str(golden_model), "-o", str(out), "--id-column", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["column_3"] for r in records] == ["eeabc", "eebbqej", "eexyz"]
    by_name = tmp_path / "by_name.jsonl"
    result = run([str(path), "-m", str(golden_model), "-o", str(by_name), "--text-column", "1", "--id-column", "3"])
    assert result.exit_code == 0, result.output
    assert by_name.read_text() == out.read_text()
    # The scores are those of the text column, not of the label ids.
    wrong = tmp_path / "wrong.jsonl"
    run([str(path), "-m", str(golden_model), "-o", str(wrong), "--text-column", "2", "--id-column", "3"])
    assert wrong.read_text() != out.read_text()


def test_streams_option_same_output_and_a_clear_refusal(tmp_path, golden_model):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS * 10) + "\n")
    common = [str(path), "--device", "cpu", "--threads", "2", "--token-budget", "64"]
    one = run(common + ["--streams", "1"], golden_model)
    two = run(common + ["--streams", "2"], golden_model)
    assert one.exit_code == two.exit_code == 0
    assert two.stdout == one.stdout and len(records(two.stdout)) == len(TEXTS) * 10
    refused = run(common + ["--streams", "3"], golden_model)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "Error: --streams 3 is more than the 2 threads it would share"

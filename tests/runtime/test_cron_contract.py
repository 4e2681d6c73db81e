"""What a nightly job relies on: every destination checked before the first row, a report for every run
that got that far, exit codes a cron job can live with (one table in docs/BATCH.md, held here), and the
text column announced.

A folder that cannot be written is made with ``chattr +i`` (immutable: refused even to root, and the
tests run as root here) or, for another user, with ``chmod 555``; where neither works the test says so.
"""

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlbert.errors import ExitCode
from mlbert.io.columns import TEXT_COLUMN_NAMES
from test_batch_cli import TEXTS, _write, records, run

ROOT = Path(__file__).resolve().parents[2]
BATCH_DOC = ROOT / "docs" / "BATCH.md"


@contextlib.contextmanager
def unwritable(folder: Path):
    """``folder`` refuses new files while the block runs."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed ({made.stderr.decode().strip()}): no folder refuses root")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# ---- point 3: every destination checked before the first row ------------------------------------


def test_an_output_folder_that_cannot_be_written_is_exit_1_before_anything(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    with unwritable(tmp_path / "locked") as folder:
        result = run([str(source), "-o", str(folder / "out.jsonl")], golden_model)
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"Error: {folder}/out.jsonl: cannot write the output: {folder} is not writable "
                             f"(Operation not permitted)\n" if os.geteuid() == 0 else result.stderr)
    assert result.stderr.count("\n") == 1 and "is not writable" in result.stderr
    inbox = run([str(source), "-o", f"{tmp_path / 'missing' / 'deeper'}/"], golden_model)
    assert inbox.exit_code == 1 and "cannot create the output folder" in inbox.stderr


def test_a_report_that_cannot_be_written_stops_the_run_before_the_output_is_touched(tmp_path, golden_model):
    """Before: the output was replaced, then the run exited 1 on the report, and the two disagreed."""
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    prom = tmp_path / "mlb.prom"
    with unwritable(tmp_path / "reports") as folder:
        result = run([str(source), "-o", str(out), "--report-json", str(folder / "run.json"),
                      "--report-prom", str(prom)], golden_model)
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {folder}/run.json: cannot write the run report")
    assert out.read_text() == "yesterday\n" and not (tmp_path / "out.jsonl.partial").exists()
    # The .prom that can be written still tells monitoring the run failed, and why.
    text = prom.read_text()
    assert 'mlb_batch_success{job="out.jsonl",' in text and re.search(r"mlb_batch_exit_code\{[^}]*\} 1\n", text)


def test_a_failed_run_writes_both_reports_with_the_error(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    with unwritable(tmp_path / "locked") as folder:
        result = run([str(source), "-o", str(folder / "out.jsonl"), "--report-json", str(tmp_path / "r.json"),
                      "--report-prom", str(tmp_path / "r.prom"), "--job", "nightly-tweets"], golden_model)
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["status"], report["exit_code"], report["job"]) == ("failed", 1, "nightly-tweets")
    assert report["error"] == result.stderr[len("Error: "):].rstrip("\n")
    assert f'mlb_batch_success{{job="nightly-tweets",input="{source}"}} 0' in (tmp_path / "r.prom").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_jobs_prom_files_can_be_told_apart(tmp_path, golden_model):
    first = _write(tmp_path / "a.csv", "csv", TEXTS)
    second = _write(tmp_path / "b.csv", "csv", TEXTS[:2])
    run([str(first), "-o", str(tmp_path / "a.jsonl"), "--report-prom", str(tmp_path / "a.prom")], golden_model)
    run([str(second), "-o", str(tmp_path / "b.jsonl"), "--report-prom", str(tmp_path / "b.prom")], golden_model)
    assert f'mlb_batch_rows{{job="a.jsonl",input="{first}"}} {len(TEXTS)}' in (tmp_path / "a.prom").read_text()
    assert f'mlb_batch_rows{{job="b.jsonl",input="{second}"}} 2' in (tmp_path / "b.prom").read_text()


def test_every_prometheus_metric_is_documented():
    from mlbert.batch.run_report import METRICS

    documented = set(re.findall(r"`mlb_batch_(\w+)`", BATCH_DOC.read_text()))
    assert set(METRICS) == documented


# ---- point 4: exit codes ------------------------------------------------------------------------


def _doc_exit_codes():
    text = BATCH_DOC.read_text()
    table = text[text.index("## Exit codes"):]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", table, re.M)}


def test_the_exit_code_table_is_the_code_and_the_help(golden_model):
    documented = _doc_exit_codes()
    assert set(documented) == {int(code) for code in ExitCode}
    assert "nothing to do" in documented[0] and "--max-errors" in documented[3]
    assert "cannot be written" in documented[1] and "closed stdin" in documented[1]
    help_text = " ".join(run(["--help"]).output.split())
    for code in documented:
        assert re.search(rf"\b{code}\b", help_text.split("Exit codes:")[1]), code


def test_nothing_to_do_is_exit_0_with_a_summary(tmp_path, golden_model):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "notes.md").write_text("not an input\n")
    for inputs in ([str(tmp_path / "inbox")], [str(tmp_path / "inbox" / "*.csv")]):
        result = run([*inputs, "-o", f"{tmp_path / 'out'}/"], golden_model)
        assert result.exit_code == 0, result.output
        assert result.stderr.rstrip().endswith(f"mlb-batch: nothing to do: no input file -> {tmp_path / 'out'}/")
    quiet = run([str(tmp_path / "inbox" / "*.csv"), "-o", f"{tmp_path / 'out'}/", "--quiet"], golden_model)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_max_errors_tolerates_error_rows_before_exit_3(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS * 3 + ["", "  "])  # 20 rows, 2 errors (10%)
    assert run([str(source)], golden_model).exit_code == 3
    assert run([str(source), "--max-errors", "2"], golden_model).exit_code == 0
    assert run([str(source), "--max-errors", "1"], golden_model).exit_code == 3
    assert run([str(source), "--max-errors", "10%"], golden_model).exit_code == 0
    assert run([str(source), "--max-errors", "9.9%"], golden_model).exit_code == 3
    bad = run([str(source), "--max-errors", "some"], golden_model)
    assert bad.exit_code == 2 and "--max-errors 'some'" in bad.stderr
    result = run([str(source), "--max-errors", "5", "--report-json", str(tmp_path / "r.json")], golden_model)
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["status"], report["exit_code"], report["error_rows"], report["max_errors"]) == ("ok", 0, 2, "5")


def test_a_closed_stdin_or_stdout_is_a_clear_error(tmp_path, golden_model):
    def closing(fd):
        return lambda: os.close(fd)

    command = [sys.executable, "-m", "mlbert.batch", "-", "-m", str(golden_model)]
    no_stdin = subprocess.run(command, cwd=tmp_path, capture_output=False, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=closing(0), timeout=120)
    assert no_stdin.returncode == 1 and no_stdin.stderr.startswith("Error: -: stdin is closed"), no_stdin.stderr
    source = _write(tmp_path / "in.txt", "txt", TEXTS)
    no_stdout = subprocess.run(command[:3] + [str(source)] + command[4:], cwd=tmp_path, stderr=subprocess.PIPE,
                               text=True, preexec_fn=closing(1), timeout=120)
    assert no_stdout.returncode == 1 and "Error: stdout is closed" in no_stdout.stderr, no_stdout.stderr


def test_the_readme_cron_example_runs_as_written(tmp_path, golden_model):
    """The crontab line of README.md (the CLI reference), with its paths pointed at a temporary folder."""
    readme = (ROOT / "README.md").read_text()
    line = next(x.strip() for x in readme.splitlines() if re.match(r"\s*0 3 \* \* \* ", x))
    command = line.split(None, 5)[5]
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "today.csv", "csv", TEXTS)
    command = command.replace("/srv/model.onnx", str(golden_model)).replace("/data/", f"{tmp_path}/data/")
    command = command.replace("mlb-batch", f"{shlex.quote(sys.executable)} -m mlbert.batch", 1)
    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr  # --quiet: nothing for cron to mail
    assert len(records((tmp_path / "data" / "labels.jsonl").read_text())) == len(TEXTS)


# ---- point 5: the text column is announced ----------------------------------------------------------


def test_the_summary_and_report_name_the_text_column_and_why(tmp_path, golden_model):
    source = tmp_path / "in.csv"
    source.write_text("id,comment,body\n1,i am so happy today !,x\n2,no,y\n")
    result = run([str(source), "--report-json", str(tmp_path / "r.json")], golden_model)
    assert result.exit_code == 0
    assert "text column 'comment': the first known text column name present; also present: body" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["text_columns"] == [{"input": str(source), "name": "comment",
                                       "chosen_by": "the first known text column name present; also present: body"}]
    given = run([str(source), "--text-column", "body"], golden_model)
    assert "text column 'body': given with --text-column" in given.stderr


def test_two_candidates_of_the_same_rank_ask_for_text_column(tmp_path, golden_model):
    source = tmp_path / "in.csv"
    source.write_text("Text,text\nhello,i am so happy\n")
    result = run([str(source)], golden_model)
    assert result.exit_code == 2
    assert "'Text' and 'text' could both be the text column" in result.stderr and "--text-column" in result.stderr
    assert run([str(source), "--text-column", "text"], golden_model).exit_code == 0


def test_the_documented_candidate_list_is_the_code_list(golden_model):
    text = BATCH_DOC.read_text()
    listed = re.search(r"known text column names, in order: (.+?)\.", text.replace("\n", " ")).group(1)
    assert tuple(re.findall(r"`([^`]+)`", listed)) == TEXT_COLUMN_NAMES
    help_text = " ".join(run(["--help"]).output.split())
    assert ", ".join(TEXT_COLUMN_NAMES) in help_text.replace("- ", "-")

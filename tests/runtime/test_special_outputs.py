"""What -o and the reports write into: never replace what is not a regular file, keep symlinks, gzip by name.

Before: the atomic rename turned a named pipe given to -o into a regular file (its reader never got a
byte), a symlink into a regular file (its target untouched), and would have done the same to
/dev/stdout or, as root, /dev/null. The FIFO and the device node here are made in a temporary folder,
never in /dev.
"""

import gzip
import json
import os
import signal
import stat
import threading

import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli
from mlbert.io.atomic import destination, write_bytes_atomic
from test_batch_cli import KILLER, TEXTS, _python, _write, records, run


def _drain(path, into):
    """Read a FIFO in a thread, as the process at its other end would."""
    def reader():
        with open(path, "rb") as f:
            into.append(f.read())
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


def test_a_named_pipe_is_written_into_not_replaced(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    got = []
    thread = _drain(fifo, got)
    result = run([str(source), "-o", str(fifo), "--report-json", str(tmp_path / "r.json")], golden_model)
    thread.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a pipe
    assert [r["id"] for r in records(got[0].decode())] == [f"r{i}" for i in range(len(TEXTS))]
    assert "labels.fifo (a named pipe: written straight into it, not replaced atomically)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "labels.fifo", "r.json"]  # no partial, no lock
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["output_mode"] == "a named pipe: written straight into it, not replaced atomically"
    refused = run([str(source), "-o", str(fifo), "--resume"], golden_model)
    assert refused.exit_code == 2 and "nothing to resume" in refused.stderr
    parquet = run([str(source), "-o", str(fifo), "--output-format", "parquet"], golden_model)
    assert parquet.exit_code == 2 and "Parquet output needs a file" in parquet.stderr


def _device_twin(path):
    """A character device like /dev/null (1, 3), made here; None where mknod is not permitted."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return None
    return path


def test_a_character_device_is_written_into_not_replaced(tmp_path, golden_model):
    device = _device_twin(tmp_path / "null")
    if device is None:
        pytest.skip("mknod of a character device needs CAP_MKNOD, which this process lacks")
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    result = run([str(source), "-o", str(device), "--report-prom", str(device)], golden_model)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(device).st_mode) and os.stat(device).st_rdev == os.makedev(1, 3)
    assert "(a character device: written straight into it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "null"]


def test_a_descriptor_path_like_dev_stdout_is_written_into(tmp_path, golden_model):
    """A link to /proc/self/fd/1 is what /dev/stdout is; the process's stdout gets the records."""
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    link = tmp_path / "stdout"
    os.symlink("/proc/self/fd/1", link)
    assert destination(str(link)).stream == "an open file descriptor"
    assert destination("/dev/stdout").stream == "an open file descriptor"
    result = _python(["-m", "mlbert.batch", str(source), "-o", str(link), "-m", str(golden_model)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(records(result.stdout)) == len(TEXTS)
    assert os.readlink(link) == "/proc/self/fd/1"


def test_a_symlink_keeps_pointing_at_its_replaced_target(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    real = tmp_path / "data" / "labels-2026-12-05.jsonl"
    real.parent.mkdir()
    real.write_text("yesterday\n")
    link = tmp_path / "labels.jsonl"
    os.symlink(real, link)
    result = run([str(source), "-o", str(link)], golden_model)
    assert result.exit_code == 0, result.output
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert len(records(real.read_text())) == len(TEXTS)
    assert f"(a symlink: its target {real} replaced atomically, the link kept)" in result.stderr
    # The report too: its link stays, its target is replaced whole.
    report_target = tmp_path / "data" / "report.json"
    os.symlink(report_target, tmp_path / "report.json")
    write_bytes_atomic(str(tmp_path / "report.json"), b"{}\n")
    assert os.path.islink(tmp_path / "report.json") and report_target.read_bytes() == b"{}\n"
    dangling = tmp_path / "new.jsonl"
    os.symlink(tmp_path / "data" / "new-target.jsonl", dangling)  # a link to a file not made yet
    assert run([str(source), "-o", str(dangling)], golden_model).exit_code == 0
    assert os.path.islink(dangling) and (tmp_path / "data" / "new-target.jsonl").is_file()


@pytest.mark.parametrize("name", ["labels.jsonl.gz", "labels.csv.gz", "labels.tsv.gz"])
def test_gzip_output_by_name(tmp_path, golden_model, name):
    source = _write(tmp_path / "in.csv", "csv", TEXTS * 3)
    plain_name = name[:-3]
    assert run([str(source), "-o", str(tmp_path / plain_name), "--chunk-size", "5"], golden_model).exit_code == 0
    result = run([str(source), "-o", str(tmp_path / name), "--chunk-size", "5"], golden_model)
    assert result.exit_code == 0, result.output
    compressed = (tmp_path / name).read_bytes()
    assert compressed[:2] == b"\x1f\x8b" and gzip.decompress(compressed) == (tmp_path / plain_name).read_bytes()
    refused = run([str(source), "-o", str(tmp_path / "x.parquet.gz")], golden_model)
    assert refused.exit_code == 2 and "compresses itself" in refused.stderr


def test_an_empty_input_gives_a_valid_empty_gzip_file(tmp_path, golden_model):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert run([str(empty), "-o", str(tmp_path / "out.jsonl.gz")], golden_model).exit_code == 0
    assert gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes()) == b""


def test_a_killed_gzip_run_resumes_to_the_same_bytes(tmp_path, golden_model):
    """Each chunk is one gzip member with no timestamp, so checkpoints fall on member boundaries."""
    source = _write(tmp_path / "in.csv", "csv", [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(120)])
    reference = tmp_path / "reference.jsonl.gz"
    assert _python(["-c", KILLER, str(source), str(reference), str(golden_model), "20", "-1", "0"],
                   tmp_path).returncode == 0
    out = tmp_path / "out.jsonl.gz"
    killed = _python(["-c", KILLER, str(source), str(out), str(golden_model), "20", "3", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    resumed = CliRunner().invoke(cli, [str(source), "-o", str(out), "-m", str(golden_model), "--chunk-size", "20",
                                       "--threads", "1", "--device", "cpu", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "resuming after row 60" in resumed.stderr, resumed.output
    assert out.read_bytes() == reference.read_bytes()
    assert len(records(gzip.decompress(out.read_bytes()).decode())) == 120

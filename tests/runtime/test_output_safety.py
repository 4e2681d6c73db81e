"""Nothing left behind, nothing half-written: file modes follow the umask, a disk that fills up
or turns read-only mid-run is one error and exit 1 with the previous output untouched, and the
lock file is removed at the end of a run."""

import errno
import os
import stat

import pytest

from mlbert.io import writers
from mlbert.errors import OutputLocked
from mlbert.io.lock import OutputLock
from mlbert.io.writers import OutputFile
from test_batch_cli import TEXTS, _write, run


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_markers_and_reports_follow_the_umask(tmp_path, golden_model, umask, mask, mode):
    umask(mask)
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out"
    result = run([str(source), "-o", f"{out}/", "--report-json", str(tmp_path / "report.json")], golden_model)
    assert result.exit_code == 0, result.output
    assert _mode(out / "in.jsonl") == mode and _mode(out / "in.jsonl.done") == mode
    assert _mode(tmp_path / "report.json") == mode
    pytest.importorskip("pyarrow")
    assert run([str(source), "-o", str(tmp_path / "out.parquet")], golden_model).exit_code == 0
    assert _mode(tmp_path / "out.parquet") == mode


def test_a_full_disk_mid_run_is_one_error_and_keeps_the_previous_output(tmp_path, golden_model, monkeypatch):
    """The partial file's descriptor is pointed at /dev/full after two chunks: from then on the
    kernel itself answers every write with ENOSPC, as on a disk that just filled up."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    texts = [TEXTS[i % len(TEXTS)] for i in range(100)]
    source = _write(tmp_path / "in.csv", "csv", texts)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    real_checkpoint = OutputFile.checkpoint
    calls = []

    def filling_up(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, self._file.fileno())
            os.close(full)
        return real_checkpoint(self, *args, **kwargs)

    monkeypatch.setattr(OutputFile, "checkpoint", filling_up)
    result = run([str(source), "-o", str(out), "--chunk-size", "10"], golden_model)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {out}.partial: cannot write (No space left on device); {out} is unchanged\n")
    assert out.read_text() == "yesterday\n"
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_a_read_only_folder_at_publish_is_one_error_and_keeps_the_previous_output(tmp_path, golden_model,
                                                                                 monkeypatch):
    """Simulated: tests run as root, where a chmod'ed folder stays writable, so the rename that
    publishes the output fails as it does when the file system was remounted read-only."""
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out.jsonl"
    out.write_text("yesterday\n")
    real_replace = os.replace

    def read_only(src, dst):
        if str(dst) == str(out):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(writers.os, "replace", read_only)
    result = run([str(source), "-o", str(out)], golden_model)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: cannot write (Read-only file system); {out} is unchanged\n"
    assert out.read_text() == "yesterday\n"
    monkeypatch.undo()
    resumed = run([str(source), "-o", str(out), "--resume"], golden_model)  # the checkpoint is kept for this
    assert resumed.exit_code == 0 and f"resuming after row {len(TEXTS)}" in resumed.stderr


def test_the_lock_file_is_removed_at_the_end_of_a_run(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.lock").write_text("12345\n")  # left by a killed run: taken over, then removed
    assert run([str(source), "-o", str(out)], golden_model).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]


def test_a_lock_file_removed_while_waiting_is_not_trusted(tmp_path, monkeypatch):
    """The run that held the lock removes the file and lets go between another run's open and its
    flock: that run must not keep the orphaned file's lock while a third run locks the new file."""
    import fcntl

    target = str(tmp_path / "out.jsonl")
    lock_path = target + ".lock"
    real_flock = fcntl.flock
    swapped = []

    def flock(fd, operation):
        if not swapped:  # the first open's file is unlinked and replaced before its flock
            swapped.append(os.fstat(fd).st_ino)
            os.unlink(lock_path)
            with open(lock_path, "w"):
                pass
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    lock = OutputLock(target).acquire()
    held = os.fstat(lock._fd).st_ino
    assert held != swapped[0] and held == os.stat(lock_path).st_ino
    monkeypatch.undo()
    with pytest.raises(OutputLocked):
        OutputLock(target).acquire()  # the current file is the one held
    lock.release()
    assert not os.path.exists(lock_path)


def test_a_parquet_conversion_that_fails_leaves_no_half_file(tmp_path, golden_model, monkeypatch):
    pytest.importorskip("pyarrow")
    from mlbert.io import parquet_output

    source = _write(tmp_path / "in.csv", "csv", TEXTS)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"yesterday")

    def disk_fills_up(journal, target):
        with open(target, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(parquet_output, "write_parquet", disk_fills_up)
    result = run([str(source), "-o", str(out)], golden_model)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}.tmp: cannot write (No space left on device); {out} is unchanged\n"
    assert out.read_bytes() == b"yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.parquet", "out.parquet.partial",
                                                          "out.parquet.progress"]
    monkeypatch.undo()
    assert run([str(source), "-o", str(out), "--resume"], golden_model).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.parquet"]

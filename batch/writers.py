"""Output records (JSONL, CSV, TSV), atomic publication, resumable progress, and the lock.

Why this much care: ``mlb-batch`` runs unattended from cron. A crash or a kill must
never leave a half-written ``labels.jsonl`` where yesterday's good one was, two runs
must never write the same file at once, and a killed run over a million rows should
continue, not start over. So records go to ``OUTPUT.partial`` beside the output; after
every chunk the partial file is flushed to disk and ``OUTPUT.progress`` records how many
rows and bytes are safely written (with a fingerprint of the input, model and
settings); on success the partial file is renamed over the output with ``os.replace``
(atomic on one filesystem) and the progress file is removed. ``OUTPUT.lock`` is held
with ``flock`` for the whole run; the kernel releases it when the process dies.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Sequence

import numpy as np

from .decisions import labels_and_scores, threshold_vector
from .errors import MlbError, OutputLocked, UsageError
from .formats import normalise_format_name

PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress"
LOCK_SUFFIX = ".lock"
PROGRESS_VERSION = 1
SCORE_DECIMALS = 4
LABEL_SEPARATOR = ";"
# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(cell: str) -> str:
    """Prefix a quote to a cell that a spreadsheet would evaluate (=, +, -, @, tab, CR)."""
    if cell and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


@dataclass
class ChunkResult:
    """One chunk of rows in input order, ready to be written.

    ``ids[i]`` holds row i's pass-through id values (in ``id_names`` order), ``errors[i]``
    its error or None, and ``probabilities`` one row per row *without* an error, in order.
    """

    row_numbers: List[int]
    ids: List[Sequence[Any]]
    errors: List[Optional[str]]
    probabilities: np.ndarray


class RecordFormatter:
    """Turns chunk results into the bytes of JSONL / CSV / TSV records."""

    def __init__(
        self,
        fmt: str,
        id_names: Sequence[str],
        label_names: Sequence[str],
        thresholds: np.ndarray,
        scores: bool = True,
        top_k: Optional[int] = None,
        decimals: int = SCORE_DECIMALS,
    ):
        fmt = normalise_format_name(fmt, writable=True)
        if top_k is not None and top_k < 1:
            raise UsageError(f"--top-k must be at least 1, not {top_k}")
        self.fmt = fmt
        self.id_names = list(id_names)
        self.label_names = list(label_names)
        self.thresholds = threshold_vector(thresholds, len(self.label_names))
        self.scores = scores
        self.top_k = top_k
        self.decimals = decimals
        reserved = set(self.id_names) | {"labels", "error", "row"}
        self.score_columns = [n if n not in reserved else f"score_{n}" for n in self.label_names]
        self.row_column = [] if "row" in self.id_names else ["row"]

    # ---- CSV / TSV -----------------------------------------------------------------
    def _csv_writer(self, buffer: IO[str]):
        return csv.writer(buffer, delimiter="," if self.fmt == "csv" else "\t", lineterminator="\n")

    def header(self) -> str:
        """Text written once at the top of the file (the CSV header line; empty for JSONL)."""
        if self.fmt == "jsonl":
            return ""
        columns = self.id_names + self.row_column + ["labels"]
        if self.scores:
            columns += self.score_columns
        columns.append("error")
        buffer = io.StringIO()
        self._csv_writer(buffer).writerow([escape_formula(c) for c in columns])
        return buffer.getvalue()

    # ---- both -------------------------------------------------------------------------
    def format_chunk(self, result: ChunkResult) -> str:
        labels, scores = labels_and_scores(result.probabilities, self.label_names, self.thresholds,
                                           top_k=self.top_k, scores=self.scores, decimals=self.decimals)
        if self.fmt == "jsonl":
            return self._jsonl(result, labels, scores)
        return self._csv(result, labels, scores)

    def _jsonl(self, result: ChunkResult, labels, scores) -> str:
        lines = []
        dumps = json.dumps
        k = 0
        for number, ids, error in zip(result.row_numbers, result.ids, result.errors):
            record: Dict[str, Any] = dict(zip(self.id_names, ids))
            if error is not None:
                record["row"] = number
                record["error"] = error
            else:
                record["labels"] = labels[k]
                if self.scores:
                    record["scores"] = scores[k]
                k += 1
            lines.append(dumps(record, ensure_ascii=False, separators=(",", ":")))
        lines.append("")
        return "\n".join(lines)

    def _csv(self, result: ChunkResult, labels, scores) -> str:
        buffer = io.StringIO()
        writer = self._csv_writer(buffer)
        blank_scores = [""] * len(self.label_names) if self.scores else []
        k = 0
        for number, ids, error in zip(result.row_numbers, result.ids, result.errors):
            cells = [escape_formula(_cell(v)) for v in ids]
            if self.row_column:
                cells.append(str(number))
            if error is not None:
                cells.append("")
                cells.extend(blank_scores)
                cells.append(escape_formula(error))
            else:
                cells.append(escape_formula(LABEL_SEPARATOR.join(labels[k])))
                if self.scores:
                    shown = scores[k]
                    cells.extend(repr(shown[name]) if name in shown else "" for name in self.label_names)
                cells.append("")
                k += 1
            writer.writerow(cells)
        return buffer.getvalue()


# ---- files -----------------------------------------------------------------------------


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``OUTPUT.lock`` for the life of the run."""

    def __init__(self, output_path: str):
        self.path = output_path + LOCK_SUFFIX
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MlbError(f"{self.path}: cannot create the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            who = f" (process {holder})" if holder else ""
            raise OutputLocked(
                f"{self.path[: -len(LOCK_SUFFIX)]}: another mlb-batch run is writing this output{who}; "
                "not starting a second one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; the file stays (unlinking would race)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@dataclass
class ResumePoint:
    rows_done: int = 0
    bytes_done: int = 0
    errors: int = 0


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def changed_keys(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """The parts that differ between two fingerprints, naming the field inside a nested part
    ("execution (chunk_size)"), so the user learns which option made a run start over."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            fields = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            changed.append(f"{key} ({', '.join(fields)})")
        else:
            changed.append(key)
    return changed


class OutputFile:
    """Where records go: stdout, or ``OUTPUT.partial`` published to ``OUTPUT`` on success.

    ``open`` starts the partial file, or, with ``resume=True`` and a progress file whose
    fingerprint matches, truncates it to the last checkpoint and appends from there.
    """

    def __init__(self, path: str, fingerprint: Optional[Dict[str, Any]] = None):
        self.path = path
        self.is_stdout = path == "-"
        self.fingerprint = fingerprint or {}
        self.partial_path = path + PARTIAL_SUFFIX
        self.progress_path = path + PROGRESS_SUFFIX
        self._file: Optional[IO[bytes]] = None
        self.bytes_written = 0
        self.resume_note: Optional[str] = None

    def check_writable(self) -> None:
        """Fail before any work if the output folder does not exist or is not writable."""
        if self.is_stdout:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise UsageError(f"{self.path}: the output folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise UsageError(f"{self.path}: cannot write in {folder}")
        if os.path.isdir(self.path):
            raise UsageError(f"{self.path}: is a folder; give a file name")

    def read_resume_point(self) -> Optional[ResumePoint]:
        """The checkpoint of an earlier killed run of the same job, or None (with a note why)."""
        if self.is_stdout:
            return None
        try:
            with open(self.progress_path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            self.resume_note = "no earlier run to resume; starting from the first row"
            return None
        except (OSError, ValueError):
            self.resume_note = f"{self.progress_path} is unreadable; starting over"
            return None
        if data.get("version") != PROGRESS_VERSION or data.get("fingerprint") != self.fingerprint:
            changed = changed_keys(data.get("fingerprint") or {}, self.fingerprint)
            self.resume_note = (
                f"the earlier run used a different {', '.join(changed) or 'progress format'}; starting over"
            )
            return None
        try:
            point = ResumePoint(int(data["rows_done"]), int(data["bytes_done"]), int(data["errors"]))
            size = os.path.getsize(self.partial_path)
        except (KeyError, TypeError, ValueError, OSError):
            self.resume_note = f"{self.partial_path} is missing or unreadable; starting over"
            return None
        if size < point.bytes_done:
            self.resume_note = f"{self.partial_path} is shorter than its checkpoint; starting over"
            return None
        self.resume_note = f"resuming after row {point.rows_done}"
        return point

    def open(self, header_text: str, resume_point: Optional[ResumePoint] = None) -> None:
        if self.is_stdout:
            self._file = sys.stdout.buffer
            self.write(header_text)
            return
        if resume_point is not None:
            f = open(self.partial_path, "r+b")
            f.truncate(resume_point.bytes_done)
            f.seek(resume_point.bytes_done)
            self._file = f
            self.bytes_written = resume_point.bytes_done
            return
        self._file = open(self.partial_path, "wb")
        self.bytes_written = 0
        self._remove(self.progress_path)
        self.write(header_text)

    def write(self, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8")
        assert self._file is not None
        self._file.write(data)
        self.bytes_written += len(data)

    def checkpoint(self, rows_done: int, errors: int) -> None:
        """Make everything written so far durable and record it for ``--resume``."""
        assert self._file is not None
        self._file.flush()
        if self.is_stdout:
            return
        os.fsync(self._file.fileno())
        tmp = self.progress_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "version": PROGRESS_VERSION,
                    "rows_done": rows_done,
                    "bytes_done": self.bytes_written,
                    "errors": errors,
                    "fingerprint": self.fingerprint,
                },
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.progress_path)

    def publish(self) -> None:
        """Atomically replace the output with the finished partial file."""
        assert self._file is not None
        self._file.flush()
        if self.is_stdout:
            return
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.partial_path, self.path)
        self._remove(self.progress_path)
        _fsync_dir(self.path)

    def close(self) -> None:
        """Stop writing without publishing: the output stays as it was; the partial file and
        its progress stay for ``--resume``."""
        if self._file is not None and not self.is_stdout:
            try:
                self._file.close()
            except OSError:
                pass
        elif self._file is not None:
            try:
                self._file.flush()
            except (OSError, ValueError):
                pass
        self._file = None

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

"""Output records (JSONL, CSV, TSV; Parquet in ``parquet_output``), atomic publication, resumable progress.

Why this much care: ``mlb-batch`` runs unattended from cron. A crash or a kill must
never leave a half-written ``labels.jsonl`` where yesterday's good one was, two runs
must never write the same file at once, and a killed run over a million rows should
continue, not start over. So records go to ``OUTPUT.partial`` beside the output; after
every chunk the partial file is flushed to disk and ``OUTPUT.progress`` records how many
rows and bytes are safely written (with a fingerprint of the input, model and
settings); on success the partial file is renamed over the output (``atomic.publish_file``)
(atomic on one filesystem) and the progress file is removed. ``OUTPUT.lock``
(``outputlock``) is held with ``flock`` for the whole run. An output URL is written the
same way in a local staging folder and uploaded at the end (``storage.upload_atomic``).
A disk that fills up or turns read-only mid-run is one error line naming the file; the
output stays as it was.

What is not a regular file is never replaced (``atomic.destination``): a symlink's target
is replaced and the link kept (the partial, progress and lock files live beside the
target); a named pipe, a character device or ``/dev/stdout`` is written straight into, like
stdout, with no partial file, no checkpoint and no lock. A name ending in ``.gz`` is written
gzip-compressed: each chunk's records are one gzip member (fixed header, no timestamp), so
the file is ordinary gzip for every reader, checkpoints fall on member boundaries and
``--resume`` still gives the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Union

from mlbert.errors import MlbError
from mlbert.io.staging import make_staging_folder, staging_path
from mlbert.io.atomic import check_destination, destination, publish_file, write_text_atomic
from mlbert.io.storage import check_output_url, is_url, upload_atomic


PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress"
# A finished partial file being turned into the output (Parquet) before it is published.
READY_SUFFIX = ".tmp"
PROGRESS_VERSION = 1
# gzip level of a compressed output: zlib's default, the usual size/speed balance.
GZIP_LEVEL = 6


# ---- files -----------------------------------------------------------------------------


@dataclass
class ResumePoint:
    rows_done: int = 0
    bytes_done: int = 0
    errors: int = 0
    tallies: Dict[str, Any] = field(default_factory=dict)


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


# Turns a finished partial file into the file to publish (Parquet: IPC batches -> Parquet).
Finisher = Callable[[str, str], None]


class OutputFile:
    """Where records go: stdout, or ``OUTPUT.partial`` published to ``OUTPUT`` on success.

    ``open`` starts the partial file, or, with ``resume=True`` and a progress file whose
    fingerprint matches, truncates it to the last checkpoint and appends from there. For an
    output URL the partial, progress and lock files live at ``local_path`` in the staging
    folder (``storage.staging_path``). ``finish`` turns the finished partial file into the
    published one (Parquet); without it the partial file is the output.
    """

    def __init__(self, path: str, fingerprint: Optional[Dict[str, Any]] = None, *,
                 finish: Optional[Finisher] = None, staging_dir: Optional[str] = None, compress: bool = False):
        self.path = path
        self.is_stdout = path == "-"
        self.is_url = is_url(path)
        self.destination = None if self.is_stdout or self.is_url else destination(path)
        # Written straight into (stdout, a pipe, a device): no partial file, checkpoint or lock.
        self.is_stream = self.is_stdout or bool(self.destination and self.destination.stream)
        self.fingerprint = fingerprint or {}
        self.finish = finish
        self.compress = compress
        if self.is_url:
            self.local_path = staging_path(path, staging_dir)
        else:
            self.local_path = self.destination.target if self.destination is not None else path
        self.partial_path = self.local_path + PARTIAL_SUFFIX
        self.progress_path = self.local_path + PROGRESS_SUFFIX
        self._file: Optional[IO[bytes]] = None
        self.bytes_written = 0
        self.resume_note: Optional[str] = None

    @property
    def note(self) -> Optional[str]:
        """How the output was written, when not by the plain atomic replacement (for the summary)."""
        return self.destination.note if self.destination is not None else None

    @contextlib.contextmanager
    def _disk(self, where: str) -> Iterator[None]:
        """A write the OS refuses (a full disk, a read-only folder) as one line naming the file.

        Not for stdout: a closed pipe (``| head``) is the command boundary's to handle.
        """
        if self.is_stdout:
            yield
            return
        kept = "what was written stays in it" if self.is_stream else f"{self.path} is unchanged"
        try:
            yield
        except OSError as exc:
            raise MlbError(f"{where}: cannot write ({exc.strerror or exc}); {kept}") from None

    def check_writable(self) -> None:
        """Fail before any work (exit 1, one line) if the output cannot be written: its folder, bucket or stdout."""
        if self.is_stdout:
            if getattr(sys.stdout, "buffer", None) is None:
                raise MlbError("stdout is closed or takes no bytes (started with >&-?); give -o FILE")
            return
        if self.is_url:
            check_output_url(self.path)
            make_staging_folder(self.local_path, self.path)
            return
        check_destination(self.path, "the output")

    def read_resume_point(self) -> Optional[ResumePoint]:
        """The checkpoint of an earlier killed run of the same job, or None (with a note why)."""
        if self.is_stream:
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
            point = ResumePoint(int(data["rows_done"]), int(data["bytes_done"]), int(data["errors"]),
                                dict(data.get("tallies") or {}))
            size = os.path.getsize(self.partial_path)
        except (KeyError, TypeError, ValueError, OSError):
            self.resume_note = f"{self.partial_path} is missing or unreadable; starting over"
            return None
        if size < point.bytes_done:
            self.resume_note = f"{self.partial_path} is shorter than its checkpoint; starting over"
            return None
        self.resume_note = f"resuming after row {point.rows_done}"
        return point

    def open(self, header: Union[str, bytes], resume_point: Optional[ResumePoint] = None) -> None:
        if self.is_stdout:
            self._file = sys.stdout.buffer
            self.write(header)
            return
        if self.is_stream:  # a pipe's open waits for its reader, as any writer's does
            with self._disk(self.path):
                self._file = open(self.path, "ab")
            self.write(header)
            return
        with self._disk(self.partial_path):
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
        self.write(header)

    def write(self, data: Union[str, bytes]) -> None:
        """Append records: text (JSON lines, CSV) or bytes (Parquet's record batches)."""
        if not data:
            return
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if self.compress:  # one gzip member per call; mtime=0 keeps the bytes reproducible
            raw = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
        assert self._file is not None
        with self._disk(self.path if self.is_stream else self.partial_path):
            self._file.write(raw)
        self.bytes_written += len(raw)

    def checkpoint(self, rows_done: int, errors: int, tallies: Optional[Dict[str, Any]] = None) -> None:
        """Make everything written so far durable and record it (and the run's tallies) for ``--resume``."""
        assert self._file is not None
        if self.is_stream:
            with self._disk(self.path):
                self._file.flush()
            return
        self._sync_partial()
        progress = {"version": PROGRESS_VERSION, "rows_done": rows_done, "bytes_done": self.bytes_written,
                    "errors": errors, "fingerprint": self.fingerprint}
        if tallies is not None:
            progress["tallies"] = tallies
        with self._disk(self.progress_path):
            write_text_atomic(self.progress_path, json.dumps(progress))

    def _sync_partial(self) -> None:
        """Everything written so far on disk, not in a buffer (a kill cannot lose a checkpointed row)."""
        assert self._file is not None
        with self._disk(self.partial_path):
            self._file.flush()
            os.fsync(self._file.fileno())

    def publish(self) -> None:
        """Replace the output with the finished file: ``atomic.publish_file`` locally, an atomic upload for a URL."""
        assert self._file is not None
        if self.compress and self.bytes_written == 0:
            self._file.write(gzip.compress(b"", mtime=0))  # no records: still a valid (empty) gzip file
        if self.is_stream:
            with self._disk(self.path):
                self._file.flush()
                if not self.is_stdout:
                    self._file.close()
                    self._file = None
            return
        self._sync_partial()
        with self._disk(self.partial_path):
            self._file.close()
        self._file = None
        ready = self.partial_path
        try:
            if self.finish is not None:
                ready = self.local_path + READY_SUFFIX
                with self._disk(ready):
                    self.finish(self.partial_path, ready)
            if self.is_url:
                upload_atomic(ready, self.path)
            else:
                with self._disk(self.path):
                    publish_file(ready, self.local_path)  # a symlink's target; the link itself stays
        finally:
            if ready != self.partial_path:  # a converted file is rebuilt from the partial one if needed
                self._remove(ready)
        self._remove(self.partial_path)
        self._remove(self.progress_path)

    def remove_staging_folder(self) -> None:
        """After a published URL output (and its lock) are gone, its empty staging folder goes too."""
        if self.is_url:
            try:
                os.rmdir(os.path.dirname(self.local_path))
            except OSError:
                pass  # not empty: a partial file kept for --resume, or another run's files

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

"""Many inputs for one ``mlb-batch`` run: several files, a folder or a glob -> one output each.

Why: nightly jobs grow from one CSV to a folder of them, and cron should not need a loop
in shell. Each input is one ordinary ``BatchJob`` (the local engine or the Ray engine),
so every file keeps the single-file guarantees: written to ``OUT/NAME.partial`` and
published atomically, its own ``flock``, its own ``--resume`` checkpoint. The model is
loaded once and shared by all files.

How "done" is known: after a file's output is published, ``OUT/NAME.done`` records a
fingerprint of the input (path, size, modification time, SHA-256 of its first and last
MiB), of the model file, and of every option that changes the records (columns,
thresholds, top-k, scores, output format), plus the size and modification time of the
output it published. The next run skips an input when that marker matches what it would
compute now and the output is still the file the marker describes. A changed or
replaced input, another model, other thresholds, or an output that was edited or
deleted make the file run again; ``--redo`` runs every file regardless.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

from mlbert.io import atomic, storage
from mlbert.errors import ExitCode, MlbError, OutputLocked, UsageError, raise_errors
from mlbert.io.formats import FORMATS, main_extensions, output_format, readable_by_name
from mlbert.batch.fingerprint import job_fingerprint
from mlbert.batch.job import BatchOptions, ProgressCallback, Summary
from mlbert.batch.pipeline import BatchJob
from mlbert.batch.run_report import Tally
from mlbert.io.lock import LOCK_SUFFIX
from mlbert.io.writers import PARTIAL_SUFFIX, PROGRESS_SUFFIX

DONE_SUFFIX = ".done"
DONE_VERSION = 1
# Files an output folder holds besides outputs; never taken as inputs.
SIDECAR_SUFFIXES = (PARTIAL_SUFFIX, PROGRESS_SUFFIX, LOCK_SUFFIX, DONE_SUFFIX, ".tmp")


@dataclass
class PlannedFile:
    input: str
    output: str


@dataclass
class Plan:
    """Inputs paired with outputs. ``inbox`` is False for the classic one input -> FILE/stdout."""

    files: List[PlannedFile]
    inbox: bool
    output_dir: Optional[str] = None
    notes: List[str] = field(default_factory=list)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _candidate(path: str) -> bool:
    """A listed file that may be an input: not hidden, not one of mlb's own files beside an output."""
    name = storage.basename(path)
    return not name.startswith(".") and not name.endswith(SIDECAR_SUFFIXES)


def _is_folder(item: str) -> bool:
    """A local folder, or a URL prefix (written with a trailing / or holding objects)."""
    if storage.is_url(item) and item.endswith("/"):
        return True
    return storage.isdir(item)


def _is_pattern(item: str) -> bool:
    return _is_glob(item) and not storage.exists(item)


def expand_inputs(inputs: Sequence[str], notes: Optional[List[str]] = None) -> List[str]:
    """Files named, found in folders (not recursive) or matched by globs, in a stable order.

    A folder contributes its files whose names say CSV, TSV, JSON lines or text (optionally
    .gz), sorted by name; others are listed in ``notes``, never dropped silently. A glob
    (quoted, so the shell leaves it alone) matches files, sorted. A file named twice runs once.
    An empty folder or a glob that matches nothing contributes nothing and says so in
    ``notes``: a quiet night's inbox is nothing to do, not an error.
    """
    if not inputs:
        raise UsageError("no input: give a file, a folder, a glob or - for stdin")
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("- (stdin) cannot be combined with other inputs")
    files: List[str] = []
    for item in inputs:
        if item == "-":
            files.append(item)
        elif _is_folder(item):
            entries = [p for p in storage.list_files(item) if _candidate(p)]
            found = [p for p in entries if readable_by_name(p)]
            ignored = [storage.basename(p) for p in entries if not readable_by_name(p)]
            if ignored and notes is not None:
                notes.append(
                    f"{item}: ignored {len(ignored)} file(s) whose names are not {'/'.join(main_extensions())}(.gz): "
                    + ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else "")
                )
            if not found and notes is not None:
                notes.append(f"{item}: the folder holds no {', '.join(main_extensions())} files (optionally .gz)")
            files.extend(found)
        elif _is_pattern(item):
            found = [p for p in storage.glob_files(item) if _candidate(p)]
            if not found and notes is not None:
                notes.append(f"{item}: no file matches this pattern")
            files.extend(found)
        else:  # a missing file is the reader's error (exit 1), like any unreadable input
            files.append(item)
    seen = set()
    unique = []
    for path in files:
        key = storage.location_key(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def output_name(input_path: str, fmt: str) -> str:
    """``tweets.csv.gz`` -> ``tweets.jsonl`` (or ``.csv``/``.tsv``): the format extension swapped."""
    name = storage.basename(input_path)
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, ext = os.path.splitext(name)
    if ext and readable_by_name(name):
        name = stem
    return name + FORMATS[fmt].extensions[0]


def _is_dir_target(output: str) -> bool:
    return output != "-" and (output.endswith(("/", os.sep)) or storage.isdir(output))


def plan(inputs: Sequence[str], output: str, explicit_format: Optional[str] = None) -> Plan:
    """Pair every input with its output, checking everything that needs no model."""
    notes: List[str] = []
    files = expand_inputs(inputs, notes)
    several = len(files) != 1 or any(i != "-" and (_is_folder(i) or _is_pattern(i)) for i in inputs)
    if not _is_dir_target(output):
        if several:
            raise UsageError(
                "several inputs (more than one file, a folder or a glob) need an output folder: -o DIR/"
            )
        return Plan([PlannedFile(files[0], output)], inbox=False, notes=notes)
    if files == ["-"]:
        raise UsageError("stdin has no name to give its output in a folder; use -o FILE or -o -")
    folder = output
    if not storage.is_url(folder) and os.path.exists(folder) and not os.path.isdir(folder):
        raise MlbError(f"{folder}: cannot write the outputs there (not a folder)")
    fmt = output_format("x", explicit_format)
    planned: List[PlannedFile] = []
    by_output: Dict[str, str] = {}
    inputs_abs = {storage.location_key(f) for f in files}
    for path in files:
        target = storage.join(folder, output_name(path, fmt))
        key = storage.location_key(target)
        if key in by_output:
            raise UsageError(
                f"{by_output[key]} and {path} would both write {target}; rename one or run them separately"
            )
        if key in inputs_abs:
            raise UsageError(f"{target}: the output for {path} would overwrite an input; use another output folder")
        by_output[key] = path
        planned.append(PlannedFile(path, target))
    return Plan(planned, inbox=True, output_dir=folder, notes=notes)


# ---- done markers --------------------------------------------------------------------------


def done_key(options: BatchOptions) -> Dict[str, Any]:
    """What decides a file's records (``fingerprint.job_fingerprint``): input, model and options."""
    return job_fingerprint(options, output_format(options.output, options.output_format))


def is_done(output: str, key: Dict[str, Any]) -> bool:
    """True when ``OUTPUT.done`` matches ``key`` and ``OUTPUT`` is the file (or object) it describes."""
    try:
        marker = json.loads(storage.read_bytes(output + DONE_SUFFIX).decode("utf-8"))
        found = storage.stat(output)
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("version") == DONE_VERSION
        and marker.get("key") == key
        and marker.get("output_size") == found.size
        and marker.get("output_mtime_ns") == found.mtime_ns
        and marker.get("output_etag") == found.etag
    )


def mark_done(output: str, key: Dict[str, Any], summary: Summary) -> None:
    """Write ``OUTPUT.done`` atomically after ``OUTPUT`` was published (beside it, in the bucket for a URL)."""
    found = storage.stat(output)
    marker = {
        "version": DONE_VERSION,
        "key": key,
        "output_size": found.size,
        "output_mtime_ns": found.mtime_ns,
        "rows": summary.rows,
        "errors": summary.errors,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if found.etag is not None:
        marker["output_etag"] = found.etag
    atomic.write_bytes_atomic(output + DONE_SUFFIX, (json.dumps(marker, indent=1) + "\n").encode("utf-8"))


# ---- the run -------------------------------------------------------------------------------


@dataclass
class InboxSummary:
    files: int = 0
    processed: int = 0
    skipped: int = 0
    failed: List[str] = field(default_factory=list)
    locked: List[str] = field(default_factory=list)
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0
    provider: str = ""
    model: str = ""  # which model ran (the jobs' Summary.model)
    output: str = ""
    notes: List[str] = field(default_factory=list)
    failure_codes: List[int] = field(default_factory=list)
    tally: Optional[Tally] = None  # over the files written in this run, for the run report
    rows_read: int = 0
    text_columns: Dict[str, Any] = field(default_factory=dict)  # input -> the ColumnChoice its run made

    @property
    def nothing_to_do(self) -> bool:
        """No input at all (an empty folder, a glob that matched nothing): exit 0, status nothing_to_do."""
        return self.files == 0

    @property
    def exit_code(self) -> int:
        """1 a file failed (2 if only usage errors), else 4 a file was locked, else 3 row errors, else 0."""
        codes = set(self.failure_codes)
        if codes - {ExitCode.USAGE}:
            return ExitCode.FAILURE
        if codes:
            return ExitCode.USAGE
        if self.locked:
            return ExitCode.LOCKED
        return ExitCode.ROW_ERRORS if self.errors else ExitCode.OK

    def line(self) -> str:
        if self.nothing_to_do:
            return f"mlb-batch: nothing to do: no input file -> {self.output}"
        parts = [f"{self.files} files: {self.processed} written"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.locked:
            parts.append(f"{len(self.locked)} locked by another run")
        provider = f", {self.provider}" if self.provider else ""
        return (
            f"mlb-batch: {', '.join(parts)}; {self.rows} rows, {self.errors} errors, "
            f"{self.seconds:.1f} s{provider} -> {self.output}; {self.rows_read} rows read, {self.rows} records written"
            + (f"; model: {self.model}" if self.model else "")
        )


class InboxRun:
    """Runs a ``Plan`` file by file; ``job``/``summary``/``options`` describe the current file."""

    def __init__(
        self,
        planned: Plan,
        template: BatchOptions,
        make_job: Callable[[BatchOptions], BatchJob],
        redo: bool = False,
        echo: Callable[[str], None] = lambda line: None,
        quiet: bool = False,
    ):
        self.plan = planned
        self.template = template
        self.make_job = make_job
        self.redo = redo
        self.echo = echo  # errors always; per-file summary lines unless quiet
        self.quiet = quiet
        self.job: Optional[BatchJob] = None
        self.result = InboxSummary(files=len(planned.files), output=planned.output_dir or "", notes=list(planned.notes))

    @property
    def summary(self) -> Summary:
        return self.job.summary if self.job is not None else Summary()

    @property
    def options(self) -> BatchOptions:
        return self.job.options if self.job is not None else self.template

    @property
    def classifier(self) -> Any:
        """The model shared by the files (None until the first file that is not done loads it)."""
        return self.job.classifier if self.job is not None else None

    def prepare(self) -> None:
        """Checks that need no model (the output folder exists or can be made, and is writable); the model
        loads with the first file that is not done."""
        folder = self.plan.output_dir
        if folder and storage.is_url(folder):
            storage.check_output_url(folder)
            return
        if folder and not os.path.isdir(folder):
            parent = os.path.dirname(os.path.abspath(folder.rstrip("/" + os.sep))) or "."
            atomic.check_folder_writable(parent, f"{folder}: cannot create the output folder")
            os.makedirs(folder, exist_ok=True)
        if folder:
            atomic.check_folder_writable(folder, f"{folder}: cannot write the outputs")

    def run(self, on_progress: Optional[ProgressCallback] = None) -> InboxSummary:
        started = time.monotonic()
        result = self.result
        prepared: Optional[BatchJob] = None
        for item in self.plan.files:
            options = replace(self.template, input=item.input, output=item.output)
            key = done_key(options)
            if not self.redo and is_done(item.output, key):
                result.skipped += 1
                continue
            job = self.make_job(options)
            self.job = job
            if prepared is None:
                job.prepare()  # a model problem stops the whole run, before any output
                prepared = job
                result.provider = job.summary.provider
                result.model = job.summary.model
            try:
                if job is not prepared:
                    job.adopt(prepared)
                summary = job.run(on_progress)
            except OutputLocked as exc:
                if raise_errors():
                    raise
                self.echo(f"Error: {exc}")
                result.locked.append(item.input)
                continue
            except (MlbError, OSError) as exc:
                # One unreadable file must not hold back the rest of the inbox; it is
                # reported now, counted in the exit code, and retried next run.
                if raise_errors():
                    raise
                if isinstance(exc, MlbError):
                    message, code = str(exc), exc.exit_code
                else:
                    where = f"{exc.filename}: " if getattr(exc, "filename", None) else f"{item.input}: "
                    message, code = f"{where}{exc.strerror or exc}", 1
                self.echo(f"Error: {message}")
                result.failed.append(item.input)
                result.failure_codes.append(code)
                continue
            mark_done(item.output, key, summary)
            if summary.tally is not None:
                if result.tally is None:
                    result.tally = Tally.empty(len(summary.tally.positives))
                result.tally.add(summary.tally)
            result.processed += 1
            result.rows += summary.rows
            result.rows_read += summary.rows_read
            result.errors += summary.errors
            result.text_columns[item.input] = summary.text_column
            result.provider = summary.provider
            result.model = summary.model
            result.notes.extend(f"{item.input}: {note}" for note in summary.notes)
            if not self.quiet:
                self.echo(summary.line())
        result.seconds = time.monotonic() - started
        return result

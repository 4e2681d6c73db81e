"""The mlb-batch job: files -> rows -> texts -> probabilities -> records -> file, streaming.

Why it is shaped like this: the model is loaded and warmed up before the output is
touched (fail fast); the input is read in fixed chunks of rows, so memory depends on the
chunk size and never on the file's length; each chunk is tokenized in one call and run
in token-budget batches (``classifier.Classifier``, the Python API's object), and its records are written in input order
before the next chunk is read. Chunk boundaries are fixed row counts from the start of
the file, so a resumed run computes every chunk exactly as an uninterrupted run would,
which is what makes ``--resume`` byte-identical.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mlbert.io import columns
from mlbert.batch.fingerprint import job_fingerprint
from mlbert.errors import InputError, UsageError
from mlbert.io.readers import Row, Table, open_table
from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE, Classifier, load
from mlbert.io.formats import output_format
from mlbert.batch.run_report import Tally
from mlbert.io.storage import READ_ONLY_SCHEMES, location_key, scheme
from mlbert.io.writers import ROW_ID, ChunkResult, OutputFile, OutputLock, make_formatter

# Rows read ahead to decide which column holds the text (they are still processed in order).
SAMPLE_ROWS = 64
# Control characters other than tab, LF and CR (C0, DEL, C1) are never text: a few in a row
# are dropped from its text rather than costing the row. BERT-family tokenizers drop them
# too, so for those models the scores do not change; other tokenizers would see noise.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class BatchOptions:
    """Everything ``mlb-batch`` takes; the CLI only fills this in."""

    input: str
    output: str = "-"
    model: Optional[str] = None
    format: Optional[str] = None
    header: Optional[bool] = None
    text_column: Optional[str] = None
    id_columns: Sequence[str] = ()
    output_format: Optional[str] = None
    thresholds: Sequence[str] = ()
    top_k: Optional[int] = None
    scores: bool = True
    device: str = "auto"
    threads: Optional[int] = None
    streams: Optional[int] = None
    token_budget: Optional[int] = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    resume: bool = False
    staging_dir: Optional[str] = None  # where an output URL's partial, progress and lock files live


@dataclass
class Summary:
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0
    provider: str = ""
    output: str = "-"
    resumed_from: int = 0
    notes: List[str] = field(default_factory=list)
    tally: Optional[Tally] = None  # positives per label and error kinds, for the run report

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        resumed = f" (resumed after row {self.resumed_from})" if self.resumed_from else ""
        where = "stdout" if self.output == "-" else self.output
        return (
            f"mlb-batch: {self.rows} rows, {self.errors} errors, {self.seconds:.2f} s, "
            f"{self.rows_per_second:.0f} rows/s, {self.provider}{resumed} -> {where}"
        )


ProgressCallback = Callable[[int, int, int, Optional[int]], None]


def parse_thresholds(values: Sequence[str], label_names: Sequence[str], defaults: Sequence[float]) -> np.ndarray:
    """``--threshold 0.4`` (every label) and/or ``--threshold joy=0.3,anger=0.6`` (named labels)."""
    thresholds = np.asarray(defaults, dtype=np.float64).copy()
    index = {name: i for i, name in enumerate(label_names)}
    overall: Optional[float] = None
    named: Dict[str, float] = {}
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, number = item.rpartition("=")
            try:
                threshold = float(number)
            except ValueError:
                raise UsageError(f"--threshold {item!r}: expected a number or LABEL=NUMBER") from None
            if not 0.0 <= threshold <= 1.0:
                raise UsageError(f"--threshold {item!r}: a threshold is a probability between 0 and 1")
            if sep:
                name = name.strip()
                if name not in index:
                    raise UsageError(
                        f"--threshold {item!r}: the model has no label {name!r} (labels: {', '.join(label_names)})"
                    )
                named[name] = threshold
            else:
                overall = threshold
    if overall is not None:
        thresholds[:] = overall
    for name, threshold in named.items():
        thresholds[index[name]] = threshold
    return thresholds


def _where(table: Table) -> str:
    return "stdin" if table.path == "-" else table.path


def pick_text_column(table: Table, explicit: Optional[str]) -> str:
    """The text column by the rule every command shares (``columns.text_column``), from the first rows."""
    if not table.columns:  # an empty file (or JSON lines whose first line is bad): rows decide
        return explicit or "text"
    other_delimiter = {"csv": "\t", "tsv": ","}.get(table.format.format) if table.has_header else None
    sample = [row.values for row in table.sample(SAMPLE_ROWS) if row.values is not None]
    return columns.text_column(table.columns, sample, explicit=explicit, source=_where(table),
                               delimiter_hint=other_delimiter)


def pick_id_columns(table: Table, explicit: Sequence[str], text_column: str) -> List[str]:
    """The columns copied into each record: ``--id-column``s, else an id-named column, else the row number."""
    if explicit:
        if not table.columns:
            return list(explicit)
        return [columns.find_column(table.columns, name, what="id", source=_where(table)) for name in explicit]
    found = columns.id_column(table.columns, exclude=[text_column], source=_where(table))
    return [found] if found is not None else [ROW_ID]


def chunks_of(rows: Iterator[Row], size: int) -> Iterator[List[Row]]:
    while True:
        chunk = list(islice(rows, size))
        if not chunk:
            return
        yield chunk


def clean_text(text: str) -> str:
    """``text`` without control characters (other than tab, LF and CR)."""
    return _CONTROL_CHARACTERS.sub("", text) if _CONTROL_CHARACTERS.search(text) else text


def _text_of(values: Dict[str, Any], column: str) -> Tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, why the row has no usable text)."""
    if column not in values:
        return None, f"no {column!r} field"
    value = values[column]
    if value is None:
        return None, f"{column!r} is null"
    if isinstance(value, bytes):  # a Parquet value that is not UTF-8 (parquet.group_rows)
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"bytes that are not UTF-8 (at byte {exc.start} of {column!r})"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"{column!r} is not text (a JSON {type(value).__name__})"
    text = clean_text(value) if isinstance(value, str) else str(value)
    if not text.strip():
        return None, "empty text"
    return text, None


def split_chunk(
    chunk: Sequence[Row], text_column: str, id_columns: List[str]
) -> Tuple[List[int], List[Sequence[Any]], List[Optional[str]], List[str]]:
    """(row numbers, id tuples, per-row error or None, texts of the rows without error).

    Shared by the local and the Ray engine (``batch.ray_engine``) so both give every row
    the same id and the same error record.
    """
    use_row_id = id_columns == [ROW_ID]
    numbers: List[int] = []
    ids: List[Sequence[Any]] = []
    row_errors: List[Optional[str]] = []
    texts: List[str] = []
    for row in chunk:
        numbers.append(row.number)
        values = row.values
        if use_row_id:
            ids.append((row.number,))
        elif values is None:
            ids.append(tuple(None for _ in id_columns))
        else:
            ids.append(tuple(values.get(c) for c in id_columns))
        if row.error is not None or values is None:
            row_errors.append(row.error or "unreadable row")
            continue
        text, why = _text_of(values, text_column)
        if why is not None:
            row_errors.append(why)
            continue
        row_errors.append(None)
        texts.append(text)  # type: ignore[arg-type]
    return numbers, ids, row_errors, texts


class BatchJob:
    """One run of mlb-batch. ``prepare()`` loads and checks everything; ``run()`` writes."""

    def __init__(self, options: BatchOptions):
        self.options = options
        self.summary = Summary(output=options.output)
        self.classifier: Optional[Classifier] = None
        self._chunks_written = 0

    # -- checks that need no model ---------------------------------------------------------
    def _check_options(self) -> None:
        o = self.options
        if o.resume and o.output == "-":
            raise UsageError("--resume needs an output file (-o FILE): stdout cannot be resumed")
        if o.resume and o.input == "-":
            raise UsageError("--resume needs an input file: stdin cannot be read again")
        if o.chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1, not {o.chunk_size}")
        if o.token_budget is not None and o.token_budget < 1:
            raise UsageError(f"--token-budget must be a positive number of tokens, not {o.token_budget}")
        if o.top_k is not None and o.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, not {o.top_k}")
        if o.output != "-" and location_key(o.output) == location_key(o.input):
            raise UsageError(f"{o.output}: the output would overwrite the input")
        if scheme(o.output) in READ_ONLY_SCHEMES:
            raise UsageError(f"{o.output}: {scheme(o.output)}:// is read-only; write to a file or an s3://, gs://, "
                             "az:// URL")
        if output_format(o.output, o.output_format) == "parquet" and o.output == "-":
            raise UsageError("Parquet output needs a file (-o FILE.parquet): it is not written to stdout")

    def prepare(self) -> Classifier:
        """Load the model and run a warm-up batch before anything is opened for writing."""
        self._check_options()
        o = self.options
        classifier = load(o.model, o.device, threads=o.threads, streams=o.streams, token_budget=o.token_budget)
        classifier.warm_up()
        classifier.thresholds = parse_thresholds(o.thresholds, classifier.label_names, classifier.thresholds)
        self.summary.provider = classifier.provider
        self.summary.notes.extend(classifier.notes)
        self.classifier = classifier
        return classifier

    def adopt(self, prepared: "BatchJob") -> None:
        """Use the model another (prepared) job loaded: an inbox loads it once for all files."""
        self._check_options()
        self.classifier = prepared.classifier
        self.summary.provider = prepared.summary.provider

    def _fingerprint(self, fmt: str) -> Dict[str, Any]:
        """The settings fingerprint plus how rows are grouped and run: what makes --resume byte-identical."""
        assert self.classifier is not None
        return job_fingerprint(self.options, fmt, execution={
            "chunk_size": self.options.chunk_size,
            "token_budget": self.classifier.token_budget,
            "provider": self.classifier.provider,
            "threads": self.classifier.threads,
        })

    def run(
        self,
        on_progress: Optional[ProgressCallback] = None,
        after_chunk: Optional[Callable[[int], None]] = None,
    ) -> Summary:
        """Classify every row and publish the output; ``after_chunk`` is a test hook."""
        o = self.options
        classifier = self.classifier or self.prepare()
        started = time.monotonic()
        fmt = output_format(o.output, o.output_format)
        with open_table(o.input, o.format, o.header, default_format="text") as table:
            text_column = pick_text_column(table, o.text_column)
            id_columns = pick_id_columns(table, o.id_columns, text_column)
            table.use_columns([text_column] + [c for c in id_columns if c != ROW_ID])
            formatter = make_formatter(fmt, id_columns, classifier.label_names, classifier.thresholds,
                                       scores=o.scores, top_k=o.top_k, id_types=table.column_types)
            fingerprint = self._fingerprint(fmt) if o.output != "-" else {}
            output = OutputFile(o.output, fingerprint, finish=_finisher(fmt), staging_dir=o.staging_dir)
            output.check_writable()
            lock = OutputLock(output.local_path) if o.output != "-" else None
            if lock is not None:
                lock.acquire()
            try:
                resume_point = output.read_resume_point() if o.resume else None
                if o.resume and output.resume_note:
                    self.summary.notes.append(output.resume_note)
                output.open(formatter.header(), resume_point)
                try:
                    self._stream(table, text_column, id_columns, formatter, output, resume_point, on_progress, after_chunk)
                    self.summary.seconds = time.monotonic() - started
                    output.publish()
                finally:
                    output.close()
            finally:
                if lock is not None:
                    lock.release()
                output.remove_staging_folder()
        return self.summary

    def _skip_rows_done(self, rows: Iterator[Row], table: Table, resume_point: Any) -> None:
        """With --resume, consume the rows an earlier run already wrote and count them as done."""
        self.summary.rows = self.summary.errors = 0
        self._chunks_written = 0
        labels = len(self.classifier.label_names) if self.classifier is not None else 0
        self.summary.tally = Tally.empty(labels)
        if resume_point is None:
            return
        skipped = sum(1 for _ in islice(rows, resume_point.rows_done))
        if skipped != resume_point.rows_done:
            raise InputError(
                f"has {skipped} rows but the earlier run had already written {resume_point.rows_done}; "
                "run without --resume",
                table.path,
            )
        self.summary.resumed_from = resume_point.rows_done
        self.summary.rows, self.summary.errors = resume_point.rows_done, resume_point.errors
        self.summary.tally = Tally.from_dict(resume_point.tallies, labels)

    def _publish_chunk(self, output: Any, formatter: Any, result: ChunkResult, scored_rows: int, table: Table,
                       on_progress: Optional[Callable], after_chunk: Optional[Callable]) -> None:
        """Write one scored chunk, checkpoint it and report progress: the same for every engine."""
        output.write(formatter.format_chunk(result))
        self.summary.rows += len(result.row_numbers)
        self.summary.errors += len(result.row_numbers) - scored_rows
        tally = self.summary.tally
        if tally is not None and self.classifier is not None:
            tally.add_chunk(result.errors, result.probabilities, self.classifier.thresholds)
        output.checkpoint(self.summary.rows, self.summary.errors, tally.to_dict() if tally is not None else None)
        self._chunks_written += 1
        if on_progress is not None:
            on_progress(self.summary.rows, self.summary.errors, table.bytes_read, table.size)
        if after_chunk is not None:
            after_chunk(self._chunks_written)

    def _stream(self, table, text_column, id_columns, formatter, output, resume_point, on_progress, after_chunk) -> None:
        classifier = self.classifier
        assert classifier is not None
        rows = table.rows()
        self._skip_rows_done(rows, table, resume_point)
        for chunk in chunks_of(rows, self.options.chunk_size):
            numbers, ids, row_errors, texts = split_chunk(chunk, text_column, id_columns)
            probabilities = classifier.predict_proba(texts, chunk_size=None)
            self._publish_chunk(output, formatter, ChunkResult(numbers, ids, row_errors, probabilities), len(texts),
                                table, on_progress, after_chunk)


def _finisher(fmt: str) -> Optional[Callable[[str, str], None]]:
    """What turns the finished partial file into the output: Parquet's conversion, else nothing."""
    if fmt != "parquet":
        return None
    from mlbert.io.parquet_output import write_parquet

    return write_parquet


def run_batch(options: BatchOptions, on_progress: Optional[ProgressCallback] = None) -> Summary:
    """Library entry point: the same job the CLI runs, without click."""
    job = BatchJob(options)
    job.prepare()
    return job.run(on_progress)

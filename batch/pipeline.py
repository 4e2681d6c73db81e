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

import time
from itertools import islice
from typing import Any, Callable, Dict, Iterator, Optional


from mlbert.batch.fingerprint import job_fingerprint
from mlbert.batch.job import (BatchOptions, ProgressCallback, Summary, check_rows_out, chunks_of, counted,
                              parse_thresholds, pick_id_columns, pick_text_column, split_chunk)
from mlbert.batch.run_report import Tally
from mlbert.errors import InputError, UsageError
from mlbert.io.decoding import normalise_encoding
from mlbert.io.formats import finisher, make_formatter, output_format, output_gzip
from mlbert.io.lock import OutputLock
from mlbert.io.readers import Row, Table, open_table
from mlbert.io.records import ROW_ID, ChunkResult
from mlbert.io.storage import location_key
from mlbert.io.writers import OutputFile
from mlbert.runtime.classifier import Classifier, load


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
        normalise_encoding(o.encoding)
        fmt = output_format(o.output, o.output_format)
        output_gzip(o.output, fmt)  # a .gz name for a format that compresses itself is refused
        stream = self._output_file(fmt).is_stream
        if fmt == "parquet" and stream:
            raise UsageError(f"Parquet output needs a file (-o FILE.parquet) that can be replaced: it is not "
                             f"written into {'stdout' if o.output == '-' else o.output}")
        if o.resume and stream and o.output != "-":
            raise UsageError(f"--resume needs an output file that can be replaced: {o.output} is written straight "
                             "into, so there is nothing to resume")

    def _output_file(self, fmt: str, fingerprint: Optional[Dict[str, Any]] = None) -> OutputFile:
        o = self.options
        return OutputFile(o.output, fingerprint, finish=finisher(fmt), staging_dir=o.staging_dir,
                          compress=output_gzip(o.output, fmt))

    def _check_destination(self) -> None:
        """The output (its folder, where its lock goes, its bucket) can be written: known before the model loads."""
        self._output_file(output_format(self.options.output, self.options.output_format)).check_writable()

    def prepare(self) -> Classifier:
        """Load the model and run a warm-up batch before anything is opened for writing."""
        self._check_options()
        self._check_destination()
        o = self.options
        classifier = load(o.model, o.device, threads=o.threads, streams=o.streams, token_budget=o.token_budget)
        classifier.warm_up()
        classifier.thresholds = parse_thresholds(o.thresholds, classifier.label_names, classifier.thresholds)
        self.summary.provider = classifier.provider
        self.summary.model = classifier.description
        self.summary.notes.extend(classifier.notes)
        self.classifier = classifier
        return classifier

    def adopt(self, prepared: "BatchJob") -> None:
        """Use the model another (prepared) job loaded: an inbox loads it once for all files."""
        self._check_options()
        self._check_destination()
        self.classifier = prepared.classifier
        self.summary.provider = prepared.summary.provider
        self.summary.model = prepared.summary.model

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
        with open_table(o.input, o.format, o.header, default_format="text", encoding=o.encoding) as table:
            choice = pick_text_column(table, o.text_column)
            self.summary.text_column = choice
            id_columns = pick_id_columns(table, o.id_columns, choice.name)
            table.use_columns([choice.name] + [c for c in id_columns if c != ROW_ID])
            formatter = make_formatter(fmt, id_columns, classifier.label_names, classifier.thresholds,
                                       scores=o.scores, top_k=o.top_k, id_types=table.column_types)
            output = self._output_file(fmt, self._fingerprint(fmt) if o.output != "-" else {})
            output.check_writable()
            self.summary.output_note = output.note
            lock = None if output.is_stream else OutputLock(output.local_path)
            if lock is not None:
                lock.acquire()
            try:
                self._write(table, (choice.name, id_columns), formatter, output, started, (on_progress, after_chunk))
            finally:
                if lock is not None:
                    lock.release()
                output.remove_staging_folder()
        return self.summary

    def _write(self, table: Table, columns: Any, formatter: Any, output: OutputFile, started: float,
               hooks: Any) -> None:
        """Stream every row into ``output`` and publish it once rows in == rows out is checked."""
        o = self.options
        resume_point = output.read_resume_point() if o.resume else None
        if o.resume and output.resume_note:
            self.summary.notes.append(output.resume_note)
        output.open(formatter.header(), resume_point)
        try:
            self._stream(table, columns[0], columns[1], formatter, output, resume_point, *hooks)
            self.summary.seconds = time.monotonic() - started
            check_rows_out(self.summary, table.path)
            output.publish()
        finally:
            output.close()

    def _skip_rows_done(self, rows: Iterator[Row], table: Table, resume_point: Any) -> None:
        """With --resume, consume the rows an earlier run already wrote and count them as done."""
        self.summary.rows = self.summary.errors = self.summary.rows_read = 0
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
        rows = counted(table.rows(), self.summary)
        self._skip_rows_done(rows, table, resume_point)
        for chunk in chunks_of(rows, self.options.chunk_size):
            numbers, ids, row_errors, texts = split_chunk(chunk, text_column, id_columns)
            probabilities = classifier.predict_proba(texts, chunk_size=None)
            self._publish_chunk(output, formatter, ChunkResult(numbers, ids, row_errors, probabilities), len(texts),
                                table, on_progress, after_chunk)


def run_batch(options: BatchOptions, on_progress: Optional[ProgressCallback] = None) -> Summary:
    """Library entry point: the same job the CLI runs, without click."""
    job = BatchJob(options)
    job.prepare()
    return job.run(on_progress)

"""``mlb-batch --engine ray``: the same job with the model calls spread over a pool of Ray actors.

Why it is built this way: "rows in == rows out" and byte-identical output matter more
than raw speed. The driver reads the input with the same readers and cuts it into the
same chunks as the local engine (``job.split_chunk``: same ids, same error records);
only the texts of each chunk travel to an actor (``ray_pool.ActorPool``), which scores
the whole chunk in one ``Classifier.predict_proba`` call exactly as the local engine does.
A Parquet input is not even read by the driver: its footer gives the chunk boundaries and
each actor reads its own rows (``ray_parquet``). The driver takes the results back in
input order and writes them with the same ``RecordFormatter`` and ``OutputFile`` (atomic
publish, lock, checkpoints, ``--resume``). A lost actor or node costs only the chunk it
held, which another actor scores again with the same result (``ray_pool``).

Rows per actor call: the local engine's ``--chunk-size`` (4096) would make a file of a few
thousand rows one chunk for one actor while the others idle, so by default the batch is
sized from the input's rows and the pool's size (``default_batch_size``) and the summary
says which it was: the local engine run with that ``--chunk-size`` writes the same bytes.

The model file is read once on the driver and shipped through Ray's object store; actors
build their onnxruntime session from the bytes, so nothing is written to a worker's disk
and worker machines need mlbert installed but not the model path.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from itertools import islice, repeat
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from mlbert.runtime.classifier import Classifier, load
from mlbert.errors import MlbError, UsageError
from mlbert.io.formats import detect_format
from mlbert.batch.job import BatchOptions, chunks_of, counted, parse_thresholds, split_chunk
from mlbert.batch.pipeline import BatchJob
from mlbert.batch.ray.cluster import RayOptions, start_ray
from mlbert.batch.ray.parquet import can_open_parquet, parquet_rows, parquet_slices
from mlbert.batch.ray.pool import ActorPool, ActorSpec, RayUnavailable, Work
from mlbert.io.readers import open_table
from mlbert.io.records import ChunkResult
from mlbert.io.writers import OutputFile

__all__ = ["RayBatchJob", "RayOptions", "default_batch_size"]

# Actor calls each actor should get from one file when the batch is sized from the input:
# enough that no actor idles for long at the end of a file, few enough that each batch
# stays large (the token budget packs a large batch with less padding).
CALLS_PER_ACTOR = 4
# Smallest batch sized from the input: below it the per-call cost outweighs an idle actor.
MIN_BATCH_ROWS = 64
# Actors listed by name in the summary; more are summed up.
LISTED_ACTORS = 8


def default_batch_size(rows: Optional[int], actors: int, limit: int) -> int:
    """Rows per actor call for a file of ``rows`` rows (None: unknown) and ``actors`` actors, at most ``limit``."""
    if rows is None:
        return limit
    per_call = math.ceil(rows / (max(1, actors) * CALLS_PER_ACTOR))
    return max(1, min(limit, max(MIN_BATCH_ROWS, per_call)))


def count_rows(options: BatchOptions, limit: int) -> Optional[int]:
    """Data rows in the input, counting at most ``limit`` (a Parquet footer knows); None for stdin."""
    if options.input == "-":
        return None
    if detect_format(options.input, options.format, default="text").format == "parquet":
        return parquet_rows(options.input)
    with open_table(options.input, options.format, options.header, default_format="text",
                    encoding=options.encoding) as table:
        return sum(1 for _ in islice(table.rows(), limit))


def recorded_chunk_size(output: str) -> Optional[int]:
    """The chunk size an earlier, interrupted run of this output used (its progress file), if any."""
    if output == "-":
        return None
    try:
        with open(OutputFile(output).progress_path, "r", encoding="utf-8") as f:
            size = json.load(f)["fingerprint"]["execution"]["chunk_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and size >= 1 else None


@dataclass
class ScoreTexts:
    """A chunk's texts, sent to an actor: probabilities back, float32, one row per text."""

    texts: List[str]

    def score(self, classifier: Classifier) -> np.ndarray:
        return np.ascontiguousarray(classifier.predict_proba(self.texts, chunk_size=None), dtype=np.float32)


class _RowShare:
    """Progress for an input the driver does not read (Parquet): the share of rows done, in bytes."""

    def __init__(self, size: Optional[int], total_rows: int, job: "RayBatchJob"):
        self.size, self.total_rows, self.job = size, total_rows, job

    @property
    def bytes_read(self) -> int:
        if not self.size or not self.total_rows:
            return 0
        return int(self.size * self.job.summary.rows / self.total_rows)


class RayBatchJob(BatchJob):
    """``BatchJob`` whose chunks are scored by a pool of Ray actors; everything else is shared."""

    def __init__(self, options: BatchOptions, ray_options: Optional[RayOptions] = None):
        super().__init__(options)
        self.ray_options = ray_options or RayOptions()
        if self.ray_options.batch_size is not None and self.ray_options.batch_size < 1:
            raise UsageError(f"--ray-batch-size must be at least 1, not {self.ray_options.batch_size}")
        if self.ray_options.concurrency is not None and self.ray_options.concurrency < 1:
            raise UsageError(f"--ray-concurrency must be at least 1, not {self.ray_options.concurrency}")
        self.max_batch = options.chunk_size  # --chunk-size caps a batch sized from the input
        self.pool: Optional[ActorPool] = None
        self.actor_rows: Counter = Counter()

    def prepare(self) -> Classifier:
        """Check the model on the driver (CPU, one thread: header, labels, a warm-up batch), then start the actors."""
        self._check_options()
        o = self.options
        classifier = load(o.model, "cpu", threads=1, token_budget=o.token_budget)
        classifier.warm_up()
        classifier.thresholds = parse_thresholds(o.thresholds, classifier.label_names, classifier.thresholds)
        self.classifier = classifier
        self.summary.model = classifier.description
        self.pool = self._start_pool(classifier.token_budget)
        self.summary.provider = self._describe()
        return classifier

    def adopt(self, prepared: BatchJob) -> None:
        super().adopt(prepared)
        assert self.classifier is not None
        self.pool = getattr(prepared, "pool", None) or self._start_pool(self.classifier.token_budget)

    def close(self) -> None:
        """Stop the actors (an inbox's jobs share them: close once, after the last file)."""
        if self.pool is not None:
            self.pool.close()

    def _start_pool(self, cpu_budget: int) -> ActorPool:
        o, r = self.options, self.ray_options
        ray = start_ray(r)
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        if o.device == "cuda" and gpus < 1:
            raise MlbError("--device cuda: the Ray cluster has no GPU; use --device cpu or auto")
        use_gpu = o.device == "cuda" or (o.device == "auto" and gpus >= 1)
        threads = o.threads or 1
        if r.concurrency:
            size = r.concurrency
        elif use_gpu:
            size = max(1, int(gpus))
        else:
            size = max(1, int(float(resources.get("CPU", 1.0)) // threads))
        with open(o.model, "rb") as f:  # type: ignore[arg-type]
            model_ref = ray.put(f.read())
        spec = ActorSpec(
            model_ref=model_ref, device="cuda" if use_gpu else "cpu", threads=threads,
            # CPU actors use the driver's budget (the local engine's batches); GPU actors their own default.
            token_budget=o.token_budget if use_gpu else cpu_budget, num_gpus=1.0 if use_gpu else 0.0,
        )
        pool = ActorPool(ray, spec, size)
        pool.start()
        return pool

    def _batch_size(self) -> int:
        """--ray-batch-size; else, on --resume, the interrupted run's; else sized from the input."""
        assert self.pool is not None
        o, r = self.options, self.ray_options
        if r.batch_size:
            return r.batch_size
        recorded = recorded_chunk_size(o.output) if o.resume else None
        if recorded:
            return recorded
        actors = self.pool.size
        return default_batch_size(count_rows(o, self.max_batch * actors * CALLS_PER_ACTOR), actors, self.max_batch)

    def _fingerprint(self, fmt: str) -> Any:
        """As the local engine's, with the actors' settings: a run of either engine with the same
        chunk size, threads, token budget and provider resumes the other's."""
        assert self.pool is not None
        fingerprint = super()._fingerprint(fmt)
        fingerprint["execution"].update(
            token_budget=self.pool.token_budget, provider=self.pool.provider, threads=self.pool.spec.threads)
        return fingerprint

    def run(self, on_progress: Optional[Callable] = None, after_chunk: Optional[Callable[[int], None]] = None) -> Any:
        if self.classifier is None:
            self.prepare()
        assert self.pool is not None
        self.options.chunk_size = self._batch_size()
        self.actor_rows = Counter()
        self.pool.take_notes()
        try:
            summary = super().run(on_progress, after_chunk)
        except RayUnavailable as exc:
            o = self.options
            keep = "" if o.output == "-" else (
                f"; {o.output} is unchanged and --resume continues after row {self.summary.rows}")
            raise MlbError(f"{exc}{keep}") from None
        summary.notes.extend(self.pool.take_notes())
        summary.provider = self._describe()
        return summary

    def _describe(self) -> str:
        """The summary's engine part: provider, batch size, the actors that scored rows and how many each."""
        assert self.pool is not None
        head = f"ray ({self.pool.provider}, {self.options.chunk_size}-row batches"
        scored = sorted(((label, n) for label, n in self.actor_rows.items() if n),
                        key=lambda item: int(item[0].split()[0].lstrip("#")))
        if not scored:
            return f"{head}, {self.pool.size} actors)"
        if len(scored) <= LISTED_ACTORS:
            listing = ", ".join(f"{label} {n}" for label, n in scored)
        else:
            counts = [n for _, n in scored]
            listing = f"{min(counts)} to {max(counts)} each"
        return f"{head}; {len(scored)} actor{'s' if len(scored) > 1 else ''} scored rows: {listing})"

    def _actors_read(self, table: Any) -> bool:
        """Whether the actors read the input themselves: a Parquet file every actor can open."""
        assert self.pool is not None
        if table.format.format != "parquet":
            return False
        answers = self.pool.on_every_actor(can_open_parquet, table.path)
        if answers and all(answers):
            return True
        self.summary.notes.append(f"not every Ray actor can open {table.path} (a filesystem they do not share?): "
                                  "its rows went to them through the driver")
        return False

    def _stream(self, table, text_column, id_columns, formatter, output, resume_point, on_progress, after_chunk) -> None:
        if self._actors_read(table):
            works, progress = self._parquet_works(table, text_column, id_columns, resume_point)
        else:
            rows = counted(table.rows(), self.summary)
            self._skip_rows_done(rows, table, resume_point)
            works, progress = self._text_works(rows, text_column, id_columns), table
        assert self.pool is not None and self.classifier is not None
        labels = len(self.classifier.label_names)
        for work, result, actor in self.pool.scored_in_order(works):
            numbers, ids, row_errors, probabilities = work.context if result is None else _unpack(work, result)
            if probabilities is None:
                probabilities = np.empty((0, labels), dtype=np.float32)
            expected = sum(1 for e in row_errors if e is None)
            if probabilities.shape != (expected, labels):
                raise MlbError(f"--engine ray: chunk {work.index + 1} came back with {probabilities.shape[0]} "
                               f"rows, not {expected}")
            self.actor_rows[actor] += expected
            self._publish_chunk(output, formatter, ChunkResult(numbers, ids, row_errors, probabilities), expected,
                                progress, on_progress, after_chunk)

    def _text_works(self, rows: Iterator[Any], text_column: str, id_columns: List[str]) -> Iterator[Work]:
        for index, chunk in enumerate(chunks_of(rows, self.options.chunk_size)):
            numbers, ids, row_errors, texts = split_chunk(chunk, text_column, id_columns)
            yield Work(index, ScoreTexts(texts) if texts else None, (numbers, ids, row_errors, None))

    def _parquet_works(self, table: Any, text_column: str, id_columns: List[str], resume_point: Any):
        total = parquet_rows(table.path)
        # The rows an earlier run wrote are counted, not read: the footer knows how many there are.
        self._skip_rows_done(repeat(None, total), table, resume_point)
        self.summary.rows_read = total  # the actors read them; the footer says how many there are
        slices = parquet_slices(table.path, self.summary.resumed_from, self.options.chunk_size, text_column, id_columns)
        works = (Work(index, piece) for index, piece in enumerate(slices))
        return works, _RowShare(table.size, total, self)


def _unpack(work: Work, result: Any):
    """(row numbers, ids, errors, probabilities) of a scored chunk, from the driver (texts) or the actor (Parquet)."""
    if isinstance(result, np.ndarray):
        numbers, ids, row_errors, _ = work.context
        return numbers, ids, row_errors, result
    return result

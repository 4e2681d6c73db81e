"""``mlb-batch --engine ray``: the same job with the model calls spread over a Ray Data actor pool.

Why it is built this way: "rows in == rows out" and byte-identical output matter more
than raw speed. So the driver reads the input with the same readers and cuts it into the
same chunks as the local engine (``batch.pipeline.split_chunk``: same ids, same error
records); only the texts of each chunk travel, as one row of a Ray Dataset, to a pool of
actors, each holding one ``Classifier`` (the Python API's object, the local
engine's code) and scoring a whole chunk in one call, exactly as the local engine does.
The driver takes the results back in input order and writes them with the same
``RecordFormatter`` and ``OutputFile`` (atomic publish, lock, checkpoints, ``--resume``).

The input is sent in windows of chunks (``window_chunks``) so the driver's memory stays
bounded by the window, not the file; each window is one Ray Dataset execution, which
starts its actor pool and loads the model once per actor (a fraction of a second for
MiniLM, paid once per ~100k rows by default).

The model file is read once on the driver and shipped through Ray's object store, so
workers on other machines need mlb installed but not the model path.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .errors import MlbError, UsageError, first_line, raise_errors
from .pipeline import BatchJob, BatchOptions, chunks_of, parse_thresholds, split_chunk
from .cpus import available_cpus
from .classifier import Classifier, load
from .writers import ChunkResult

INSTALL_HINT = "pip install 'mlbert[ray]' (or pip install 'ray[data]>=2.40,<3')"
# Chunks sent to the pool per Ray Dataset execution, per actor: enough to keep every
# actor busy and amortise the pool's start, few enough to bound the driver's memory.
WINDOW_CHUNKS_PER_ACTOR = 16


@dataclass
class RayOptions:
    """The Ray engine's own settings (the rest is ``BatchOptions``)."""

    address: Optional[str] = None  # join this cluster ("auto", "ray://host:10001"); None: start a local one
    concurrency: Optional[int] = None  # actors; default: CPUs (or GPUs) in the cluster / per-actor share
    batch_size: Optional[int] = None  # rows per actor call; default: --chunk-size
    num_cpus: Optional[int] = None  # CPUs of a local instance; default: the CPUs this process may use


def _ray():
    # Ray Data logs each execution's plan at INFO on stderr; cron mail wants errors only.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine ray needs Ray Data: {INSTALL_HINT}") from None
    return ray


def start_ray(options: RayOptions, quiet: bool = True) -> Any:
    """Join ``options.address`` or start a local instance, once per process; returns ``ray``."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = dict(
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
        try:
            if options.address:
                ray.init(address=options.address, **kwargs)
            else:
                # "local": always a new instance of our own, never one found running on this machine.
                ray.init(address="local", num_cpus=options.num_cpus or available_cpus(), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = options.address or "a local instance"
            raise MlbError(f"--engine ray: cannot start or join Ray ({where}): {first_line(exc)}") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


class ScoreChunks:
    """Ray Data actor: one onnxruntime session, whole chunks of texts in, probabilities out.

    ``model`` is a one-element list holding the ObjectRef of the model's bytes (a list so
    Ray passes the reference, not the value, through the constructor).
    """

    def __init__(self, model: List[Any], model_name: str, device: str, threads: int, token_budget: Optional[int]):
        import ray

        # onnxruntime builds the session from the bytes: no copy of the model on the worker's disk.
        self.classifier = load(ray.get(model[0]), device, threads=threads, token_budget=token_budget)
        self.classifier.warm_up()

    def __call__(self, batch: Any) -> Dict[str, np.ndarray]:
        indices = batch.column("index").to_pylist()
        texts = batch.column("texts").to_pylist()
        probs = []
        for chunk_texts in texts:
            scores = self.classifier.predict_proba(list(chunk_texts), chunk_size=None)
            probs.append(np.ascontiguousarray(scores, dtype=np.float32).tobytes())
        return {
            "index": np.asarray(indices, dtype=np.int64),
            "probs": np.array(probs, dtype=object),
            "provider": np.array([self.classifier.provider] * len(indices), dtype=object),
        }


@dataclass
class _Pool:
    """What every window's Dataset needs, decided once per process (shared by an inbox's files)."""

    model_ref: Any
    model_name: str
    device: str
    threads: int
    num_gpus: float
    concurrency: int
    token_budget: Optional[int]

    @property
    def window_chunks(self) -> int:
        return max(4, WINDOW_CHUNKS_PER_ACTOR * self.concurrency)


def _ray_failure(exc: BaseException) -> MlbError:
    """The MlbError an actor raised (bad device, damaged model), else one line about Ray."""
    seen = set()
    stack: List[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MlbError):
            return current
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    text = str(exc).strip()
    for line in text.splitlines():  # Ray's messages carry the worker's traceback; keep the error line
        if "Error:" in line and not line.startswith(" "):
            text = line.strip()
    first = text.splitlines()[-1] if text else type(exc).__name__
    return MlbError(f"--engine ray: the Ray job failed ({first[-300:]}); MLB_RAISE_ERRORS=1 shows the traceback")


class RayBatchJob(BatchJob):
    """``BatchJob`` whose chunks are scored by a Ray Data actor pool; everything else is shared."""

    def __init__(self, options: BatchOptions, ray_options: Optional[RayOptions] = None):
        super().__init__(options)
        self.ray_options = ray_options or RayOptions()
        if self.ray_options.batch_size is not None:
            if self.ray_options.batch_size < 1:
                raise UsageError(f"--ray-batch-size must be at least 1, not {self.ray_options.batch_size}")
            options.chunk_size = self.ray_options.batch_size
        if self.ray_options.concurrency is not None and self.ray_options.concurrency < 1:
            raise UsageError(f"--ray-concurrency must be at least 1, not {self.ray_options.concurrency}")
        self.pool: Optional[_Pool] = None

    def prepare(self) -> Classifier:
        """Check the model on the driver (CPU, one thread: header, labels, a warm-up batch), then Ray."""
        self._check_options()
        o = self.options
        classifier = load(o.model, "cpu", threads=1, token_budget=o.token_budget)
        classifier.warm_up()
        classifier.thresholds = parse_thresholds(o.thresholds, classifier.label_names, classifier.thresholds)
        self.classifier = classifier
        self.pool = self._start_pool(classifier.token_budget)
        self.summary.provider = f"ray ({self.pool.concurrency} actors)"
        return classifier

    def adopt(self, prepared: BatchJob) -> None:
        super().adopt(prepared)
        assert self.classifier is not None
        self.pool = getattr(prepared, "pool", None) or self._start_pool(self.classifier.token_budget)

    def _start_pool(self, cpu_budget: int) -> _Pool:
        o, r = self.options, self.ray_options
        ray = start_ray(r)
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        if o.device == "cuda" and gpus < 1:
            raise MlbError("--device cuda: the Ray cluster has no GPU; use --device cpu or auto")
        use_gpu = o.device == "cuda" or (o.device == "auto" and gpus >= 1)
        threads = o.threads or 1
        if r.concurrency:
            concurrency = r.concurrency
        elif use_gpu:
            concurrency = max(1, int(gpus))
        else:
            concurrency = max(1, int(float(resources.get("CPU", 1.0)) // threads))
        with open(o.model, "rb") as f:  # type: ignore[arg-type]
            model_ref = ray.put(f.read())
        return _Pool(
            model_ref=model_ref,
            model_name=os.path.basename(o.model or "model.onnx"),
            device=("cuda" if use_gpu else "cpu"),
            threads=threads,
            num_gpus=1.0 if use_gpu else 0.0,
            concurrency=concurrency,
            # CPU actors use the driver's budget (the local engine's batches); GPU actors their own default.
            token_budget=o.token_budget if use_gpu else cpu_budget,
        )

    def _score(self, window: Sequence[List[str]]) -> Iterator[np.ndarray]:
        """Probabilities for each chunk of texts in ``window``, yielded in order as they arrive."""
        pool = self.pool
        assert pool is not None and self.classifier is not None
        labels = len(self.classifier.label_names)
        todo = [{"index": i, "texts": list(texts)} for i, texts in enumerate(window) if texts]
        results: Dict[int, np.ndarray] = {}
        rows: Iterator[Dict[str, Any]] = iter(())
        if todo:
            ray = _ray()
            items = ray.data.from_items(todo, override_num_blocks=len(todo))
            arguments: Dict[str, Any] = dict(
                batch_size=1,
                batch_format="pyarrow",
                zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=min(pool.concurrency, len(todo))),
                num_cpus=pool.threads,
                num_gpus=pool.num_gpus,
                fn_constructor_kwargs=dict(
                    model=[pool.model_ref], model_name=pool.model_name, device=pool.device,
                    threads=pool.threads, token_budget=pool.token_budget,
                ),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "ray_remote_args is deprecated" (Ray 2.5x-2.63)
                try:
                    # A failed actor fails the run with its error: no silent restart (which
                    # would also need the constructor's arguments kept in the object store).
                    dataset = items.map_batches(ScoreChunks, max_restarts=0, **arguments)
                except TypeError:  # a Ray that no longer takes remote args as keywords
                    dataset = items.map_batches(ScoreChunks, **arguments)
            rows = iter(dataset.iter_rows())
        for i, texts in enumerate(window):
            if not texts:
                yield np.empty((0, labels), dtype=np.float32)
                continue
            while i not in results:
                try:
                    row = next(rows)
                except StopIteration:
                    raise MlbError(f"--engine ray: the Ray job returned no result for chunk {i}") from None
                except MlbError:
                    raise
                except Exception as exc:
                    if raise_errors():
                        raise
                    raise _ray_failure(exc) from None
                probs = np.frombuffer(row["probs"], dtype=np.float32).reshape(-1, labels)
                results[int(row["index"])] = probs
                self.summary.provider = f"ray ({pool.concurrency} actors, {row['provider']})"
            probs = results.pop(i)
            if probs.shape[0] != len(texts):
                raise MlbError(f"--engine ray: chunk {i} came back with {probs.shape[0]} rows, not {len(texts)}")
            yield probs

    def _stream(self, table, text_column, id_columns, formatter, output, resume_point, on_progress, after_chunk) -> None:
        assert self.pool is not None
        rows = table.rows()
        self._skip_rows_done(rows, table, resume_point)
        window: List[Any] = []

        def flush() -> None:
            scored = self._score([parts[3] for parts in window])
            for (numbers, ids, row_errors, texts), probabilities in zip(window, scored):
                self._publish_chunk(output, formatter, ChunkResult(numbers, ids, row_errors, probabilities),
                                    len(texts), table, on_progress, after_chunk)
            window.clear()

        for chunk in chunks_of(rows, self.options.chunk_size):
            window.append(split_chunk(chunk, text_column, id_columns))
            if len(window) >= self.pool.window_chunks:
                flush()
        if window:
            flush()

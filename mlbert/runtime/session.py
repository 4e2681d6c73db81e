"""onnxruntime sessions: the provider table, threads, the model header, and ``Predictor``.

This is the only module that imports onnxruntime. Why it is careful:

* onnxruntime-gpu silently falls back to the CPU when an accelerator's provider cannot be
  created (missing libcublasLt, wrong cuDNN); ``--device cuda`` checks
  ``session.get_providers()`` after creation and fails with the reason instead.
* pip-installed NVIDIA wheels (``nvidia-cublas-cu13`` ...) are not on the loader path;
  ``onnxruntime.preload_dlls()`` loads them when they are present.
* threads follow the CPUs this process may really use (``cpus.available_cpus``), and on a
  CPU they run as *streams*: batches scored at once, each on its own share of the threads
  (``cpu_streams``).

Execution providers are rows of ``providers.PROVIDERS``: ``--device`` takes its choices
from it, ``auto`` tries the accelerators in table order and falls back to the CPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from mlbert.runtime.bucketing import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MULTIPLE, bucket_lengths, make_batches
from mlbert.runtime.cpus import available_cpus, batch_dependence_note, int8_note
from mlbert.runtime.encoder import EncodedChunk, Encoder
from mlbert.errors import MlbError, ModelFileError, UsageError, first_line, library_step
from mlbert.modelfile import ModelHeader
from mlbert.runtime.providers import CPU, DEVICES, PROVIDERS, Provider, provider_for

# A model: the path of an .onnx file, or its bytes (a Ray actor gets them through the object store).
ModelSource = Union[str, os.PathLike, bytes]


def _ort():
    import onnxruntime

    return onnxruntime


@contextlib.contextmanager
def _captured_stderr() -> Iterator[List[str]]:
    """Capture what native code writes to file descriptor 2 (onnxruntime's logger)."""
    lines: List[str] = []
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        yield lines
        return
    try:
        sys.stderr.flush()
    except Exception:
        pass
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield lines
        finally:
            try:
                sys.stderr.flush()
            except Exception:
                pass
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def _failure_reason(log_lines: List[str], provider: Provider) -> str:
    """The most useful line of onnxruntime's log about a provider that did not start."""
    needles = ("cannot open shared object file", "LoadLibrary failed", "CUDA failure", "cudaError",
               f"Failed to create {provider.name}")
    for needle in needles:
        for line in log_lines:
            if needle in line:
                start = line.find("error:")
                text = line[start + 6:].strip() if start >= 0 and needle == needles[0] else line.strip()
                return text[-300:]
    return ""


@dataclass
class LoadedModel:
    session: object
    header: ModelHeader
    provider: str
    threads: int
    input_dtypes: Dict[str, type]
    streams: int = 1  # batches run at once, each on threads // streams intra-op threads (CPU only)
    where: str = "model file"  # the path, for messages
    # One line each about how the file suits this machine (an int8 file made for another CPU) or what its
    # scores depend on (an int8 file quantized per batch).
    notes: List[str] = field(default_factory=list)


def session_options(threads: int, profile_prefix: Optional[str] = None):
    """The one set of onnxruntime session options (mlb-batch, the API, the export checks, the
    benchmarks' profiles): ``threads`` intra-op threads, one inter-op thread, every graph
    optimization, only errors logged; ``profile_prefix`` turns onnxruntime's profiler on."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def _create_session(source: ModelSource, where: str, providers: Sequence[str], threads: int):
    ort = _ort()
    model = source if isinstance(source, bytes) else os.fspath(source)
    try:
        return ort.InferenceSession(model, sess_options=session_options(threads), providers=list(providers))
    except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail, NoSuchFile ...
        message = first_line(exc)
        lowered = message.lower()
        if "protobuf" in lowered or "parsing" in lowered or "load model" in lowered:
            raise ModelFileError(
                f"{where}: not a readable ONNX model (damaged, truncated, or another kind of file)"
            ) from None
        raise ModelFileError(f"{where}: onnxruntime cannot load the model ({message})") from None


def _check_source(source: Optional[ModelSource], where: Optional[str] = None) -> str:
    """Refuse a missing or unreadable model before onnxruntime sees it; returns its name for messages
    (``where`` when given, else its path)."""
    if source is None or (not isinstance(source, bytes) and not os.fspath(source)):
        raise UsageError("no model given: pass --model FILE.onnx or set MLB_MODEL (mlb-batch and mlbert.load() "
                         "without either use the built-in goemotions model); to make your own, train with "
                         "`mlb-train --train DATA -o run/` and export it with `mlb-export run/ model.onnx`")
    if isinstance(source, bytes):
        if not source:
            raise ModelFileError(f"{where or 'model bytes'}: empty")
        return where or "model bytes"
    path = os.fspath(source)
    name = where or path
    if not os.path.exists(path):
        raise ModelFileError(f"{name}: model file not found")
    if os.path.isdir(path):
        raise ModelFileError(f"{name}: is a folder; pass the .onnx file written by mlb-export")
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"{name}: model file is not readable")
    return name


def _start_on(provider: Provider, source: ModelSource, where: str, threads: int, required: bool) -> Optional[Any]:
    """A session that asked for ``provider`` (onnxruntime falls back to the CPU when it cannot start it).

    None when this onnxruntime does not have the provider at all. ``required`` (``--device``
    named it) turns "did not start" into an error with the reason.
    """
    ort = _ort()
    if provider.name not in ort.get_available_providers():
        if required:
            raise MlbError(
                f"--device {provider.device}: this onnxruntime ({ort.__version__}) has no {provider.name}; "
                f"install onnxruntime-gpu, or use --device cpu"
            )
        return None
    with _captured_stderr() as log:
        if provider.preload is not None:
            provider.preload()
        session = _create_session(source, where, [provider.name, CPU], threads)
    if required and session.get_providers()[0] != provider.name:
        reason = _failure_reason(log, provider) or f"see onnxruntime's {provider.device} requirements"
        raise MlbError(
            f"--device {provider.device}: the {provider.device.upper()} provider could not be created ({reason}); "
            f"onnxruntime {ort.__version__} needs {provider.needs}, or use --device cpu"
        )
    return session


def _open_session(source: ModelSource, where: str, device: str, threads: int) -> Any:
    """The session on ``device``; ``auto``: the first accelerator in ``PROVIDERS`` that starts, else the CPU."""
    if device != "auto":
        provider = provider_for(device)
        if provider.name == CPU:
            return _create_session(source, where, [CPU], threads)
        return _start_on(provider, source, where, threads, required=True)
    fallback = None
    for provider in PROVIDERS:
        if provider.name == CPU:
            continue
        session = _start_on(provider, source, where, threads, required=False)
        if session is not None and session.get_providers()[0] == provider.name:
            return session
        fallback = fallback or session  # a session onnxruntime already fell back to the CPU with
    return fallback or _create_session(source, where, [CPU], threads)


def _read_header(session: Any, where: str) -> Tuple[ModelHeader, Dict[str, type]]:
    """The mlb header, checked against the graph's inputs and outputs; the input dtypes."""
    header = ModelHeader.from_metadata(session.get_modelmeta().custom_metadata_map, where=where)
    graph_inputs = {i.name: i for i in session.get_inputs()}
    missing = [name for name in header.input_names if name not in graph_inputs]
    if missing:
        raise ModelFileError(f"{where}: the header names graph inputs {missing} that the graph does not have")
    unfed = [name for name in graph_inputs if name not in header.input_names]
    if unfed:
        raise ModelFileError(f"{where}: the graph needs inputs {unfed} that the header does not name")
    outputs = {o.name: o for o in session.get_outputs()}
    if header.output_name not in outputs:
        raise ModelFileError(f"{where}: the graph has no output {header.output_name!r} (it has {', '.join(outputs)})")
    shape = outputs[header.output_name].shape
    if shape and isinstance(shape[-1], int) and shape[-1] != len(header.label_names):
        raise ModelFileError(
            f"{where}: the graph outputs {shape[-1]} scores per row but the header names "
            f"{len(header.label_names)} labels"
        )
    dtypes = {name: (np.int32 if graph_inputs[name].type == "tensor(int32)" else np.int64) for name in header.input_names}
    return header, dtypes


def cpu_streams(threads: int, streams: Optional[int] = None) -> int:
    """How many batches a CPU session scores at once (each on ``threads // streams`` threads).

    Why not one batch on all the threads: onnxruntime splits every operator of a batch (about
    200 of them in a 6-layer encoder) across its threads, which wait for each other after
    each one, so when another process takes a core every operator waits for the thread that
    lost it. Two streams, each a whole batch on its own half of the threads, do not wait for
    each other; the batches are the same, so are the scores, to the bit. Measured on 2 cores
    (docs/BENCHMARKS-streams.md): the same rows/s on an idle CPU, 1.63x (int8) and 1.28x
    (fp32) with a busy loop on one core. More than two streams on larger machines is for the
    user to measure (``--streams``).
    """
    if streams is not None:
        if streams < 1:
            raise UsageError(f"--streams must be at least 1, not {streams}")
        if streams > threads:
            raise UsageError(f"--streams {streams} is more than the {threads} threads it would share")
        return streams
    return 2 if threads >= 2 else 1


def load_model(source: Optional[ModelSource], device: str = "auto", threads: Optional[int] = None,
               streams: Optional[int] = None, where: Optional[str] = None) -> LoadedModel:
    """Open a model file (or its bytes) on ``device`` and read its mlb header; never fall back silently.

    ``where`` names the model in messages (default: its path)."""
    where = _check_source(source, where)
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: use one of {', '.join(DEVICES)}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    threads = threads or available_cpus()
    cpu_stream_count = 1 if device == "cuda" else cpu_streams(threads, streams)
    assert source is not None
    session = _open_session(source, where, device, threads // cpu_stream_count)
    header, dtypes = _read_header(session, where)
    provider = session.get_providers()[0]
    notes = [int8_note(header.quantization) if provider == CPU else None, batch_dependence_note(header.quantization)]
    return LoadedModel(session=session, header=header, provider=provider, threads=threads,
                       input_dtypes=dtypes, where=where, notes=[f"{where}: {note}" for note in notes if note],
                       streams=cpu_stream_count if provider == CPU else 1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    logits = np.asarray(logits, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0.0), -logits)).astype(np.float32)


class Predictor:
    """Texts in, per-label probabilities out, in the order given.

    Encodes the texts in one call, sorts them by token length, runs token-budget
    batches with a few padded lengths (``model.streams`` of them at once), and scatters
    the results back to input order.
    """

    def __init__(
        self,
        model: LoadedModel,
        token_budget: int,
        multiple: int = DEFAULT_MULTIPLE,
        max_rows: int = DEFAULT_MAX_BATCH_ROWS,
    ):
        if token_budget < model.header.max_length:
            raise UsageError(
                f"--token-budget {token_budget} is smaller than one row at the model's maximum length "
                f"({model.header.max_length} tokens)"
            )
        self.model = model
        self.header = model.header
        self.encoder = Encoder(model.header)
        self.token_budget = int(token_budget)
        self.multiple = int(multiple)
        self.max_rows = int(max_rows)
        self.num_labels = len(model.header.label_names)
        self._run = model.session.run
        self._output = [model.header.output_name]
        # onnxruntime releases the GIL in run(), and one session may run several batches at once.
        self._streams = (ThreadPoolExecutor(model.streams, thread_name_prefix="mlb-stream")
                         if model.streams > 1 else None)

    @property
    def provider(self) -> str:
        return self.model.provider

    def _feed(self, batch: EncodedChunk) -> Dict[str, np.ndarray]:
        feed: Dict[str, np.ndarray] = {}
        for name in self.header.input_names:
            dtype = self.model.input_dtypes[name]
            if name == "input_ids":
                feed[name] = batch.input_ids.astype(dtype, copy=False)
            elif name == "attention_mask":
                feed[name] = batch.attention_mask.astype(dtype, copy=False)
            elif name == "token_type_ids":
                types = batch.token_type_ids
                feed[name] = (types.astype(dtype, copy=False) if types is not None
                              else np.zeros(batch.input_ids.shape, dtype=dtype))
            else:
                raise ModelFileError(f"model header: do not know how to fill graph input {name!r}")
        return feed

    def logits_for(self, batch: EncodedChunk) -> np.ndarray:
        (logits,) = self._run(self._output, self._feed(batch))
        return logits

    def outputs_for(self, batch: EncodedChunk, names: Sequence[str]) -> List[np.ndarray]:
        """The graph's tensors ``names`` for one batch (the exporter's calibration reads inner activations)."""
        return list(self._run(list(names), self._feed(batch)))

    def predict_encoded(self, chunk: EncodedChunk) -> np.ndarray:
        """Probabilities (n, labels) float32 for an encoded chunk, in the chunk's order."""
        n = len(chunk)
        out = np.empty((n, self.num_labels), dtype=np.float32)
        if n == 0:
            return out

        def score(index: np.ndarray) -> None:  # batches hold disjoint rows: no two write the same one
            padded = int(bucket_lengths(chunk.lengths[index].max(keepdims=True), self.header.max_length, self.multiple)[0])
            out[index] = sigmoid(self.logits_for(chunk.batch(index, padded)))

        batches = make_batches(chunk.lengths, self.token_budget, self.header.max_length, self.multiple, self.max_rows)
        if self._streams is None or len(batches) < 2:
            for index in batches:
                score(index)
        else:
            list(self._streams.map(score, batches))  # re-raises the first batch's error
        return out

    def predict(self, texts: List[str]) -> np.ndarray:
        """Probabilities for raw (already preprocessed) texts."""
        return self.predict_encoded(self.encoder.encode(texts))

    def warm_up(self) -> None:
        """Run one batch before any output is opened, so a broken model or device fails first.

        On CUDA the batch is the largest the budget allows (an out-of-memory error shows
        now, not after an hour); on a CPU one short row is enough and costs milliseconds.
        """
        # A real row (with the label segment of a --label-input model), repeated and padded.
        sample = self.encoder.encode(["warm up"])
        if provider_for(self.provider).full_warm_up:
            rows = max(1, min(self.max_rows, self.token_budget // self.header.max_length))
            length = self.header.max_length
        else:
            rows, length = 1, max(min(16, self.header.max_length), int(sample.lengths[0]))
        with library_step("the model's warm-up batch", ModelFileError):
            logits = self.logits_for(sample.batch(np.zeros(rows, dtype=np.int64), length))
        if logits.ndim != 2 or logits.shape != (rows, self.num_labels):
            raise ModelFileError(
                f"the model returned scores of shape {tuple(logits.shape)} for {rows} rows; expected "
                f"({rows}, {self.num_labels})"
            )

"""onnxruntime sessions: providers, threads, the model header, and ``Predictor``.

This is the only module that imports onnxruntime. Why it is careful:

* onnxruntime-gpu silently falls back to the CPU when the CUDA provider cannot be
  created (missing libcublasLt, wrong cuDNN); ``--device cuda`` checks
  ``session.get_providers()`` after creation and fails with the reason instead.
* pip-installed NVIDIA wheels (``nvidia-cublas-cu12`` ...) are not on the loader path;
  ``onnxruntime.preload_dlls()`` loads them when they are present.
* ``os.cpu_count()`` ignores CPU affinity and container quotas, so a cron job in a
  2-CPU container would start 64 threads; threads follow ``sched_getaffinity`` and the
  cgroup ``cpu.max`` quota instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np

from .bucketing import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MULTIPLE,
    DEFAULT_TOKEN_BUDGET_CPU,
    DEFAULT_TOKEN_BUDGET_CUDA,
    bucket_lengths,
    make_batches,
)
from .encoder import EncodedChunk, Encoder
from .errors import MlbError, ModelFileError, UsageError, first_line
from .modelfile import ModelHeader

DEVICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 CFS files), None if unlimited."""
    try:
        with open(os.path.join(root, "cpu.max"), "r", encoding="ascii") as f:
            quota, _, period = f.read().strip().partition(" ")
        if quota != "max":
            return int(quota) / int(period or 100000)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), "r", encoding="ascii") as f:
            quota_us = int(f.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), "r", encoding="ascii") as f:
            period_us = int(f.read().strip())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def _ort():
    import onnxruntime

    return onnxruntime


def preload_cuda_libraries() -> bool:
    """Load CUDA/cuDNN from pip ``nvidia-*`` wheels when they are installed. Never raises."""
    ort = _ort()
    if not hasattr(ort, "preload_dlls") or importlib.util.find_spec("nvidia") is None:
        return False
    try:
        with _captured_stderr():
            ort.preload_dlls(directory="")
        return True
    except Exception:  # a partial install: the session creation reports what is missing
        return False


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


def _cuda_failure_reason(log_lines: List[str]) -> str:
    """The most useful line of onnxruntime's log about a failed CUDA provider."""
    for needle in ("cannot open shared object file", "LoadLibrary failed", "CUDA failure", "cudaError", "Failed to create CUDAExecutionProvider"):
        for line in log_lines:
            if needle in line:
                start = line.find("error:")
                text = line[start + 6:].strip() if start >= 0 and needle == "cannot open shared object file" else line.strip()
                return text[-300:]
    return ""


@dataclass
class LoadedModel:
    session: object
    header: ModelHeader
    provider: str
    threads: int
    input_dtypes: Dict[str, type]


def _session_options(threads: int):
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def _create_session(path: str, providers: List, threads: int):
    ort = _ort()
    try:
        return ort.InferenceSession(path, sess_options=_session_options(threads), providers=providers)
    except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail, NoSuchFile ...
        message = first_line(exc)
        lowered = message.lower()
        if "protobuf" in lowered or "parsing" in lowered or "load model" in lowered:
            raise ModelFileError(
                f"{path}: not a readable ONNX model (damaged, truncated, or another kind of file)"
            ) from None
        raise ModelFileError(f"{path}: onnxruntime cannot load the model ({message})") from None


def load_model(path: Optional[str], device: str = "auto", threads: Optional[int] = None) -> LoadedModel:
    """Open ``path`` on ``device`` and read its mlb header; raise clear errors, never fall back silently."""
    if not path:
        raise UsageError(
            "no model given: pass --model FILE.onnx or set MLB_MODEL. To make one, train with "
            "`mlb-train --train DATA -o run/` and export it with `mlb-export run/ model.onnx`"
        )
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: use one of {', '.join(DEVICES)}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a folder; pass the .onnx file written by mlb-export")
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"{path}: model file is not readable")
    threads = threads or available_cpus()
    ort = _ort()

    session = None
    if device in ("cuda", "auto"):
        has_cuda = CUDA in ort.get_available_providers()
        if not has_cuda and device == "cuda":
            raise MlbError(
                f"--device cuda: this onnxruntime ({ort.__version__}) has no CUDA provider; "
                "install onnxruntime-gpu, or use --device cpu"
            )
        if has_cuda:
            preload_cuda_libraries()
            with _captured_stderr() as log:
                session = _create_session(path, [CUDA, CPU], threads)
            if session.get_providers()[0] != CUDA:
                # auto keeps the session onnxruntime fell back to: it is a CPU session.
                if device == "cuda":
                    reason = _cuda_failure_reason(log) or "see onnxruntime's CUDA requirements"
                    raise MlbError(
                        f"--device cuda: the CUDA provider could not be created ({reason}); "
                        f"onnxruntime {ort.__version__} needs matching CUDA and cuDNN libraries "
                        "(pip install the nvidia-* wheels it lists), or use --device cpu"
                    )
    if session is None:
        session = _create_session(path, [CPU], threads)
    provider = session.get_providers()[0]

    metadata = session.get_modelmeta().custom_metadata_map
    header = ModelHeader.from_metadata(metadata, where=path)
    graph_inputs = {i.name: i for i in session.get_inputs()}
    missing = [name for name in header.input_names if name not in graph_inputs]
    if missing:
        raise ModelFileError(f"{path}: the header names graph inputs {missing} that the graph does not have")
    unfed = [name for name in graph_inputs if name not in header.input_names]
    if unfed:
        raise ModelFileError(f"{path}: the graph needs inputs {unfed} that the header does not name")
    outputs = {o.name: o for o in session.get_outputs()}
    if header.output_name not in outputs:
        raise ModelFileError(
            f"{path}: the graph has no output {header.output_name!r} (it has {', '.join(outputs)})"
        )
    shape = outputs[header.output_name].shape
    if shape and isinstance(shape[-1], int) and shape[-1] != len(header.label_names):
        raise ModelFileError(
            f"{path}: the graph outputs {shape[-1]} scores per row but the header names "
            f"{len(header.label_names)} labels"
        )
    dtypes = {
        name: (np.int32 if graph_inputs[name].type == "tensor(int32)" else np.int64) for name in header.input_names
    }
    return LoadedModel(session=session, header=header, provider=provider, threads=threads, input_dtypes=dtypes)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    logits = np.asarray(logits, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0.0), -logits)).astype(np.float32)


class Predictor:
    """Texts in, per-label probabilities out, in the order given.

    Encodes the texts in one call, sorts them by token length, runs token-budget
    batches with a few padded lengths, and scatters the results back to input order.
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
                feed[name] = np.zeros(batch.input_ids.shape, dtype=dtype)
            else:
                raise ModelFileError(f"model header: do not know how to fill graph input {name!r}")
        return feed

    def logits_for(self, batch: EncodedChunk) -> np.ndarray:
        (logits,) = self._run(self._output, self._feed(batch))
        return logits

    def predict_encoded(self, chunk: EncodedChunk) -> np.ndarray:
        """Probabilities (n, labels) float32 for an encoded chunk, in the chunk's order."""
        n = len(chunk)
        out = np.empty((n, self.num_labels), dtype=np.float32)
        if n == 0:
            return out
        for index in make_batches(chunk.lengths, self.token_budget, self.header.max_length, self.multiple, self.max_rows):
            padded = int(bucket_lengths(chunk.lengths[index].max(keepdims=True), self.header.max_length, self.multiple)[0])
            out[index] = sigmoid(self.logits_for(chunk.batch(index, padded)))
        return out

    def predict(self, texts: List[str]) -> np.ndarray:
        """Probabilities for raw (already preprocessed) texts."""
        return self.predict_encoded(self.encoder.encode(texts))

    def warm_up(self) -> None:
        """Run one batch before any output is opened, so a broken model or device fails first.

        On CUDA the batch is the largest the budget allows (an out-of-memory error shows
        now, not after an hour); on a CPU one short row is enough and costs milliseconds.
        """
        if self.provider == CUDA:
            rows = max(1, min(self.max_rows, self.token_budget // self.header.max_length))
            length = self.header.max_length
        else:
            rows, length = 1, min(16, self.header.max_length)
        ids = np.full((rows, length), self.encoder.pad_id, dtype=np.int64)
        mask = np.ones((rows, length), dtype=np.int64)
        try:
            logits = self.logits_for(EncodedChunk(ids, mask, np.full(rows, length, dtype=np.int64), self.encoder.pad_id))
        except MlbError:
            raise
        except Exception as exc:
            raise ModelFileError(f"the model failed on a warm-up batch ({first_line(exc)})") from None
        if logits.ndim != 2 or logits.shape != (rows, self.num_labels):
            raise ModelFileError(
                f"the model returned scores of shape {tuple(logits.shape)} for {rows} rows; expected "
                f"({rows}, {self.num_labels})"
            )


def default_token_budget(provider: str, max_length: int = 0) -> int:
    """The device's default budget, at least one row at the model's maximum length."""
    budget = DEFAULT_TOKEN_BUDGET_CUDA if provider == CUDA else DEFAULT_TOKEN_BUDGET_CPU
    return max(budget, int(max_length))


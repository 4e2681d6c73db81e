"""int8 quantization schemes, transformer fusions, and optimum's graph optimization levels.

Why these choices (measured in docs/BENCHMARKS.md and docs/EXPORT.md, "Which CPU an
int8 file suits" and "A row's scores depend on that row alone"):

* The default scheme, ``rowwise``, gives every row (token) of every matrix product's input
  its own activation scale (``exporter.rowwise``), so a text's scores depend on that text
  alone, whatever the batch, token budget, chunk size or engine; onnxruntime's
  ``quantize_dynamic`` (the schemes ``unfused``, ``portable``, ``vnni``, ``u8u8``, kept as
  options) takes one scale per batch tensor, so a batch-mate with large activations changes
  every other row's numbers (issue 25). It is calibrated on the comparison texts
  (``exporter.rowwise_plan``: SmoothQuant divisors and GPTQ weights, fixed per channel and
  per matrix, never per row) and runs on the same MLAS kernels at the same speed.
* Which int8 kernels onnxruntime runs depends on the serving CPU and on the file's
  signedness (``runtime.cpus``): unsigned activations x signed weights (U8S8) run on
  dot-product instructions where the CPU has them (VNNI, AMX, ARM) and on VPMADDUBSW on
  AVX2, which saturates with full-range 8-bit weights; unsigned weights (U8U8) run on
  slower widening kernels on x86. So ``rowwise`` and ``unfused`` write signed 7-bit weights
  (``reduce_range``), per output channel (which wins back the bit): the fast kernel on every
  CPU, and never a saturated sum, so the file computes on an AVX2 machine what the gate
  checked here.
* The graph is not fused first. onnxruntime's transformer fusions
  (``onnxruntime.transformers.optimizer``: Attention, SkipLayerNormalization, BiasGelu)
  before quantizing turn attention's projections into one ``QAttention``; measured side by
  side on the same weights (``benchmarks/bench_int8.py``, docs/BENCHMARKS.md), the fused
  file was no faster on GoEmotions-length texts and about 14% slower on tweet-length ones.
  The fused schemes (``portable``, ``vnni``) stay as options. optimum's quantizer cannot
  type the fused ``com.microsoft`` operators (onnx shape inference does not know them);
  onnxruntime's ``quantize_dynamic`` can, told that an untyped tensor is float
  (``DefaultTensorType``).
* Optimization levels are optimum's ``O1``..``O4``; ``O4`` turns the graph into fp16,
  which only runs (and can only be checked) on a CUDA GPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from mlbert.errors import MlbError, UsageError, library_step

QUANTIZE_MODES = ("none", "int8")
# The calibrated rowwise scheme reads at most this many of the comparison texts (X^T X of a
# 1,536-wide input wants well over 1,536 tokens; more rows only cost export time).
CALIBRATION_MAX_ROWS = 1024
OPTIMIZE_LEVELS = ("O1", "O2", "O3", "O4")
# Model types whose graphs onnxruntime's "bert" fusions know (BERT-like encoders).
FUSABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet")


@dataclass(frozen=True)
class Int8Scheme:
    """How an int8 file is made: activation scales, weight signedness and range, fusions first or not."""

    name: str
    weights: str  # "int8" (signed) or "uint8"
    reduce_range: bool  # 7-bit weights: VPMADDUBSW (AVX2, AVX-512 without VNNI) cannot saturate
    per_channel: bool  # one scale per output channel of each weight matrix
    fuse: bool  # onnxruntime's transformer fusions before quantizing
    suits: str  # which CPUs run it fast and exactly, in words
    fuse_attention: bool = True  # with fuse: attention as one (Q)Attention operator, or left as MatMuls
    # "rowwise": one activation scale per row (token), so a row depends on itself alone
    # (exporter.rowwise); "dynamic": onnxruntime's quantize_dynamic, one scale per batch tensor.
    method: str = "dynamic"
    calibrated: bool = False  # rowwise: SmoothQuant divisors and GPTQ weights from the comparison texts

    @property
    def row_independent(self) -> bool:
        return self.method == "rowwise"

    def settings(self) -> Dict[str, Any]:
        """The header's record of the scheme (``ModelHeader.quantization``; read by ``runtime.cpus``)."""
        return {
            "mode": "int8", "method": self.method, "config": self.name,
            "weights_dtype": "QInt8" if self.weights == "int8" else "QUInt8", "activations_dtype": "QUInt8",
            "reduce_range": self.reduce_range, "per_channel": self.per_channel, "fused": self.fuse,
            "fused_attention": self.fuse and self.fuse_attention,
            "activation_scales": "per row" if self.row_independent else "per batch tensor",
            "row_independent": self.row_independent,
            "tool": "mlbert.exporter.rowwise" if self.row_independent else "onnxruntime.quantization.quantize_dynamic",
        }


INT8_SCHEMES: Dict[str, Int8Scheme] = {s.name: s for s in (
    Int8Scheme("rowwise", "int8", reduce_range=True, per_channel=True, fuse=False, method="rowwise",
               calibrated=True,
               suits="every CPU: the U8S8 kernels of AVX2, AVX-512, VNNI, AMX and ARM64; one activation scale per "
                     "token, so a row's scores depend on that row alone"),
    Int8Scheme("rowwise-rtn", "int8", reduce_range=True, per_channel=True, fuse=False, method="rowwise",
               suits="as rowwise, with weights rounded to nearest and no calibration (no smoothing)"),
    Int8Scheme("unfused", "int8", reduce_range=True, per_channel=True, fuse=False,
               suits="every CPU: the U8S8 kernels of AVX2, AVX-512, VNNI, AMX and ARM64, without saturation; "
                     "one activation scale per batch, so a row's scores depend on its batch-mates"),
    Int8Scheme("portable", "int8", reduce_range=True, per_channel=True, fuse=True,
               suits="every CPU, as unfused, after onnxruntime's transformer fusions (QAttention)"),
    Int8Scheme("vnni", "int8", reduce_range=False, per_channel=True, fuse=True,
               suits="CPUs with int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX, ARM64); may saturate on AVX2"),
    Int8Scheme("u8u8", "uint8", reduce_range=False, per_channel=False, fuse=False,
               suits="every CPU, exactly, but on onnxruntime's slower widening kernels on x86"),
)}
DEFAULT_INT8_SCHEME = "rowwise"
QUANTIZE_CONFIGS = tuple(INT8_SCHEMES)


def pick_int8_scheme(explicit: Optional[str] = None) -> Int8Scheme:
    """The scheme named by ``--quantize-config``, else the default (the same file for every CPU)."""
    name = explicit or DEFAULT_INT8_SCHEME
    if name not in INT8_SCHEMES:
        raise UsageError(f"--quantize-config {name!r}: use one of {', '.join(QUANTIZE_CONFIGS)}")
    return INT8_SCHEMES[name]


def fusable(hf_config: Mapping[str, Any]) -> bool:
    """Whether onnxruntime's BERT fusions know this checkpoint's graph (``config.json``'s model_type)."""
    return str(hf_config.get("model_type", "")) in FUSABLE_MODEL_TYPES


def fuse_encoder(src: str, dst: str, hf_config: Mapping[str, Any], attention: bool = True) -> Dict[str, Any]:
    """onnxruntime's transformer fusions of ``src`` into ``dst``; the fused operator counts.

    Python-level fusions only (``opt_level=0``): the file stays free of one machine's
    graph rewrites, and each session still applies its own ``ORT_ENABLE_ALL``. A graph
    the fusions do not recognise comes out unfused (its counts are zero), not broken.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    if not fusable(hf_config):
        raise UsageError(f"transformer fusions know {', '.join(FUSABLE_MODEL_TYPES)} graphs, not "
                         f"{hf_config.get('model_type')!r}: use --quantize-config unfused")
    heads = int(hf_config.get("num_attention_heads") or hf_config.get("n_heads") or 0)
    hidden = int(hf_config.get("hidden_size") or hf_config.get("dim") or 0)
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_attention = attention
    with library_step("transformer fusions"):
        optimized = optimize_model(src, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                                   use_gpu=False, optimization_options=options)
        counts = {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}
        optimized.save_model_to_file(dst)
    return {"tool": "onnxruntime.transformers.optimizer", "model_type": "bert", "fused_operators": counts,
            "path": dst}


def quantize_int8(src: str, dst: str, scheme: Int8Scheme, calibration: Optional[Any] = None) -> Dict[str, Any]:
    """int8 quantization of ``src`` into ``dst`` by ``scheme``; returns the settings for the header.

    ``calibration`` (``exporter.calibrate.Calibration``: texts and the header to read them)
    calibrates a ``calibrated`` rowwise scheme; without it the weights are rounded to nearest
    and no input is smoothed.
    """
    if scheme.row_independent:
        from mlbert.exporter.rowwise_plan import quantize_planned

        with library_step(f"int8 quantization ({scheme.name} scheme)"):
            done = quantize_planned(src, dst, calibration if scheme.calibrated else None)
        return dict(scheme.settings(), **done, path=dst)
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with library_step(f"int8 quantization ({scheme.name} scheme)"), _quiet_root_logger():
        quantize_dynamic(
            src, dst,
            weight_type=QuantType.QInt8 if scheme.weights == "int8" else QuantType.QUInt8,
            per_channel=scheme.per_channel, reduce_range=scheme.reduce_range,
            # Tensors made by com.microsoft operators have no type for onnx's shape inference;
            # in these graphs every such tensor is float.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    if not os.path.exists(dst):
        raise MlbError(f"int8 quantization ({scheme.name} scheme) wrote no file")
    return dict(scheme.settings(), path=dst)


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (onnxruntime-gpu lists its CUDA provider even without one)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def check_optimize_level(level: Optional[str], quantize: str) -> None:
    """Refuse optimization settings that cannot be produced or checked here, before any work."""
    if level is None:
        return
    if level not in OPTIMIZE_LEVELS:
        raise UsageError(f"--optimize {level!r}: use one of {', '.join(OPTIMIZE_LEVELS)}")
    if level == "O4":
        if quantize != "none":
            raise UsageError("--optimize O4 makes an fp16 graph; it cannot be combined with --quantize int8")
        if not cuda_available():
            raise UsageError(
                "--optimize O4 converts the graph to fp16, which onnxruntime runs only on a CUDA GPU; "
                "this machine has none (torch.cuda.is_available() is False), so the file could be neither "
                "produced nor checked here: run the export on a GPU machine, or use O1, O2 or O3"
            )


def optimize_graph(onnx_dir: str, file_name: str, save_dir: str, level: str) -> Dict[str, object]:
    """Apply optimum's ``AutoOptimizationConfig`` level to ``onnx_dir/file_name`` into ``save_dir``."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    config = AutoOptimizationConfig.with_optimization_level(level)
    if level == "O4":
        config.optimize_for_gpu = True
    with library_step(f"graph optimization {level}"):
        optimizer = ORTOptimizer.from_pretrained(onnx_dir, file_names=[file_name])
        optimizer.optimize(save_dir=save_dir, optimization_config=config)
    path = _single_onnx(save_dir, exclude=())
    return {
        "level": level,
        "fp16": bool(getattr(config, "fp16", False)),
        "optimize_for_gpu": bool(getattr(config, "optimize_for_gpu", False)),
        "tool": "optimum.onnxruntime.ORTOptimizer",
        "path": path,
    }


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer advises "pre-processing" through the root logger on every call; the
    written file is verified instead, so the advice would only be noise in mlb-export's output."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _single_onnx(folder: str, exclude: Sequence[str]) -> str:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".onnx") and f not in exclude)
    if len(files) != 1:
        raise MlbError(f"{folder}: expected one .onnx file from optimum, found {files or 'none'}")
    if any(f.endswith((".onnx_data", ".onnx.data")) for f in os.listdir(folder)):
        raise MlbError(f"{folder}: optimum wrote the weights as external data; mlb needs a single file")
    return os.path.join(folder, files[0])

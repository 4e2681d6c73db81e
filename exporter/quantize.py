"""Dynamic int8 quantization and graph optimization through optimum's ONNX Runtime tools.

Why these choices:

* Dynamic int8 (weights quantized ahead of time, activations at run time) needs no
  calibration data and gave ~2x rows/s and a quarter of the size for MiniLM here
  (see /work/shared/MEASURED.md); static quantization would need a calibration set
  that travels with every export.
* The instruction set decides which int8 kernels onnxruntime uses, and optimum's
  ``AutoQuantizationConfig`` presets encode it (``avx512_vnni`` quantizes activations to
  uint8 with VNNI dot products; ``avx2`` uses a reduced range to avoid the saturation
  of ``vpmaddubsw``; ``arm64`` for aarch64). We pick the preset from the CPU we run on,
  which is normally the kind of CPU the file will be served on; ``--quantize-config``
  names one explicitly when it is not.
* Optimization levels are optimum's ``O1``..``O4``; ``O4`` turns the graph into fp16,
  which only runs (and can only be checked) on a CUDA GPU.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

from ..batch.errors import MlbError, UsageError, first_line

QUANTIZE_MODES = ("none", "int8")
QUANTIZE_CONFIGS = ("avx512_vnni", "avx512", "avx2", "arm64")
OPTIMIZE_LEVELS = ("O1", "O2", "O3", "O4")


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> Optional[set]:
    """The instruction-set flags of the first CPU listed in /proc/cpuinfo (None if unreadable)."""
    try:
        with open(cpuinfo_path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        return None
    return None


def pick_quantization_config(
    explicit: Optional[str] = None,
    flags: Optional[set] = None,
    machine: Optional[str] = None,
) -> str:
    """Name of the optimum quantization preset for this CPU, or the one asked for.

    ``flags`` and ``machine`` default to this machine's /proc/cpuinfo and
    ``platform.machine()``; they are parameters so the choice can be tested.
    """
    if explicit is not None:
        if explicit not in QUANTIZE_CONFIGS:
            raise UsageError(f"--quantize-config {explicit!r}: use one of {', '.join(QUANTIZE_CONFIGS)}")
        return explicit
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        return "arm64"
    if flags is None:
        flags = cpu_flags() or set()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    raise UsageError(
        f"cannot tell which int8 kernels this CPU ({machine or 'unknown'}) supports (no AVX2, AVX-512 or "
        f"ARM64); name the serving CPU's with --quantize-config {'|'.join(QUANTIZE_CONFIGS)}"
    )


def _quantization_config(name: str):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factory = getattr(AutoQuantizationConfig, name)
    # Dynamic, per-tensor: the presets' defaults for transformer encoders.
    return factory(is_static=False, per_channel=False)


def quantize_int8(onnx_dir: str, file_name: str, save_dir: str, config_name: str) -> Dict[str, object]:
    """Quantize ``onnx_dir/file_name`` into ``save_dir``; returns the settings for the header.

    The returned dict carries ``path`` (the quantized file) besides the settings.
    """
    from optimum.onnxruntime import ORTQuantizer

    qconfig = _quantization_config(config_name)
    with _optimum_step(f"int8 quantization with the {config_name} preset"):
        quantizer = ORTQuantizer.from_pretrained(onnx_dir, file_name=file_name)
        quantizer.quantize(save_dir=save_dir, quantization_config=qconfig)
    path = _single_onnx(save_dir, exclude=())
    return {
        "mode": "int8",
        "method": "dynamic",
        "config": config_name,
        "weights_dtype": str(getattr(qconfig.weights_dtype, "name", qconfig.weights_dtype)),
        "activations_dtype": str(getattr(qconfig.activations_dtype, "name", qconfig.activations_dtype)),
        "per_channel": bool(qconfig.per_channel),
        "reduce_range": bool(qconfig.reduce_range),
        "operators": sorted(qconfig.operators_to_quantize or []),
        "tool": "optimum.onnxruntime.ORTQuantizer",
        "path": path,
    }


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
    with _optimum_step(f"graph optimization {level}"):
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
def _optimum_step(what: str) -> Iterator[None]:
    """optimum raises whatever its backends raise; the user gets one line naming the step."""
    try:
        yield
    except MlbError:
        raise
    except Exception as exc:
        raise MlbError(f"{what} failed ({first_line(exc)})") from None


def _single_onnx(folder: str, exclude: Sequence[str]) -> str:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".onnx") and f not in exclude)
    if len(files) != 1:
        raise MlbError(f"{folder}: expected one .onnx file from optimum, found {files or 'none'}")
    if any(f.endswith((".onnx_data", ".onnx.data")) for f in os.listdir(folder)):
        raise MlbError(f"{folder}: optimum wrote the weights as external data; mlb needs a single file")
    return os.path.join(folder, files[0])

"""The CPU this process runs on: how many cores it may use, and which int8 kernels it has.

Cores: ``os.cpu_count()`` ignores CPU affinity and container quotas, so a cron job in a
2-CPU container would start 64 threads and thrash; threads follow ``sched_getaffinity``
and the cgroup ``cpu.max`` quota instead.

int8: onnxruntime (its MLAS library) picks its integer matrix kernels from the CPU's
instruction sets, and an int8 file that is fast and exact on one CPU may be slow or
inexact on another (docs/EXPORT.md, "Which CPU an int8 file suits"):

* unsigned activations x signed weights (U8S8) run on dot-product instructions where
  the CPU has them (AVX-512 VNNI, AVX-VNNI, AMX, ARM's dot product); on AVX2 and on
  AVX-512 without VNNI they run on ``VPMADDUBSW``, which adds two u8 x s8 products into
  a saturating int16, so full-range 8-bit weights can overflow it: the file computes
  other numbers than the ones checked at export. 7-bit weights (``reduce_range``) cannot
  overflow it (2 x 255 x 64 < 32767);
* unsigned weights (U8U8) run on widening 16-bit kernels on every x86 CPU except those
  with AVX-VNNI-INT8: exact, but slower than U8S8.

``int8_note`` turns that into one line for mlb-batch's summary when a file does not suit
the CPU. Stdlib only.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from typing import Any, FrozenSet, List, Mapping, Optional

# Instruction sets a benchmark records, as (name shown, /proc/cpuinfo flag).
ISA_FLAGS = (
    ("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"), ("AVX-512BW", "avx512bw"),
    ("AVX-512 VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"), ("AVX-VNNI-INT8", "avx_vnni_int8"),
    ("AMX-INT8", "amx_int8"), ("ARM dot product", "asimddp"), ("ARM i8mm", "i8mm"), ("SVE", "sve"),
)
# The int8 paths below whose U8S8 kernel saturates (VPMADDUBSW) with full-range weights.
SATURATING_U8S8 = ("avx2", "avx512bw")


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


# --------------------------------------------------------------------------- instruction sets


def cpuinfo_fields(cpuinfo_path: str = "/proc/cpuinfo") -> Mapping[str, str]:
    """The first value of each field of /proc/cpuinfo (the first CPU's); empty if unreadable."""
    fields = {}
    try:
        with open(cpuinfo_path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@dataclass(frozen=True)
class CpuFeatures:
    """A CPU's architecture, model name and instruction-set flags (as /proc/cpuinfo spells them)."""

    machine: str
    flags: FrozenSet[str]
    model_name: str = ""

    @classmethod
    def here(cls, cpuinfo_path: str = "/proc/cpuinfo") -> "CpuFeatures":
        fields = cpuinfo_fields(cpuinfo_path)
        flags = (fields.get("flags") or fields.get("Features") or "").split()
        name = fields.get("model name") or fields.get("Model name") or fields.get("CPU part") or platform.processor()
        return cls(machine=platform.machine().lower(), flags=frozenset(flags), model_name=name or "")

    @property
    def is_arm64(self) -> bool:
        return self.machine in ("arm64", "aarch64") or self.machine.startswith("armv8")

    @property
    def is_x86_64(self) -> bool:
        return self.machine in ("x86_64", "amd64")

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def instruction_sets(self) -> List[str]:
        """The recorded instruction sets this CPU has, by their usual names."""
        return [name for name, flag in ISA_FLAGS if flag in self.flags]

    @property
    def int8_path(self) -> str:
        """The kernel family onnxruntime's MLAS runs U8S8 int8 matrix products with here.

        Follows MLAS's own order (``platform.cpp``): AMX over AVX-512 (VNNI, else
        ``avx512bw``: VPMADDUBSW), AVX-VNNI, AVX2 (VPMADDUBSW); on ARM64 the dot-product
        instructions when present. ``none``: no fast int8 path known.
        """
        f = self.flags
        if self.is_arm64:
            return "neon_dot" if "asimddp" in f else "neon"
        if not self.is_x86_64:
            return "none"
        if {"amx_int8", "amx_tile"} <= f:
            return "amx"
        if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= f:
            return "avx512_vnni" if "avx512_vnni" in f else "avx512bw"
        if "avx_vnni" in f:
            return "avx_vnni"
        return "avx2" if "avx2" in f else "none"

    @property
    def kind(self) -> str:
        """The machine kind benchmarks are kept per: the int8 path, in words."""
        return {
            "amx": "x86-64 with AMX",
            "avx512_vnni": "x86-64 with AVX-512 VNNI",
            "avx512bw": "x86-64 with AVX-512, no VNNI",
            "avx_vnni": "x86-64 with AVX-VNNI (AVX2 width)",
            "avx2": "x86-64 with AVX2, no AVX-512 or VNNI",
            "neon_dot": "ARM64 with dot product",
            "neon": "ARM64 without dot product",
        }.get(self.int8_path, f"{self.machine or 'unknown'} without a known int8 path")


def int8_note(quantization: Mapping[str, Any], cpu: Optional[CpuFeatures] = None) -> Optional[str]:
    """One line when an int8 file's settings do not suit this CPU's int8 kernels, else None.

    ``quantization`` is the model header's record (``ModelHeader.quantization``); files
    written before signed/unsigned weights were recorded name them as optimum did
    (``QInt8``/``QUInt8``).
    """
    if quantization.get("mode") != "int8":
        return None
    cpu = cpu or CpuFeatures.here()
    weights = str(quantization.get("weights_dtype", "")).lower()
    signed = weights in ("qint8", "int8", "s8")
    unsigned = weights in ("quint8", "uint8", "u8")
    path = cpu.int8_path
    if signed and not quantization.get("reduce_range") and path in SATURATING_U8S8:
        return (f"int8 file with full-range 8-bit weights on a CPU without VNNI ({cpu.kind}): onnxruntime's "
                "VPMADDUBSW kernel can saturate on them, so scores may differ from those checked at export; "
                "re-export with `mlb-export --quantize int8` (7-bit weights, the default) for this CPU")
    if unsigned and cpu.is_x86_64 and "avx_vnni_int8" not in cpu.flags:
        return (f"int8 file with unsigned weights (U8U8): on this CPU ({cpu.kind}) onnxruntime runs them on its "
                "slower widening kernels; re-export with `mlb-export --quantize int8` (signed weights, the "
                "default) for the faster U8S8 kernels")
    return None


def batch_dependence_note(quantization: Mapping[str, Any]) -> Optional[str]:
    """One line when an int8 file's scores depend on which rows share a batch, else None.

    Files quantized dynamically (onnxruntime's ``DynamicQuantizeLinear``: one activation scale
    per batch tensor; every int8 file written before issue 25, and ``--quantize-config unfused``,
    ``portable``, ``vnni``, ``u8u8`` now) give a row other scores with another token budget,
    chunk size, engine or resume point. ``row_independent`` is recorded since issue 25.
    """
    if quantization.get("mode") != "int8" or quantization.get("row_independent"):
        return None
    return ("int8 file quantized per batch (one activation scale for all the rows of a batch): a row's scores "
            "depend on which rows share its batch (token budget, chunk size, engine); re-export with "
            "`mlb-export --quantize int8` (per-row scales, the default) for scores that depend on the row alone")

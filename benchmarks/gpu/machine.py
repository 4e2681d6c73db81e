"""What the GPU check ran on: the CPU model and flags, the GPU, Python and package versions, and the
GPU's peak memory while a command runs (nvidia-smi; nothing on a CPU machine).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

PACKAGES = ("mlbert", "torch", "transformers", "tokenizers", "onnxruntime-gpu", "onnxruntime", "optimum", "optimum-onnx",
            "accelerate", "huggingface-hub", "safetensors", "numpy", "datasets")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpu_facts() -> Dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable,
            "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def gpu_facts() -> Optional[Dict[str, str]]:
    """Name, memory and driver of GPU 0 from nvidia-smi; None where there is none."""
    out = _nvidia_smi(["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader", "-i", "0"])
    if not out:
        return None
    name, memory, driver = (part.strip() for part in (out.split(",") + ["", ""])[:3])
    return {"name": name, "memory": memory, "driver": driver}


def _nvidia_smi(args: List[str]) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_facts() -> Dict[str, Any]:
    """What the figures were measured on: CPU model and flags, cores, GPU, Python and package versions."""
    facts = _cpu_facts()
    facts.update(python=platform.python_version(), gpu=gpu_facts(), versions=versions())
    return facts


class GpuMemory:
    """Peak GPU memory in MiB above the level before, sampled by nvidia-smi every 100 ms while the block runs.

    ``peak_mib`` stays None without nvidia-smi (a CPU machine). Memory is the whole
    GPU's, so nothing else should run on it meanwhile.
    """

    def __init__(self) -> None:
        self.peak_mib: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None
        self._log = None
        self._before = 0

    def __enter__(self) -> "GpuMemory":
        before = _nvidia_smi(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"])
        if before:
            self._before = int(before.split()[0])
            self._log = tempfile.TemporaryFile(mode="w+")
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0", "-lms", "100"],
                stdout=self._log, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is None or self._log is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.seek(0)
        samples = [int(line) for line in self._log.read().split() if line.isdigit()]
        self._log.close()
        if samples:
            self.peak_mib = max(samples) - self._before

"""Where the GPU check runs: the project's code importable without an install, the bundle's
packages beside the machine's own, the machine's facts, and GPU memory while a command runs.

Why no ``pip install`` of the project: the GPU machine has no package index and its
setuptools is not ours to count on. ``package_links`` builds what an editable install
would give (``mlbert`` with ``mlbert.batch`` -> ``batch/`` ..., read from setup.cfg's
``package_dir``) out of symbolic links, and ``write_launchers`` writes the console scripts
from setup.cfg's ``console_scripts``, so every command runs the working tree's code.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "tokenizers", "onnxruntime-gpu", "onnxruntime", "optimum", "optimum-onnx",
            "accelerate", "huggingface-hub", "safetensors", "numpy", "datasets")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _setup_cfg(repo: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    if not cfg.read(repo / "setup.cfg", encoding="utf-8"):
        raise FileNotFoundError(f"{repo / 'setup.cfg'}: not found")
    return cfg


def _pairs(text: str) -> Dict[str, str]:
    """``a = b`` lines of a setup.cfg value as a dict."""
    out = {}
    for line in text.strip().splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def package_links(repo: Path, dest: Path) -> Path:
    """``dest/mlbert``: the package as setup.cfg maps it, made of links into ``repo``; returns ``dest``."""
    mapping = _pairs(_setup_cfg(repo)["options"]["package_dir"])
    top = dest / "mlbert"
    if top.exists():
        shutil.rmtree(top)
    top.mkdir(parents=True)
    for entry in (repo / mapping["mlbert"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry.resolve())
    for package, folder in mapping.items():
        if package != "mlbert":
            (top / package.split(".", 1)[1]).symlink_to((repo / folder).resolve())
    return dest


def console_scripts(repo: Path) -> Dict[str, str]:
    """``{"mlb-batch": "mlbert.batch.cli:main", ...}`` from setup.cfg."""
    return _pairs(_setup_cfg(repo)["options.entry_points"]["console_scripts"])


def write_launchers(repo: Path, bin_dir: Path, python: str = sys.executable) -> Dict[str, Path]:
    """One executable per console script in ``bin_dir``, as pip would write it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, target in console_scripts(repo).items():
        module, _, func = target.partition(":")
        path = bin_dir / name
        path.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n", encoding="utf-8")
        path.chmod(0o755)
        written[name] = path
    return written


def link_nvidia_libraries(site: Path) -> List[str]:
    """Make the CUDA libraries the machine's torch brought visible from ``site`` as ``site/nvidia/...``.

    onnxruntime's ``preload_dlls`` looks for the nvidia-* wheels beside itself, as
    ``pip install 'mlbert[cuda]'`` puts them in one site-packages; the bundle installs
    onnxruntime-gpu into its own folder, so this links torch's copies next to it.
    """
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    target = site / "nvidia"
    target.mkdir(parents=True, exist_ok=True)
    linked = []
    for location in spec.submodule_search_locations:
        location_path = Path(location).resolve()
        if location_path == target.resolve():
            continue
        for child in sorted(location_path.iterdir()):
            if not (target / child.name).exists():
                (target / child.name).symlink_to(child)
                linked.append(str(child))
    return linked


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

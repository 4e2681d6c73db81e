"""Shared pieces of the benchmark suite: data, child processes, machine facts, FLOPs, tables.

Why a module of its own: every benchmark (inference, accuracy, training) needs the same
GoEmotions reader, the same way of timing a child process (its own peak RSS from
``wait4``), and the same description of the machine, and the numbers in
docs/BENCHMARKS.md must all come from one definition of each.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

REPO = Path(__file__).resolve().parent.parent
# GoEmotions as shipped in the repository (gzip-compressed headerless TSV; data/goemotions/README.md).
DATA_DIR = Path(os.environ.get("MLB_GOEMOTIONS", REPO / "data" / "goemotions"))
# Scratch space for inputs, outputs, models and training runs (runs/ is gitignored).
WORK_DIR = REPO / "runs" / "bench"

csv.field_size_limit(1 << 24)


# --------------------------------------------------------------------------- logging


_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress goes to stderr (stdout carries the tables)."""
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def open_text(path: Path) -> TextIO:
    """A UTF-8 text file, gzip-compressed when its name ends in .gz (as the shipped data is)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def read_tsv_texts(path: Path, limit: Optional[int] = None) -> List[str]:
    """Column 1 of a headerless GoEmotions-style TSV (CSV quoting, tab separated), optionally .gz."""
    texts: List[str] = []
    with open_text(path) as f:
        for row in csv.reader(f, delimiter="\t"):
            texts.append(row[0] if row else "")
            if limit is not None and len(texts) >= limit:
                break
    return texts


def label_names(data_dir: Path = DATA_DIR) -> List[str]:
    return read_lines(data_dir / "emotions.txt")


def make_input(source: Path, rows: int, folder: Path) -> Path:
    """``source`` (headerless TSV, one row per line, optionally .gz) repeated or cut to exactly
    ``rows`` rows, written uncompressed so that every contender reads the same plain file."""
    stem = source.name.removesuffix(".gz").removesuffix(".tsv")
    path = folder / f"{stem}-{rows}.tsv"
    if path.exists():
        return path
    with open_text(source) as f:
        lines = f.read().splitlines(keepends=True)
    with path.open("w", encoding="utf-8") as f:
        written = 0
        while written < rows:
            take = lines[: rows - written]
            f.writelines(take)
            written += len(take)
    return path


def read_lines(path: Path) -> List[str]:
    """Non-empty stripped lines of a small text file (a label-names file)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def count_text_rows(path: Path) -> int:
    """Rows of a headerless TSV, gzip-compressed or not."""
    with open_text(path) as f:
        return sum(1 for _ in f)


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# --------------------------------------------------------------------------- models


def make_random_checkpoint(folder: Path, names: Sequence[str], seed: int = 0) -> Path:
    """The packaged base model with a randomly initialised multi-label head, plus mlb.json.

    Speed does not depend on whether the head is trained, so this stands in for a
    fine-tuned checkpoint in quick runs (never for the accuracy section).
    """
    sys.path.insert(0, str(REPO))
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mlbert.modelfile import CheckpointConfig
    from mlbert.preprocess import Preprocessing
    from mlbert.trainer.train import default_base_model

    if (folder / "mlb.json").exists() and (folder / "model.safetensors").exists():
        return folder
    base = default_base_model()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(names), problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(folder))
    CheckpointConfig(
        label_names=list(names), thresholds=[0.5] * len(names), preprocessing=Preprocessing(emoji="words"),
        max_length=128, provenance={"made_by": "benchmarks/common.py (random head, speed runs only)"},
    ).save(str(folder))
    return folder


def shown_path(arg: str) -> str:
    """An argument as a document shows it: an absolute path inside the repository relative to it, so a
    command reads the same on every machine; anything else unchanged."""
    arg = str(arg)
    try:
        return str(Path(arg).resolve().relative_to(REPO)) if os.path.isabs(arg) else arg
    except ValueError:
        return arg


def export_onnx(checkpoint: Path, output: Path, quantize: str) -> Path:
    """``mlb-export CHECKPOINT OUTPUT --quantize MODE`` through the library (skipped if present)."""
    sys.path.insert(0, str(REPO))
    from mlbert.exporter.export import export_model

    if output.exists():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    export_model(str(checkpoint), str(output), quantize=quantize, echo=lambda m: log(f"  export {quantize}: {m}"))
    return output


def read_header(onnx_path: Path):
    """The mlb header of an exported file (labels, tokenizer, preprocessing, max length)."""
    sys.path.insert(0, str(REPO))
    import onnx

    from mlbert.modelfile import ModelHeader

    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    return ModelHeader.from_metadata(meta, where=str(onnx_path))


def calibration_texts(fp32: Path, data_dir: Path) -> Any:
    """What ``mlb-export --validate-on DATA/dev.tsv.gz`` calibrates on: its first texts, read by the fp32 file's
    header (an ``exporter.calibrate.Calibration``; the int8 benchmarks' files all calibrate on it)."""
    header = read_header(fp32)  # puts the repository on sys.path
    from mlbert.exporter.calibrate import Calibration
    from mlbert.exporter.quantize import CALIBRATION_MAX_ROWS

    return Calibration(read_tsv_texts(data_dir / "dev.tsv.gz", limit=CALIBRATION_MAX_ROWS), header)


# --------------------------------------------------------------------------- child processes


# Linux copies the parent's peak RSS into a child at exec (the forked address space's
# high-water mark is recorded in the child's ru_maxrss), so a child forked straight from a
# benchmark process that has imported torch would report at least that process's peak.
# Children are therefore started by this tiny launcher (a fresh interpreter of ~10 MB):
# it forks the real command and reports the command's own rusage from wait4.
_LAUNCHER = r"""
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall": wall, "maxrss_kib": usage.ru_maxrss,
               "user_s": usage.ru_utime, "sys_s": usage.ru_stime}, f)
"""


def run_child(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None,
              cwd: Optional[Path] = None) -> Dict[str, Any]:
    """Run one process; its wall seconds, exit code, stdout, stderr and own peak RSS (MiB).

    The command runs under ``_LAUNCHER`` so that ``ru_maxrss`` is the command's own peak,
    not inherited from this (possibly large) process.
    """
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", str(REPO))
    full_env.setdefault("TOKENIZERS_PARALLELISM", "true")
    full_env.setdefault("HF_HUB_OFFLINE", "1")
    full_env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if env:
        full_env.update(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".json") as usage_file:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, usage_file.name, *cmd], env=full_env,
                                stdout=out, stderr=err, cwd=str(cwd or REPO), start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:4])} ...") from None
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        try:
            usage = json.loads(usage_file.read())
        except ValueError:
            raise RuntimeError(f"launcher failed ({proc.returncode}): {stderr.strip()[-300:]}") from None
    return {"rc": usage["rc"], "wall": usage["wall"], "peak_rss_mib": usage["maxrss_kib"] / 1024.0,
            "user_s": usage["user_s"], "sys_s": usage["sys_s"], "stdout": stdout, "stderr": stderr}


def last_json_line(text: str) -> Dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object (what a worker prints)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("no JSON result line")


def median(values: Sequence[float]) -> float:
    values = sorted(values)
    n = len(values)
    if n == 0:
        return float("nan")
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


# --------------------------------------------------------------------------- machine


def _cpuinfo() -> Dict[str, str]:
    sys.path.insert(0, str(REPO))
    from mlbert.runtime.cpus import cpuinfo_fields

    return dict(cpuinfo_fields())


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    return _cpuinfo().get("model name", platform.processor() or platform.machine())


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> Dict[str, Any]:
    """CPU model, usable cores, clock, SIMD flags, memory, package versions, load, date."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = int(line.split()[1]) / 1024 ** 2
                    break
    except OSError:
        pass
    lscpu = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        pass
    keep = ("Model name", "CPU family", "Model:", "CPU(s):", "Thread(s) per core", "Core(s) per socket",
            "L2 cache", "L3 cache", "Hypervisor vendor")
    lscpu_lines = [line.strip() for line in lscpu.splitlines() if line.strip().startswith(keep)]
    packages = ("onnxruntime-gpu", "onnxruntime", "torch", "transformers", "optimum", "optimum-onnx", "tokenizers", "numpy")
    sys.path.insert(0, str(REPO))
    from mlbert.runtime.cpus import CpuFeatures

    features = CpuFeatures.here()
    return {
        "instruction_sets": features.instruction_sets(),
        "int8_path": features.int8_path,
        "kind": features.kind,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model_name(),
        "cpu_family": info.get("cpu family"),
        "cpu_model": info.get("model"),
        "mhz": float(info["cpu MHz"]) if "cpu MHz" in info else None,
        "cores": cores,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx2": "avx2" in flags,
        "fma": "fma" in flags,
        "mem_gib": mem_gib,
        "lscpu": lscpu_lines,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: v for p in packages if (v := _version(p))},
        "loadavg": os.getloadavg(),
    }


def machine_line(m: Dict[str, Any]) -> str:
    """The machine as a benchmark document names it: CPU model, family and model numbers, cores, SIMD flags."""
    flags = ", ".join(f for f in ("avx512f", "avx512_vnni", "avx2", "fma") if m.get(f))
    return f"{m['cpu']} (family {m['cpu_family']}, model {m['cpu_model']}), {m['cores']} cores, flags {flags}"


# --------------------------------------------------------------------------- tables


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def seeded_sample(n: int, k: int, seed: int) -> List[int]:
    """The sorted row indices mlb-train's ``--limit-train k`` picks (trainer.train.load_splits)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def sanitize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()

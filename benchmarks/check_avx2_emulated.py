"""What int8 files compute on an AVX2-only CPU, checked on this machine under emulation.

onnxruntime picks its int8 kernels from the CPU it runs on (``batch.cpus``): on AVX2 the
U8S8 product uses ``VPMADDUBSW``, whose int16 pair sums saturate, where a VNNI CPU
computes exactly. Timing an AVX2 machine needs one; what the kernels compute does not:
``qemu-x86_64 -cpu EPYC-Milan`` (Debian's ``qemu-user``) runs the same Python, onnxruntime
and file as a Zen 3 CPU (AVX2, FMA, no AVX-512: qemu's TCG has no AVX-512 at all), so
onnxruntime's own CPU detection picks its AVX2 kernels. This script

1. proves which kernel ran: a MatMulInteger whose exact result (255 x 127 summed) overflows
   VPMADDUBSW's int16 pair sums gives the exact value natively and the saturated one under
   qemu;
2. scores the same texts with each int8 file natively and under qemu, and compares the
   probabilities and the label decisions at the file's thresholds.

Emulated speed means nothing and is not reported.

    python benchmarks/check_avx2_emulated.py --files runs/bench/int8/files --rows 300 --write-doc
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402

QEMU = "qemu-x86_64"
QEMU_CPU = "EPYC-Milan"  # AMD Zen 3: the CPU the AVX2 figures of docs/BENCHMARKS.md were measured on
FILES = ("unfused", "portable", "vnni", "previous", "u8u8")
DOC = c.REPO / "docs" / "BENCHMARKS-avx2-emulated.md"
K = 64  # inner dimension of the saturation probe


def probe() -> Dict[str, int]:
    """MatMulInteger u8 x s8 of 255s and 127s: exact sum and what this process's onnxruntime returns."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((K, 8), 127, dtype=np.int8), "w")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, K])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [None, 8])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"a": np.full((2, K), 255, dtype=np.uint8)})
    return {"exact": 255 * 127 * K, "got": int(y[0, 0])}


def worker(model: Path, data: Path, rows: int, out: Path) -> None:
    """Probabilities of the first ``rows`` texts, and the probe, into ``out`` (.npz)."""
    import numpy as np

    import mlbert

    texts = c.read_tsv_texts(data, limit=rows)
    classifier = mlbert.load(str(model), "cpu")
    p = probe()
    np.savez(out, probabilities=classifier.predict_proba(texts), thresholds=classifier.thresholds,
             probe_exact=p["exact"], probe_got=p["got"])


def run_worker(model: Path, data: Path, rows: int, out: Path, emulated: bool) -> Dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(model), "--data", str(data),
           "--rows", str(rows), "--out", str(out)]
    if emulated:
        cmd = [QEMU, "-cpu", QEMU_CPU] + cmd
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(c.REPO),
                       env=dict(__import__("os").environ, PYTHONPATH=str(c.REPO)))
    if r.returncode != 0:
        tail = [line for line in r.stderr.splitlines() if "TCG doesn't support" not in line][-3:]
        raise RuntimeError(f"{'qemu ' if emulated else ''}worker on {model.name} failed: {' | '.join(tail)}")
    return {"seconds": time.monotonic() - started}


def compare(native: Path, emulated: Path) -> Dict[str, Any]:
    import numpy as np

    a, b = np.load(native), np.load(emulated)
    pa, pb, t = a["probabilities"], b["probabilities"], a["thresholds"]
    da, db = pa >= t, pb >= t
    return {
        "rows": int(pa.shape[0]), "max_abs_diff": float(np.abs(pa - pb).max()),
        "mean_abs_diff": float(np.abs(pa - pb).mean()),
        "decisions_changed": int((da != db).sum()), "decisions": int(da.size),
        "rows_changed": int((da != db).any(axis=1).sum()),
        "probe_native": int(a["probe_got"]), "probe_emulated": int(b["probe_got"]), "probe_exact": int(a["probe_exact"]),
    }


def run_check(files: Path, data: Path, rows: int, names: List[str]) -> Dict[str, Any]:
    if shutil.which(QEMU) is None:
        raise SystemExit(f"{QEMU} not found: apt-get install qemu-user (Debian/Ubuntu)")
    results: Dict[str, Any] = {"qemu_cpu": QEMU_CPU, "data": str(data), "rows": rows, "files": {}}
    with tempfile.TemporaryDirectory(prefix="mlb-avx2-") as tmp:
        for name in names:
            model = files / f"{name}.onnx"
            if not model.exists():
                c.log(f"avx2 check: {model} not found, skipped")
                continue
            native, emulated = Path(tmp) / f"{name}-native.npz", Path(tmp) / f"{name}-qemu.npz"
            run_worker(model, data, rows, native, emulated=False)
            took = run_worker(model, data, rows, emulated, emulated=True)
            results["files"][name] = dict(compare(native, emulated), quantization=c.read_header(model).quantization,
                                          emulated_seconds=took["seconds"])
            c.log(f"avx2 check {name}: {results['files'][name]}")
    return results


def report(results: Dict[str, Any], command: str) -> str:
    out = ["# int8 files on an AVX2-only CPU, checked under emulation", "",
           f"Generated by `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}: each file scores the first "
           f"{results['rows']} rows of `{Path(results['data']).name}` natively on this machine "
           f"({c.cpu_model_name()}, onnxruntime's int8 path `{_native_path()}`) and under `qemu-x86_64 -cpu "
           f"{results['qemu_cpu']}` (AMD Zen 3: AVX2 and FMA, no AVX-512, no VNNI), where onnxruntime's own CPU detection "
           "picks its AVX2 kernels. Emulated speed means nothing and is not shown; what is compared is what the "
           "kernels compute.", ""]
    rows = []
    for name, r in results["files"].items():
        q = r["quantization"]
        rows.append([f"`{name}`", f"{q.get('weights_dtype')}{' 7-bit' if q.get('reduce_range') else ' 8-bit'}"
                     f"{', per-channel' if q.get('per_channel') else ', per-tensor'}{', fused' if q.get('fused') else ''}",
                     f"{r['probe_native']:,} / {r['probe_emulated']:,} (exact {r['probe_exact']:,})",
                     f"{r['max_abs_diff']:.2e}", f"{r['decisions_changed']} of {r['decisions']:,}",
                     f"{r['rows_changed']} of {r['rows']}"])
    out.append(c.md_table(["file", "weights", "kernel probe: native / emulated", "max abs prob diff, emulated vs native",
                           "label decisions changed", "rows with a changed decision"], rows))
    out += ["", "The kernel probe is a MatMulInteger of 255s (uint8) by 127s (int8) over 64 terms: VNNI computes "
            "the exact sum; the saturated value under emulation shows onnxruntime ran its AVX2 VPMADDUBSW kernel, "
            "whose int16 pair sums overflow on full-range 8-bit weights. 7-bit weights (`reduce_range`) keep every "
            "pair sum below 2 x 255 x 64 = 32,640 < 32,767, so those files compute the same integers on both CPUs; "
            "what remains are float rounding differences of other SIMD widths.", ""]
    return "\n".join(out)


def _native_path() -> str:
    from mlbert.runtime.cpus import CpuFeatures

    return CpuFeatures.here().int8_path


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--files", type=Path, default=c.WORK_DIR / "int8" / "files",
                   help="folder of bench_int8.py's candidate files [%(default)s]")
    p.add_argument("--names", default=",".join(FILES), help="which files (comma-separated) [%(default)s]")
    p.add_argument("--data", type=Path, default=c.DATA_DIR / "test.tsv.gz")
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--write-doc", action="store_true", help=f"write {DOC.relative_to(c.REPO)}")
    a = p.parse_args(argv)
    if a.worker:
        worker(a.worker, a.data, a.rows, a.out)
        return 0
    results = run_check(a.files, a.data, a.rows, a.names.split(","))
    command = "python benchmarks/check_avx2_emulated.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(results, command)
    print(text)
    print(json.dumps(results, default=str), file=sys.stderr)
    if a.write_doc:
        DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

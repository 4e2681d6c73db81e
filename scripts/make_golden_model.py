#!/usr/bin/env python3
"""Build the golden model that the runtime-only tests check mlb-batch against.

Why a committed file: ``pip install mlbert`` gives onnxruntime, tokenizers, numpy and click,
but no torch, transformers or optimum, so a test of that install cannot make its own ONNX
file. This script makes one, once, with the full toolchain, and records what PyTorch says
about it, so that the lean install is tested against PyTorch without having PyTorch:

* ``tests/fixtures/golden.onnx``: a tiny random BERT (2 layers, 32 wide, 4 labels; weights
  drawn with a large spread so that texts get clearly different scores; fixed seeds), exported
  by ``mlbert.exporter.export.export_model``, the code behind ``mlb-export``;
* ``tests/fixtures/golden_expected.json``: for each text, the PyTorch probabilities after the
  model's preprocessing (computed as the exporter's verification computes them) and the labels
  at the model's thresholds.

The thresholds are set between the scores on these texts (the widest gap near each label's
median), so every label is on for some texts and off for others, and no score sits close
enough to a threshold for rounding to flip a decision. Run it again only when the model file
format changes; it needs the test extras (``pip install -e '.[test]'``):

    .venv/bin/python scripts/make_golden_model.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import List

import numpy as np

from mlbert.decisions import decide

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(REPO / "tests"))

from conftest import write_tiny_checkpoint, write_varied_checkpoint  # noqa: E402  (one definition of the tiny model)

# Seeds of the base draw and of the large-spread redraw (conftest.write_varied_checkpoint).
BASE_SEED = 0
VARIED_SEED = 7
WEIGHT_STD = 0.3
# How far every expected score must stay from its label's threshold.
MIN_MARGIN = 0.01
# The runtime must reproduce PyTorch within this (the exporter's fp32 check uses the same).
TOLERANCE = 1e-4

# Varied on purpose: emoji (spelled out as words), @mentions and URLs (replaced by one token),
# nearly empty texts, non-ASCII, and texts longer than the model's 64 tokens (truncated).
# None holds a tab or a newline, so every input format (text lines, TSV) can carry them all.
GOLDEN_TEXTS = [
    "i am so happy today !",
    "what a terrible awful day",
    "no",
    "yes yes yes what a great win",
    "he was not very glad that day . she was scared and afraid",
    "😂",
    "face with tears of joy 😂😂",
    "I love you ❤️ 👍",
    "@user thank you, you made my day",
    "@boss @hr i hate mondays 😡",
    "look at this http://example.com/news?id=7 wow",
    "https://t.co/AbC123 shocked , no words",
    ".",
    "!!",
    "a",
    "Ça va ? Très bien, merci 😊",
    "我很高兴",
    "WOW!!! SO HAPPY!!! :) :)",
    "wow , i love this , great day with you " * 12,
    "sad " * 80,
    "\"quoted\" text, with a comma; and 'single' quotes",
    "#blessed #happy tomorrow is a good day",
]


def pick_thresholds(probabilities: np.ndarray) -> List[float]:
    """Per label, the middle of the widest gap between sorted scores near the median."""
    thresholds = []
    for column in probabilities.T:
        ordered = np.sort(column.astype(np.float64))
        n = len(ordered)
        candidates = range(n // 4, n - n // 4)  # keep at least a quarter on each side
        best = max(candidates, key=lambda i: ordered[i] - ordered[i - 1])
        thresholds.append(round(float((ordered[best] + ordered[best - 1]) / 2), 4))
    return thresholds


def decisions(probabilities: np.ndarray, thresholds: List[float], names: List[str]) -> List[List[str]]:
    """The labels on per row, in label order, by the runtime's one decision rule."""
    on = decide(probabilities, thresholds)
    return [[n for n, is_on in zip(names, row) if is_on] for row in on]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURES, help="folder for golden.onnx and golden_expected.json")
    args = parser.parse_args()

    import mlbert
    from mlbert.modelfile import CheckpointConfig
    from mlbert.exporter.export import export_model
    from mlbert.trainer.torch_checkpoint import checkpoint_probabilities, load_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "golden.onnx"
    with tempfile.TemporaryDirectory(prefix="mlb-golden-") as work:
        base = write_tiny_checkpoint(Path(work) / "base", seed=BASE_SEED)
        checkpoint = write_varied_checkpoint(base, Path(work) / "checkpoint", seed=VARIED_SEED, std=WEIGHT_STD)
        config = CheckpointConfig.load(str(checkpoint))
        texts = config.preprocessing.apply(GOLDEN_TEXTS)
        model, tokenizer = load_checkpoint(str(checkpoint), local_files_only=True)
        reference = checkpoint_probabilities(model, tokenizer, texts, config.max_length)

        config.thresholds = pick_thresholds(reference)
        config.provenance = {"made_by": "scripts/make_golden_model.py", "base_seed": BASE_SEED,
                             "varied_seed": VARIED_SEED, "weight_std": WEIGHT_STD,
                             "thresholds": "middle of the widest score gap per label on the golden texts"}
        config.save(str(checkpoint))
        export_model(str(checkpoint), str(model_path), echo=lambda m: print(m, file=sys.stderr))

    margin = float(np.abs(reference - np.asarray(config.thresholds)).min())
    runtime = mlbert.load(str(model_path), "cpu").predict_proba(GOLDEN_TEXTS)  # raw texts: preprocessed inside
    difference = float(np.abs(runtime - reference).max())
    labels = decisions(reference, config.thresholds, config.label_names)
    if margin < MIN_MARGIN or difference > TOLERANCE or decisions(runtime, config.thresholds, config.label_names) != labels:
        raise SystemExit(f"golden model not usable: margin {margin:.2g}, runtime vs PyTorch {difference:.2g}")
    if len({tuple(row) for row in labels}) < 4:
        raise SystemExit("golden model not usable: too few different label sets across the texts")

    expected = {
        "model": model_path.name,
        "made_by": "scripts/make_golden_model.py",
        "reference": "PyTorch (mlbert.trainer.torch_checkpoint.checkpoint_probabilities) on the preprocessed texts",
        "tolerance": TOLERANCE,
        "label_names": list(config.label_names),
        "thresholds": list(config.thresholds),
        "max_length": config.max_length,
        "preprocessing": config.preprocessing.to_dict(),
        "smallest_threshold_margin": round(margin, 6),
        "rows": [
            {"text": raw, "preprocessed": pre, "probabilities": [float(p) for p in probs], "labels": row_labels}
            for raw, pre, probs, row_labels in zip(GOLDEN_TEXTS, texts, reference, labels)
        ],
    }
    (args.out / "golden_expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    print(f"{model_path} ({model_path.stat().st_size:,} bytes), {len(texts)} texts, runtime vs PyTorch "
          f"{difference:.1e}, smallest margin to a threshold {margin:.3f}", file=sys.stderr)
    print(f"label sets: {sorted({tuple(row) for row in labels})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The inference benchmark's worker processes: one contender each, in a fresh process.

Each worker loads its model (untimed: the orchestration reports it as start-up), then reads
the TSV file, classifies every row and writes one JSONL record per row (timed), and prints
its result as one JSON line. Started by ``bench_inference.py``; by hand:

    python benchmarks/inference_workers.py --worker recipe --checkpoint DIR --input FILE --output FILE
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402
from inference_contenders import RECIPE_BATCH, RECIPE_LENGTH  # noqa: E402


# Each worker: load (untimed, reported as startup), then read, run, write (timed).


def _threads() -> int:
    from mlbert.runtime.cpus import available_cpus

    return available_cpus()


def _write_records(path: str, names: Sequence[str], probabilities, threshold: float = 0.5) -> None:
    """One JSONL record per row: row number, labels above the threshold, scores (like mlb-batch)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(probabilities, start=1):
            scores = {n: round(float(p), 6) for n, p in zip(names, row)}
            labels = [n for n, p in scores.items() if p >= threshold]
            f.write(json.dumps({"row": i, "labels": labels, "scores": scores}) + "\n")


def worker_recipe(args) -> Dict[str, Any]:
    """The recipe's inference: every text padded to 128 tokens, batches of 8, PyTorch fp32."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(_threads())
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    started = time.perf_counter()
    texts = c.read_tsv_texts(Path(args.input))
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), RECIPE_BATCH):
            enc = tokenizer(texts[i:i + RECIPE_BATCH], padding="max_length", truncation=True,
                            max_length=RECIPE_LENGTH, return_tensors="pt")
            out.append(torch.sigmoid(model(**enc).logits).numpy())
    _write_records(args.output, names, np.concatenate(out))
    return {"rows": len(texts), "seconds": time.perf_counter() - started}


def _pipeline_records(pipe, texts: List[str], batch: int, names: Sequence[str]):
    import numpy as np

    results = pipe(texts, batch_size=batch, truncation=True, max_length=RECIPE_LENGTH)
    index = {n: i for i, n in enumerate(names)}
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for r, result in enumerate(results):
        for item in result:
            probs[r, index[item["label"]]] = item["score"]
    return probs


def _time_pipeline(pipe: Any, config: Any, args) -> Dict[str, Any]:
    """The timed part for both pipeline contenders: read the file, classify, write the records."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    started = time.perf_counter()
    texts = c.read_tsv_texts(Path(args.input))
    probs = _pipeline_records(pipe, texts, args.batch_size, names)
    _write_records(args.output, names, probs)
    return {"rows": len(texts), "seconds": time.perf_counter() - started}


def worker_pipeline(args) -> Dict[str, Any]:
    """``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")``."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(_threads())
    pipe = pipeline("text-classification", model=str(args.checkpoint), tokenizer=str(args.checkpoint), top_k=None,
                    function_to_apply="sigmoid", device=-1)
    return _time_pipeline(pipe, pipe.model.config, args)


def worker_optimum(args) -> Dict[str, Any]:
    """optimum's ``ORTModelForSequenceClassification`` (fp32 ONNX) inside a transformers pipeline."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    model = ORTModelForSequenceClassification.from_pretrained(str(args.onnx_dir), file_name="model.onnx",
                                                              provider="CPUExecutionProvider")
    tokenizer = AutoTokenizer.from_pretrained(str(args.onnx_dir))
    try:
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                        function_to_apply="sigmoid", device=-1)
    except Exception:  # older transformers refuse a non-torch model; optimum's wrapper accepts it
        from optimum.onnxruntime import pipeline as ort_pipeline

        pipe = ort_pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                            function_to_apply="sigmoid")
    return _time_pipeline(pipe, model.config, args)


def worker_mlb_model(args) -> Dict[str, Any]:
    """mlb's model time alone: the texts are read and tokenized first (timed apart), then only
    the bucketed onnxruntime batches are timed, chunk by chunk exactly as mlb-batch runs them."""
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE
    from mlbert.runtime.providers import default_token_budget
    from mlbert.runtime.session import Predictor, load_model

    from mlbert.runtime.bucketing import DEFAULT_MULTIPLE

    loaded = load_model(str(args.onnx), device="cpu")
    predictor = Predictor(loaded, default_token_budget(loaded.provider), multiple=args.multiple or DEFAULT_MULTIPLE)
    predictor.warm_up()
    t0 = time.perf_counter()
    texts = loaded.header.preprocessing.apply(c.read_tsv_texts(Path(args.input)))
    t1 = time.perf_counter()
    chunks = [predictor.encoder.encode(texts[i:i + DEFAULT_CHUNK_SIZE]) for i in range(0, len(texts), DEFAULT_CHUNK_SIZE)]
    t2 = time.perf_counter()
    for chunk in chunks:
        predictor.predict_encoded(chunk)
    t3 = time.perf_counter()
    return {"rows": len(texts), "seconds": t3 - t2, "read_seconds": t1 - t0, "tokenize_seconds": t2 - t1}


WORKERS = {"recipe": worker_recipe, "pipeline": worker_pipeline, "optimum": worker_optimum, "mlb-model": worker_mlb_model}


def main(argv: Optional[List[str]] = None) -> int:
    """Run one contender and print its result as one JSON line (what the orchestration reads)."""
    parser = argparse.ArgumentParser(description="One inference contender in its own process.")
    parser.add_argument("--worker", choices=sorted(WORKERS), required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--onnx-dir", type=Path)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--multiple", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    print(json.dumps(WORKERS[args.worker](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

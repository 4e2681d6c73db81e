"""The GPU check's measurements that run inside one Python process each.

``scored`` runs a model file through mlb's own runtime (``Predictor``, as mlb-batch and
``mlbert.load`` run it) and times its stages apart: preprocessing plus tokenization, then
the onnxruntime batches. ``pipelined`` runs the checkpoint through
``transformers.pipeline`` on the same texts. Both save the probabilities (float32, input
order) so the checker compares them exactly, which mlb-batch's 4-decimal scores cannot.

On the GPU each runs in its own process (``python workers.py NAME JSON``, one JSON
line back), so no CUDA context outlives its measurement; the CPU check calls them in-process.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np


def read_texts(path: str, limit: Optional[int] = None) -> List[str]:
    texts = json.loads(Path(path).read_text(encoding="utf-8"))
    return texts[:limit] if limit else texts


def _without_tf32(loaded: Any, path: str) -> Any:
    """The same model with onnxruntime's CUDA TF32 matmuls switched off (full fp32 arithmetic)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = loaded.threads
    session = ort.InferenceSession(path, sess_options=options,
                                   providers=[("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"])
    return dataclasses.replace(loaded, session=session, provider=session.get_providers()[0])


def scored(model: str, device: str, texts: str, out: str, limit: Optional[int] = None, tf32: bool = True,
           chunk_rows: int = 10_000) -> Dict[str, Any]:
    """mlb's runtime on ``texts``: probabilities to ``out`` (.npy) and the seconds of each stage."""
    from mlbert.runtime.providers import default_token_budget
    from mlbert.runtime.session import Predictor, load_model

    loaded = load_model(model, device)
    if not tf32:
        loaded = _without_tf32(loaded, model)
    predictor = Predictor(loaded, default_token_budget(loaded.provider, loaded.header.max_length))
    predictor.warm_up()
    raw = read_texts(texts, limit)
    started = time.perf_counter()
    chunks = [predictor.encoder.encode(loaded.header.preprocessing.apply(raw[i:i + chunk_rows]))
              for i in range(0, len(raw), chunk_rows)]
    encoded = time.perf_counter()
    probabilities = np.concatenate([predictor.predict_encoded(chunk) for chunk in chunks]) if chunks else \
        np.zeros((0, len(loaded.header.label_names)), dtype=np.float32)
    done = time.perf_counter()
    np.save(out, probabilities)
    tokens = int(sum(int(chunk.lengths.sum()) for chunk in chunks))
    return {"provider": loaded.provider, "rows": len(raw), "tokens": tokens,
            "tokenize_seconds": round(encoded - started, 3), "model_seconds": round(done - encoded, 3),
            "model_rows_per_second": round(len(raw) / max(done - encoded, 1e-9)), "token_budget": predictor.token_budget}


def pipelined(checkpoint: str, texts: str, out: str, batch_size: int, device: str, dtype: str = "float16",
              limit: Optional[int] = None, max_length: int = 128) -> Dict[str, Any]:
    """``transformers.pipeline`` (sigmoid, every label) on the texts mlb-batch classified, preprocessed as mlb does."""
    import torch
    from transformers import pipeline

    from mlbert.modelfile import CheckpointConfig

    preprocess = CheckpointConfig.load(checkpoint).preprocessing.apply
    pipe = pipeline("text-classification", model=checkpoint, tokenizer=checkpoint, top_k=None,
                    function_to_apply="sigmoid", device=0 if device == "cuda" else -1, dtype=getattr(torch, dtype))
    order = {pipe.model.config.id2label[i]: i for i in range(pipe.model.config.num_labels)}
    raw = read_texts(texts, limit)
    pipe(preprocess(raw[:batch_size]), batch_size=batch_size, truncation=True, max_length=max_length)  # warm-up
    _synchronize(torch, device)
    started = time.perf_counter()
    results = pipe(preprocess(raw), batch_size=batch_size, truncation=True, max_length=max_length)
    _synchronize(torch, device)
    seconds = time.perf_counter() - started
    probabilities = np.zeros((len(raw), len(order)), dtype=np.float32)
    for row, labels in enumerate(results):
        for item in labels:
            probabilities[row, order[item["label"]]] = item["score"]
    np.save(out, probabilities)
    peak = torch.cuda.max_memory_allocated() // 2**20 if device == "cuda" else None
    return {"rows": len(raw), "batch_size": batch_size, "dtype": dtype, "seconds": round(seconds, 3),
            "rows_per_second": round(len(raw) / max(seconds, 1e-9)), "torch_peak_mib": peak}


def _synchronize(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def stack(device: str) -> Dict[str, Any]:
    """Where each package the commands import was installed, its version, and the devices."""
    import importlib
    import os

    out: Dict[str, Any] = {}
    for name in ("mlbert", "torch", "transformers", "tokenizers", "onnxruntime", "optimum", "accelerate", "numpy"):
        try:
            module = importlib.import_module(name)
            where = os.path.dirname(module.__file__) if getattr(module, "__file__", None) else list(module.__path__)[0]
            out[name] = {"version": getattr(module, "__version__", None), "from": where}
        except Exception as exc:  # recorded, not raised: the steps that need it say more
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    import onnxruntime
    import torch

    out["onnxruntime_providers"] = onnxruntime.get_available_providers()
    out["torch_cuda"] = torch.cuda.is_available()
    if device == "cuda" and torch.cuda.is_available():
        out["torch_device"] = torch.cuda.get_device_name(0)
        out["torch_bf16"] = torch.cuda.is_bf16_supported()
    return out


def provider(model: str) -> Dict[str, Any]:
    """Start ``model`` with ``--device cuda`` as mlb-batch does (fails with its one-line reason) and score two texts."""
    from mlbert.runtime.classifier import load

    classifier = load(model, "cuda")
    probabilities = classifier.predict_proba(["I am so happy", "this is terrible"])
    return {"provider": classifier.provider, "token_budget": classifier.token_budget,
            "finite": bool(np.isfinite(probabilities).all())}


WORKERS = {"scored": scored, "pipelined": pipelined, "stack": stack, "provider": provider}


def main(argv: List[str]) -> int:
    name, arguments = argv[0], json.loads(argv[1])
    print(json.dumps(WORKERS[name](**arguments)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

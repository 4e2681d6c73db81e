"""mlbert: multi-label BERT text classification: train, export to one ONNX file, classify in batch.

One import name for the whole project. The repository keeps its three parts in their own
top-level folders and the build installs them under this package:

* ``mlbert.batch``: the lean runtime (onnxruntime, tokenizers, numpy, click; no torch),
  which also owns the model file format;
* ``mlbert.trainer``: ``mlb-train`` and ``mlb-eval`` (torch, transformers);
* ``mlbert.exporter``: ``mlb-export`` (optimum).

The Python API is the runtime's classifier, reachable from here without importing
anything heavy until it is used::

    import mlbert
    clf = mlbert.load("model.onnx", device="auto")
    clf.predict(["so happy", "so sad"])

A text that ``mlb-batch`` would write as an error record raises ``mlbert.ItemError`` (a
``ValueError`` naming the item's position), and a bad argument ``mlbert.UsageError`` (a
``ValueError`` too); both are ``mlbert.MlbError``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

# Attributes resolved on first use (PEP 562), so ``import mlbert`` stays cheap for the
# CLIs and never pulls onnxruntime into ``mlb-train --help``.
_LAZY = {
    "load": ("mlbert.runtime.classifier", "load"),
    "Classifier": ("mlbert.runtime.classifier", "Classifier"),
    "MlbError": ("mlbert.errors", "MlbError"),
    "ItemError": ("mlbert.errors", "ItemError"),
    "UsageError": ("mlbert.errors", "UsageError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mlbert' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value

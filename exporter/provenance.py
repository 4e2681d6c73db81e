"""What an exported file says about itself: its provenance and the mlb header built from it.

The header (``batch.modelfile.ModelHeader``) carries labels, thresholds, preprocessing,
max length and the tokenizer; provenance adds where the file came from (the checkpoint
and a hash of its weights, library versions, opset, optimization) so a file found on a
server can be traced back. When the checkpoint is an mlb-train output folder, its
``eval_predictions.npz`` gives each label's share of validation rows predicted positive
(``ModelHeader.validation_shares``): what mlb-batch's run report compares today's shares with.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert.decisions import decide
from mlbert.modelfile import CheckpointConfig, ModelHeader, ValidationShares, portable_path, recorded_time

from mlbert.exporter.checkpoint_info import CheckpointInfo


def export_provenance(info: CheckpointInfo, task: str) -> Dict[str, Any]:
    """Where the file came from; ``opset`` and ``optimization`` are filled in as the export runs."""
    return {
        "exporter": "mlb-export",
        "source_checkpoint": portable_path(info.folder),
        "source_has_mlb_json": info.has_mlb_json,
        "source_weights_sha256": _weights_sha256(info.folder, info.weights),
        "checkpoint_provenance": info.config.provenance,
        "architecture": (info.hf_config.get("architectures") or [None])[0],
        "model_type": info.hf_config.get("model_type"),
        "exported_at": recorded_time(),
        "versions": _versions(),
        "task": task,
        "optimization": None,
    }


class HeaderMaker:
    """The mlb header for one export; each header copies ``provenance`` as it stands when made."""

    def __init__(self, config: CheckpointConfig, tokenizer_json: str, provenance: Dict[str, Any],
                 validation: Optional[ValidationShares] = None) -> None:
        self.config = config
        self.tokenizer_json = tokenizer_json
        self.provenance = provenance
        self.validation = validation

    def make(self, input_names: List[str], quantization: Dict[str, Any]) -> ModelHeader:
        return ModelHeader.from_checkpoint_config(
            self.config, self.tokenizer_json, input_names, quantization=quantization, provenance=dict(self.provenance),
            validation_shares=self.validation,
        )


# Written by mlb-train beside the checkpoint (trainer/outputs.py).
PREDICTIONS_FILE = "eval_predictions.npz"


def validation_shares(folder: str, thresholds: Sequence[float]) -> Optional[ValidationShares]:
    """Each label's share of validation rows at or above its threshold, from ``eval_predictions.npz``.

    None when the folder has no such file (a plain Hugging Face checkpoint) or its arrays do
    not fit the labels: the shares are optional, a model file without them is complete.
    """
    path = os.path.join(folder, PREDICTIONS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            probabilities = arrays["validation_probabilities"] if "validation_probabilities" in arrays else None
            labels = arrays["validation_labels"] if "validation_labels" in arrays else None
    except (OSError, ValueError):
        return None
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(thresholds) \
            or probabilities.shape[0] == 0:
        return None
    predicted = decide(probabilities, thresholds).mean(axis=0)
    labelled = None
    if labels is not None and labels.shape == probabilities.shape:
        labelled = [round(float(v), 6) for v in (np.asarray(labels) > 0.5).mean(axis=0)]
    return ValidationShares(rows=int(probabilities.shape[0]), predicted=[round(float(v), 6) for v in predicted],
                            labelled=labelled)


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for dist in ("mlbert", "transformers", "optimum", "optimum-onnx", "torch", "onnx", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except Exception:
        out["onnxruntime"] = None
    return out


def _weights_sha256(folder: str, weights: List[str]) -> Dict[str, str]:
    out = {}
    for name in weights:
        h = hashlib.sha256()
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[name] = h.hexdigest()
    return out

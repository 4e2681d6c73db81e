"""What a checkpoint folder holds, learned from its files before any weights are loaded.

``inspect_checkpoint`` refuses what mlb cannot serve with the reason (custom code, a
single-label head, pickled weights only, no fast tokenizer, labels that do not match the
outputs) so that ``mlb-export`` fails in a second rather than after loading torch. A
Hugging Face checkpoint without ``mlb.json`` gets one derived from ``config.json``
(labels from ``id2label``, thresholds 0.5, no preprocessing).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from mlbert.errors import ModelFileError, UsageError
from mlbert.modelfile import CHECKPOINT_CONFIG_FILE, MLB_CLASSIFIER_TYPE, PROBLEM_TYPE, CheckpointConfig
from mlbert.preprocess import Preprocessing

# Hugging Face checkpoints without mlb.json: the longest input mlb will assume.
DEFAULT_MAX_LENGTH_CAP = 512


@dataclass
class CheckpointInfo:
    """What ``inspect_checkpoint`` learned without loading the weights."""

    folder: str
    config: CheckpointConfig  # from mlb.json, or derived from config.json
    has_mlb_json: bool
    hf_config: Dict[str, Any]
    weights: List[str]
    max_positions: Optional[int]

    @property
    def encoder_config(self) -> Dict[str, Any]:
        """The encoder's configuration: config.json itself, or its ``encoder`` for mlb's own classifier."""
        return encoder_config(self.hf_config)


def encoder_config(hf: Dict[str, Any]) -> Dict[str, Any]:
    """config.json's encoder part (``mlb-classifier`` models nest the encoder's configuration under ``encoder``)."""
    if hf.get("model_type") == MLB_CLASSIFIER_TYPE and isinstance(hf.get("encoder"), dict):
        return hf["encoder"]
    return hf


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a JSON object")
    return data


def inspect_checkpoint(folder: str, max_length: Optional[int] = None) -> CheckpointInfo:
    """Refuse folders mlb cannot export, with the reason, before any heavy import."""
    if not os.path.exists(folder):
        raise ModelFileError(f"{folder}: checkpoint folder not found")
    if not os.path.isdir(folder):
        raise ModelFileError(f"{folder}: not a folder; pass the checkpoint folder written by mlb-train")
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise ModelFileError(f"{folder}: not a Hugging Face checkpoint (no config.json)")
    hf = _read_json(config_path)
    _check_model_config(hf, config_path)
    weights = _safetensors_weights(folder)
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise ModelFileError(
            f"{folder}: no tokenizer.json (fast tokenizer); the exported file carries it so mlb-batch can tokenize "
            "without transformers: save the tokenizer with AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)"
        )
    ordered = _ordered_labels(hf, config_path)
    num_labels = len(ordered) or int(hf.get("num_labels", 0) or 0)
    max_positions = encoder_config(hf).get("max_position_embeddings")
    max_positions = int(max_positions) if isinstance(max_positions, int) and max_positions > 0 else None
    has_mlb = os.path.exists(os.path.join(folder, CHECKPOINT_CONFIG_FILE))
    if has_mlb:
        config = _mlb_config(folder, num_labels)
    else:
        config = _derived_config(folder, config_path, ordered, max_positions)
    _set_label_segment(config, hf, folder)
    _set_max_length(config, folder, max_length, max_positions)
    return CheckpointInfo(folder=folder, config=config, has_mlb_json=has_mlb, hf_config=hf, weights=weights,
                          max_positions=max_positions)


def _check_model_config(hf: Dict[str, Any], config_path: str) -> None:
    """No custom code; a sequence-classification architecture; multi-label (sigmoid) outputs."""
    if hf.get("auto_map"):
        raise ModelFileError(
            f"{config_path}: the model needs custom code (auto_map); mlb never runs checkpoint code (trust_remote_code)"
        )
    architectures = hf.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ModelFileError(
            f"{config_path}: not a sequence-classification model (architectures: {', '.join(map(str, architectures)) or 'none'})"
        )
    problem = hf.get("problem_type")
    if problem != PROBLEM_TYPE:
        shown = "not set, which Hugging Face treats as single-label softmax" if problem is None else repr(problem)
        raise ModelFileError(
            f"{config_path}: problem_type is {shown}; mlb serves multi-label models with independent sigmoid "
            f"outputs (problem_type \"{PROBLEM_TYPE}\"); a single-label softmax model would get wrong probabilities"
        )


def _safetensors_weights(folder: str) -> List[str]:
    """The safetensors weight files; a folder with pickled weights only is refused with how to convert it."""
    names = os.listdir(folder)
    weights = sorted(n for n in names if n.endswith(".safetensors") or n == "model.safetensors.index.json")
    if not weights:
        pickled = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
        if pickled:
            raise ModelFileError(
                f"{folder}: weights only in {pickled[0]} (a pickle, which can run code when loaded); "
                "mlb loads safetensors only: re-save with model.save_pretrained(folder, safe_serialization=True)"
            )
        raise ModelFileError(f"{folder}: no model weights (model.safetensors)")
    return weights


def _ordered_labels(hf: Dict[str, Any], config_path: str) -> List[str]:
    """``id2label``'s names in output order (empty when the config has none)."""
    id2label = hf.get("id2label") or {}
    try:
        return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    except (TypeError, ValueError):
        raise ModelFileError(f"{config_path}: id2label keys are not label indexes") from None


def _mlb_config(folder: str, num_labels: int) -> CheckpointConfig:
    config = CheckpointConfig.load(folder)
    if num_labels and len(config.label_names) != num_labels:
        raise ModelFileError(
            f"{folder}: {CHECKPOINT_CONFIG_FILE} names {len(config.label_names)} labels but the model has {num_labels} outputs"
        )
    return config


def _derived_config(folder: str, config_path: str, ordered: List[str], max_positions: Optional[int]) -> CheckpointConfig:
    """What ``mlb.json`` would say for a plain Hugging Face checkpoint: its labels at 0.5, text kept as it is."""
    if not ordered:
        raise ModelFileError(f"{config_path}: no id2label, so the outputs have no names")
    return CheckpointConfig(
        label_names=ordered,
        thresholds=[0.5] * len(ordered),
        preprocessing=Preprocessing(emoji="keep", mentions="keep", urls="keep"),
        max_length=_default_max_length(folder, max_positions),
        threshold_objective="none",
        provenance={"derived_from": "config.json (no mlb.json): labels from id2label, thresholds 0.5"},
    )


def _set_label_segment(config: CheckpointConfig, hf: Dict[str, Any], folder: str) -> None:
    """The label segment (``--label-input``) is the model's: config.json's, which mlb.json must not contradict."""
    segment = hf.get("label_segment") if hf.get("model_type") == MLB_CLASSIFIER_TYPE else None
    if config.label_segment is not None and config.label_segment != segment:
        raise ModelFileError(f"{folder}: {CHECKPOINT_CONFIG_FILE}'s label_segment differs from config.json's")
    config.label_segment = segment
    if config.head is None and hf.get("model_type") == MLB_CLASSIFIER_TYPE:
        config.head = {"pooling": hf.get("pooling")}


def _set_max_length(config: CheckpointConfig, folder: str, max_length: Optional[int],
                    max_positions: Optional[int]) -> None:
    """``--max-length`` when given, within the model's positions; else the checkpoint's, checked against them."""
    if max_length is not None:
        if max_length < 1:
            raise UsageError(f"--max-length must be positive, not {max_length}")
        if max_positions is not None and max_length > max_positions:
            raise UsageError(f"--max-length {max_length} exceeds the model's {max_positions} positions")
        config.max_length = int(max_length)
    elif max_positions is not None and config.max_length > max_positions:
        raise ModelFileError(
            f"{folder}: max_length {config.max_length} exceeds the model's {max_positions} positions; pass --max-length"
        )


def _default_max_length(folder: str, max_positions: Optional[int]) -> int:
    """Tokenizer's model_max_length, the model's positions and 512, whichever is smallest."""
    candidates = [DEFAULT_MAX_LENGTH_CAP]
    if max_positions:
        candidates.append(max_positions)
    tok_config = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(tok_config):
        value = _read_json(tok_config).get("model_max_length")
        if isinstance(value, (int, float)) and 0 < value < 1e6:
            candidates.append(int(value))
    return min(candidates)

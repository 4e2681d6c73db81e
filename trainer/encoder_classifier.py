"""mlb's own multi-label classifier over any encoder: mean pooling, or scores read from the label tokens.

Why a model class of mlb's own: transformers' ``XForSequenceClassification`` classifies
from one position, ``[CLS]`` through a pooler. Two other ways to read the encoder are
options of mlb-train (docs/TRAINING.md):

* ``mean`` (``--pooling mean``): the attention-mask-weighted mean of the last hidden
  states, then dropout and one linear layer. all-MiniLM-L6-v2 is a sentence-transformers
  model trained through exactly this mean, so the head reads what the encoder learnt to
  produce, not a position it never trained.
* ``label-tokens`` (``--label-input``, SpanEmo: Alhuzali and Ananiadou 2021): the label
  names are the input's first segment (``trainer/label_input.py``) and each label is
  scored from its own tokens' hidden states (the first sub-token, or the mean of its
  sub-tokens) by one small network shared by every label (dense, tanh, dropout, one
  output) plus a bias per label. The label tokens sit at fixed positions, so their
  selection is a constant matrix in the graph.

The model contract: ``config.json`` says ``"model_type": "mlb-classifier"`` and holds the
encoder's own configuration under ``encoder``. Plain transformers does not know that model
type, so ``AutoModelForSequenceClassification.from_pretrained`` or ``pipeline`` without
mlbert fail loudly ("does not recognize this architecture") instead of reading a
mean-pooled checkpoint as a ``[CLS]`` classifier. ``register()`` teaches transformers' Auto
classes the type in this process: mlbert's own code, never ``trust_remote_code``; the weights
come from safetensors like every other checkpoint.

This module imports torch and transformers at the top: import it inside the functions
that need it (``--help`` must stay fast).
"""

from __future__ import annotations

import inspect
from typing import Any, List, Optional, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "mlb-classifier"
ARCHITECTURE = "MlbClassifierForSequenceClassification"
POOLINGS = ("mean", "label-tokens")
LABEL_TOKEN_MODES = ("first", "mean")


class MlbClassifierConfig(PretrainedConfig):
    """The encoder's configuration (``encoder``) plus how the head reads it.

    ``label_segment`` is the text of the label segment (the input's first segment) and
    ``label_positions`` each label's token positions in the encoded pair; ``label_token``
    says whether a label is read from its first sub-token or the mean of its sub-tokens.
    """

    model_type = MODEL_TYPE
    sub_configs = {"encoder": AutoConfig}
    has_no_defaults_at_init = True

    def __init__(self, encoder: Any = None, pooling: str = "mean", label_segment: Optional[str] = None,
                 label_positions: Optional[List[List[int]]] = None, label_token: str = "first",
                 classifier_dropout: Optional[float] = None, **kwargs: Any) -> None:
        if isinstance(encoder, dict):
            encoder = dict(encoder)
            encoder = AutoConfig.for_model(encoder.pop("model_type"), **encoder)
        self.encoder = encoder
        self.pooling = pooling
        self.label_segment = label_segment
        self.label_positions = [list(map(int, p)) for p in label_positions] if label_positions else None
        self.label_token = label_token
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)


def label_weights(positions: Sequence[Sequence[int]], mode: str) -> torch.Tensor:
    """(labels, P): row ``l`` picks label ``l``'s first token (``first``) or averages its tokens (``mean``),
    P being one past the last label token; multiplied with the first P hidden states."""
    width = max(max(p) for p in positions) + 1
    weights = torch.zeros(len(positions), width)
    for row, tokens in enumerate(positions):
        chosen = tokens[:1] if mode == "first" else list(tokens)
        weights[row, chosen] = 1.0 / len(chosen)
    return weights


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The attention-mask-weighted mean over tokens (sentence-transformers' formula): padding adds nothing."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _dropout_rate(config: MlbClassifierConfig) -> float:
    if config.classifier_dropout is not None:
        return float(config.classifier_dropout)
    encoder = config.encoder
    for name in ("classifier_dropout", "hidden_dropout_prob", "seq_classif_dropout", "dropout"):
        value = getattr(encoder, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


class MlbClassifierForSequenceClassification(PreTrainedModel):
    """An encoder (any ``AutoModel``, its pooler removed) and mlb's mean or label-token head.

    ``dropout`` is the one dropout in front of the output layer (multi-sample dropout,
    ``head_dropout.py``, replaces it during training). ``output_bias`` is the per-label bias
    that ``--head-bias-init prior`` sets.
    """

    config_class = MlbClassifierConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _supports_sdpa = True  # what the encoders mlb trains (BERT and kin) support; eager otherwise on request

    def __init__(self, config: MlbClassifierConfig) -> None:
        super().__init__(config)
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling {config.pooling!r}: use one of {', '.join(POOLINGS)}")
        self.num_labels = config.num_labels
        self.encoder = AutoModel.from_config(config.encoder)
        drop_pooler(self.encoder)
        hidden = int(config.encoder.hidden_size)
        self.dropout = nn.Dropout(_dropout_rate(config))
        if config.pooling == "mean":
            self.classifier = nn.Linear(hidden, config.num_labels)
        else:
            if not config.label_positions or len(config.label_positions) != config.num_labels:
                raise ValueError("a label-token head needs one list of token positions per label")
            self.label_dense = nn.Linear(hidden, hidden)
            self.label_score = nn.Linear(hidden, 1, bias=False)
            self.label_bias = nn.Parameter(torch.zeros(config.num_labels))
            self.register_buffer("label_weights", label_weights(config.label_positions, config.label_token),
                                 persistent=False)
        self._token_types = "token_type_ids" in inspect.signature(self.encoder.forward).parameters
        self.post_init()

    @property
    def output_bias(self) -> nn.Parameter:
        return self.classifier.bias if self.config.pooling == "mean" else self.label_bias

    def _init_weights(self, module: nn.Module) -> None:
        std = float(getattr(self.config.encoder, "initializer_range", 0.02))
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                return_dict: Optional[bool] = None, **kwargs: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._token_types:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        if self.config.pooling == "mean":
            logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        else:
            weights = self.label_weights.to(hidden.dtype)
            tokens = torch.matmul(weights, hidden[:, : weights.shape[1], :])  # (batch, labels, hidden)
            features = self.dropout(torch.tanh(self.label_dense(tokens)))
            logits = self.label_score(features).squeeze(-1) + self.label_bias
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def drop_pooler(encoder: nn.Module) -> None:
    """Remove the encoder's [CLS] pooler (unused here: a parameter without gradient breaks DDP)."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


_registered = False


def register() -> None:
    """Teach transformers' AutoConfig and AutoModelForSequenceClassification the ``mlb-classifier`` type."""
    global _registered
    if _registered:
        return
    AutoConfig.register(MODEL_TYPE, MlbClassifierConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(MlbClassifierConfig, MlbClassifierForSequenceClassification,
                                                exist_ok=True)
    _registered = True


def is_mlb_classifier(model_or_config: Any) -> bool:
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "model_type", None) == MODEL_TYPE

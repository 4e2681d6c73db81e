"""Loading a base model under one of mlb's own heads (``--pooling mean``, ``--label-input``).

The encoder always carries over from the base: a bare encoder (the packaged
all-MiniLM-L6-v2), any ``XForSequenceClassification`` checkpoint (an earlier mlb-train
output with other labels, say: its encoder weights, without its head), or an mlb model of
``encoder_classifier``'s own kind. The head is kept only when the base already is the same
head over the same labels (training further); otherwise it is new and drawn at random,
and ``head.start_new_head`` starts its bias at the label prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from mlbert.errors import ModelFileError

from mlbert.trainer.label_input import LabelSegment, check_tokenizer, label_segment

POOLINGS = ("cls", "mean")
LABEL_TOKENS = ("first", "mean")


@dataclass(frozen=True)
class HeadSpec:
    """How the classifier reads the encoder: ``--pooling`` and ``--label-input``/``--label-token``.

    ``cls`` is the architecture's own head (BERT: [CLS] through its pooler); ``mean`` and the
    label-token head (``label_input``) are mlb's own model class (``encoder_classifier``).
    """

    pooling: str = "cls"
    label_input: bool = False
    label_token: str = "first"

    @property
    def mlb_pooling(self) -> Optional[str]:
        """The ``encoder_classifier`` pooling, or None for the architecture's own head."""
        if self.label_input:
            return "label-tokens"
        return "mean" if self.pooling == "mean" else None

    def describe(self, label_segment: Optional[str] = None) -> Dict[str, Any]:
        """What ``mlb.json`` and the model file's header say about the head (informative)."""
        if self.label_input:
            return {"pooling": "label-tokens", "label_token": self.label_token, "label_segment": label_segment}
        return {"pooling": self.pooling}


def load_mlb_classifier(base: str, label_names: List[str], head: HeadSpec, max_length: int) -> Tuple[Any, Any, bool]:
    """(tokenizer, model, head is new) for ``head`` on ``base``'s encoder; safetensors only, no remote code."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from mlbert.trainer import encoder_classifier as ec

    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelFileError(f"{base}: has no fast tokenizer (tokenizer.json); mlb-batch needs one")
    segment: Optional[LabelSegment] = None
    if head.label_input:
        check_tokenizer(tokenizer)
        segment = label_segment(tokenizer, label_names, max_length)
    wanted = {
        "pooling": head.mlb_pooling,
        "label_segment": segment.text if segment else None,
        "label_positions": segment.positions if segment else None,
        "label_token": head.label_token if segment else "first",
    }
    base_config = AutoConfig.from_pretrained(base, trust_remote_code=False)
    if ec.is_mlb_classifier(base_config):
        previous = ec.MlbClassifierForSequenceClassification.from_pretrained(
            base, use_safetensors=True, trust_remote_code=False)
        if _same_head(previous.config, wanted, label_names):
            return tokenizer, previous, False
        encoder = previous.encoder
    else:
        encoder = AutoModel.from_pretrained(base, use_safetensors=True, trust_remote_code=False)
    ec.drop_pooler(encoder)
    config = ec.MlbClassifierConfig(
        encoder=encoder.config,
        num_labels=len(label_names),
        id2label={i: n for i, n in enumerate(label_names)},
        label2id={n: i for i, n in enumerate(label_names)},
        problem_type="multi_label_classification",
        architectures=[ec.ARCHITECTURE],
        **wanted,
    )
    model = ec.MlbClassifierForSequenceClassification(config)
    model.encoder = encoder  # the base's weights (and attention implementation), not the random draw
    config.encoder = encoder.config
    config._name_or_path = base
    return tokenizer, model, True


def _same_head(config: Any, wanted: dict, label_names: List[str]) -> bool:
    """The base already is this head over these labels, in this order (continue training it)."""
    names = [config.id2label[i] for i in range(config.num_labels)] if config.id2label else []
    return names == list(label_names) and all(getattr(config, key, None) == value for key, value in wanted.items())

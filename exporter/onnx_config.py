"""ONNX export of mlb's own classifier (``--pooling mean``, ``--label-input``) through optimum.

optimum's ``onnx_export_from_model`` picks an ONNX config by ``model_type`` and infers the
library from the model class's module, and knows neither ``mlb-classifier`` nor mlbert. Its
documented lower-level route for a custom model, ``optimum.exporters.onnx.export(model,
onnx_config, path)``, takes the ONNX config explicitly: the inputs (``input_ids``,
``attention_mask``, ``token_type_ids`` where the encoder has them), their dynamic axes,
the ``logits`` output and the dummy inputs are exactly those of the *encoder's* own
text-classification config (BERT's for all-MiniLM-L6-v2), because the model takes the
encoder's inputs and returns one score per label like any sequence classifier. The
mean and the label-token selection are traced into the graph; the exported file is then
verified against PyTorch like every other (``export._verify_fp32``).

The trace runs on dummy inputs at least as long as the label segment (the label-token
head reads fixed positions; optimum's default dummy length is 16 tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from mlbert.errors import MlbError
from mlbert.modelfile import MLB_CLASSIFIER_TYPE

# optimum's default dummy sequence length; longer when the label segment needs it.
DUMMY_SEQUENCE_LENGTH = 16


def is_mlb_classifier(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == MLB_CLASSIFIER_TYPE


def encoder_onnx_config(model: Any, task: str) -> Any:
    """The encoder type's own optimum ONNX config for ``task``, built on the encoder's configuration."""
    from optimum.exporters.tasks import TasksManager

    encoder = model.config.encoder
    try:
        constructor = TasksManager.get_exporter_config_constructor(
            exporter="onnx", model_type=encoder.model_type, task=task, library_name="transformers")
    except (KeyError, ValueError) as exc:
        raise MlbError(f"optimum has no ONNX {task} config for {encoder.model_type!r} encoders ({exc})") from None
    return constructor(encoder)


def export_mlb_classifier(model: Any, out_dir: str, opset: Optional[int], task: str) -> str:
    """``out_dir/model.onnx`` from an ``encoder_classifier`` model, through ``optimum.exporters.onnx.export``."""
    from optimum.exporters.onnx import export

    config = encoder_onnx_config(model, task)
    positions = getattr(model.config, "label_positions", None) or []
    needed = max((max(p) for p in positions), default=0) + 2  # the label tokens and at least one more
    path = Path(out_dir) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    export(model, config, path, opset=opset or config.DEFAULT_ONNX_OPSET, device="cpu",
           input_shapes={"sequence_length": max(DUMMY_SEQUENCE_LENGTH, needed)})
    return str(path)

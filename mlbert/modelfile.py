"""The mlb model contract: what a model carries besides its weights, in one place.

Two containers hold the same facts:

* a training checkpoint folder (a standard Hugging Face checkpoint) gets ``mlb.json``
  beside ``config.json``: label names, thresholds, preprocessing, maximum length and how
  the thresholds were chosen;
* an exported ``.onnx`` file carries a header in its ONNX ``metadata_props`` under the key
  ``mlb``: everything above plus the fast tokenizer's JSON (with a SHA-256), the graph's
  input names and provenance, so that ``mlb-batch`` needs no other file.

The runtime reads both and is the owner of the format; ``mlb-train`` and ``mlb-export``
write through ``CheckpointConfig.save`` and ``ModelHeader.to_metadata``. The header is read
with onnxruntime's ``custom_metadata_map`` so the runtime never needs the ``onnx`` package.
See docs/MODEL_FORMAT.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from mlbert.errors import ModelFileError
from mlbert.preprocess import Preprocessing

FORMAT_NAME = "mlb"
# The newest format version this mlb reads. Files are written at the lowest version that
# describes them: 1, or 2 for a header with a ``label_segment`` (a version-1 reader would
# feed the text alone to a model that expects the label names before it).
FORMAT_VERSION = 2
BASE_VERSION = 1
LABEL_SEGMENT_VERSION = 2
METADATA_KEY = "mlb"
CHECKPOINT_CONFIG_FILE = "mlb.json"
PROBLEM_TYPE = "multi_label_classification"
ACTIVATION = "sigmoid"
# config.json's model_type of mlb's own classifier (mean pooling, label-token head;
# trainer/encoder_classifier.py), which plain transformers refuses to load.
MLB_CLASSIFIER_TYPE = "mlb-classifier"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_time() -> str:
    """The time ``mlb.json`` and an exported header record: now (UTC, to the second), or
    ``SOURCE_DATE_EPOCH`` when set.

    ``SOURCE_DATE_EPOCH`` is the reproducible-builds convention (reproducible-builds.org): with
    it, the same training and export write byte-identical files, which is how the built-in
    model's rebuild script (scripts/build_builtin_model.sh) checks that it made the shipped file.
    """
    from datetime import datetime, timezone

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            moment = datetime.fromtimestamp(int(epoch), timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ModelFileError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970") from None
    else:
        moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def portable_path(path: str) -> str:
    """``path`` as a file records it: relative to the working folder when it lies inside it, so
    files built from a checkout name no machine's folders; absolute otherwise."""
    full = os.path.abspath(path)
    here = os.getcwd()
    inside = os.path.commonpath([full, here]) == here if os.path.isabs(full) else False
    return os.path.relpath(full, here) if inside else full


def _check_labels_and_thresholds(label_names: Any, thresholds: Any, where: str) -> None:
    if not isinstance(label_names, list) or not label_names or not all(
        isinstance(n, str) and n for n in label_names
    ):
        raise ModelFileError(f"{where}: label_names must be a non-empty list of names")
    if len(set(label_names)) != len(label_names):
        raise ModelFileError(f"{where}: label_names has duplicates")
    if not isinstance(thresholds, list) or len(thresholds) != len(label_names):
        raise ModelFileError(
            f"{where}: thresholds must hold one number per label ({len(label_names)} labels)"
        )
    for t in thresholds:
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not (0.0 <= float(t) <= 1.0) or math.isnan(t):
            raise ModelFileError(f"{where}: threshold {t!r} is not a probability between 0 and 1")


@dataclass
class CheckpointConfig:
    """The mlb facts saved beside a Hugging Face checkpoint (``mlb.json``)."""

    label_names: List[str]
    thresholds: List[float]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    max_length: int = 128
    threshold_objective: str = "none"
    # Anything worth keeping about how the model was made: command, versions, base model.
    provenance: Dict[str, Any] = field(default_factory=dict)
    format_version: int = BASE_VERSION
    # How the head reads the encoder ({"pooling": "cls"|"mean"|"label-tokens", ...}); informative.
    head: Optional[Dict[str, Any]] = None
    # --label-input: the label names segment every text is paired with (config.json holds it too).
    label_segment: Optional[str] = None

    def __post_init__(self) -> None:
        self.thresholds = [float(t) for t in self.thresholds]
        _check_labels_and_thresholds(self.label_names, self.thresholds, CHECKPOINT_CONFIG_FILE)
        _check_label_segment(self.label_segment, CHECKPOINT_CONFIG_FILE)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "problem_type": PROBLEM_TYPE,
            "label_names": list(self.label_names),
            "thresholds": list(self.thresholds),
            "threshold_objective": self.threshold_objective,
            "preprocessing": self.preprocessing.to_dict(),
            "max_length": self.max_length,
            **({"head": dict(self.head)} if self.head is not None else {}),
            **({"label_segment": self.label_segment} if self.label_segment is not None else {}),
            "provenance": self.provenance,
        }

    def save(self, folder: str) -> str:
        from mlbert.io.atomic import write_text_atomic

        path = os.path.join(folder, CHECKPOINT_CONFIG_FILE)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = CHECKPOINT_CONFIG_FILE) -> "CheckpointConfig":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{where}: not an mlb model configuration")
        _check_version(data.get("format_version"), where)
        try:
            return cls(
                label_names=list(data["label_names"]),
                thresholds=list(data["thresholds"]),
                preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
                max_length=_positive_int(data.get("max_length", 128), "max_length", where),
                threshold_objective=str(data.get("threshold_objective", "none")),
                provenance=dict(data.get("provenance", {})),
                format_version=int(data["format_version"]),
                head=_optional_dict(data.get("head"), "head", where),
                label_segment=data.get("label_segment"),
            )
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{where}: missing or malformed field {exc}") from None

    @classmethod
    def load(cls, folder: str) -> "CheckpointConfig":
        path = os.path.join(folder, CHECKPOINT_CONFIG_FILE)
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ModelFileError(f"{folder}: no {CHECKPOINT_CONFIG_FILE} (not a checkpoint written by mlb-train)") from None
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path}: cannot read ({exc})") from None
        return cls.from_dict(data, where=path)


def _check_version(version: Any, where: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{where}: no mlb format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: written in mlb format version {version}; this mlb reads up to version {FORMAT_VERSION} (upgrade mlb)"
        )
    if version < 1:
        raise ModelFileError(f"{where}: invalid mlb format version {version}")


def _check_label_segment(segment: Any, where: str) -> None:
    if segment is not None and (not isinstance(segment, str) or not segment.strip()):
        raise ModelFileError(f"{where}: label_segment must be a non-empty text")


def _optional_dict(value: Any, name: str, where: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ModelFileError(f"{where}: {name} must be an object")
    return dict(value)


def _positive_int(value: Any, name: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelFileError(f"{where}: {name} must be a positive integer, not {value!r}")
    return value


@dataclass
class ValidationShares:
    """Per label, the share of validation rows predicted positive at the file's thresholds.

    Why in the model file: a monitoring job compares the share mlb-batch predicts positive
    on today's data with the share seen when the model was validated (``--report-json``'s
    drift check), and the file is the one thing that always travels with the model.
    ``labelled`` is the share labelled positive, for reference. Optional: files without
    it stay readable and their reports simply have no validation shares.
    """

    rows: int
    predicted: List[float]
    labelled: Optional[List[float]] = None
    split: str = "validation"

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"split": self.split, "rows": self.rows, "predicted_positive": list(self.predicted)}
        if self.labelled is not None:
            data["labelled_positive"] = list(self.labelled)
        return data

    @classmethod
    def from_dict(cls, data: Any, num_labels: int, where: str) -> "ValidationShares":
        def shares(value: Any, name: str) -> List[float]:
            if not isinstance(value, list) or len(value) != num_labels or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in value):
                raise ModelFileError(f"{where}: validation_shares.{name} must hold one share in [0, 1] per label")
            return [float(v) for v in value]

        if not isinstance(data, dict):
            raise ModelFileError(f"{where}: validation_shares must be an object")
        labelled = data.get("labelled_positive")
        return cls(
            rows=_positive_int(data.get("rows"), "validation_shares.rows", where),
            predicted=shares(data.get("predicted_positive"), "predicted_positive"),
            labelled=None if labelled is None else shares(labelled, "labelled_positive"),
            split=str(data.get("split", "validation")),
        )


@dataclass
class ModelHeader:
    """Everything ``mlb-batch`` needs to use an ONNX graph, stored inside the file."""

    label_names: List[str]
    thresholds: List[float]
    preprocessing: Preprocessing
    max_length: int
    tokenizer_json: str
    input_names: List[str]
    output_name: str = "logits"
    threshold_objective: str = "none"
    # e.g. {"mode": "int8", "config": "avx512_vnni"} or {"mode": "none"}; informative only.
    quantization: Dict[str, Any] = field(default_factory=lambda: {"mode": "none"})
    provenance: Dict[str, Any] = field(default_factory=dict)
    problem_type: str = PROBLEM_TYPE
    activation: str = ACTIVATION
    format_version: int = BASE_VERSION
    validation_shares: Optional[ValidationShares] = None
    # Each text is encoded as the pair (label_segment, text), only the text truncated, token
    # types as the tokenizer's pair template says (--label-input). Makes the file version 2.
    label_segment: Optional[str] = None
    # How the graph's head reads the encoder ({"pooling": "cls"|"mean"|"label-tokens", ...});
    # informative: the pooling is inside the graph.
    head: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.thresholds = [float(t) for t in self.thresholds]
        _check_labels_and_thresholds(self.label_names, self.thresholds, "model header")
        _check_label_segment(self.label_segment, "model header")
        if self.label_segment is not None:
            self.format_version = max(self.format_version, LABEL_SEGMENT_VERSION)
        if self.validation_shares is not None and len(self.validation_shares.predicted) != len(self.label_names):
            raise ModelFileError("model header: validation_shares must hold one share per label")
        if self.problem_type != PROBLEM_TYPE or self.activation != ACTIVATION:
            raise ModelFileError(
                f"model header: problem type {self.problem_type!r} with {self.activation!r} outputs is not "
                f"a multi-label sigmoid model"
            )
        if "input_ids" not in self.input_names:
            raise ModelFileError("model header: the graph inputs must include input_ids")

    @property
    def tokenizer_sha256(self) -> str:
        return sha256_text(self.tokenizer_json)

    @classmethod
    def from_checkpoint_config(
        cls, config: CheckpointConfig, tokenizer_json: str, input_names: List[str], **extra: Any
    ) -> "ModelHeader":
        return cls(
            label_names=list(config.label_names),
            thresholds=list(config.thresholds),
            preprocessing=config.preprocessing,
            max_length=config.max_length,
            threshold_objective=config.threshold_objective,
            tokenizer_json=tokenizer_json,
            input_names=list(input_names),
            label_segment=config.label_segment,
            head=dict(config.head) if config.head is not None else None,
            **extra,
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "problem_type": self.problem_type,
            "activation": self.activation,
            "label_names": list(self.label_names),
            "thresholds": list(self.thresholds),
            "threshold_objective": self.threshold_objective,
            "preprocessing": self.preprocessing.to_dict(),
            "max_length": self.max_length,
            "input_names": list(self.input_names),
            "output_name": self.output_name,
            "quantization": self.quantization,
            "tokenizer": {"format": "huggingface-tokenizers-json", "sha256": self.tokenizer_sha256, "json": self.tokenizer_json},
            "provenance": self.provenance,
            **({"validation_shares": self.validation_shares.to_dict()} if self.validation_shares else {}),
            **({"label_segment": self.label_segment} if self.label_segment is not None else {}),
            **({"head": dict(self.head)} if self.head is not None else {}),
        }

    def to_metadata(self) -> Dict[str, str]:
        """Key/value strings for ONNX ``metadata_props``."""
        return {METADATA_KEY: json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], where: str = "model file") -> "ModelHeader":
        raw = metadata.get(METADATA_KEY)
        if raw is None:
            raise ModelFileError(
                f"{where}: no mlb header in the ONNX metadata; export the model with mlb-export"
            )
        try:
            data = json.loads(raw)
        except ValueError:
            raise ModelFileError(f"{where}: the mlb header is not valid JSON (damaged file?)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{where}: the mlb header is not an mlb header")
        _check_version(data.get("format_version"), where)
        try:
            tokenizer = data["tokenizer"]
            tokenizer_json = tokenizer["json"]
            if not isinstance(tokenizer_json, str) or sha256_text(tokenizer_json) != tokenizer["sha256"]:
                raise ModelFileError(f"{where}: the tokenizer's checksum does not match (damaged file)")
            return cls(
                label_names=list(data["label_names"]),
                thresholds=list(data["thresholds"]),
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                max_length=_positive_int(data["max_length"], "max_length", where),
                tokenizer_json=tokenizer_json,
                input_names=list(data["input_names"]),
                output_name=str(data.get("output_name", "logits")),
                threshold_objective=str(data.get("threshold_objective", "none")),
                quantization=dict(data.get("quantization") or {"mode": "none"}),
                provenance=dict(data.get("provenance") or {}),
                problem_type=str(data["problem_type"]),
                activation=str(data["activation"]),
                format_version=int(data["format_version"]),
                validation_shares=(None if data.get("validation_shares") is None else ValidationShares.from_dict(
                    data["validation_shares"], len(data["label_names"]), where)),
                label_segment=data.get("label_segment"),
                head=_optional_dict(data.get("head"), "head", where),
            )
        except ModelFileError as exc:
            if str(exc).startswith(where):
                raise
            raise ModelFileError(f"{where}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{where}: the mlb header lacks or garbles field {exc}") from None


def attach_header(onnx_model: Any, header: ModelHeader) -> None:
    """Write the header into an ``onnx.ModelProto`` in place (exporter side; needs ``onnx``)."""
    metadata = header.to_metadata()
    kept = [p for p in onnx_model.metadata_props if p.key not in metadata]
    del onnx_model.metadata_props[:]
    onnx_model.metadata_props.extend(kept)
    for key, value in metadata.items():
        prop = onnx_model.metadata_props.add()
        prop.key = key
        prop.value = value

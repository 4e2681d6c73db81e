"""Checkpoint folder -> one self-describing, verified ONNX file.

``export_model`` is the whole of ``mlb-export``; the CLI only parses options. Steps:

1. inspect the checkpoint and refuse what mlb cannot serve (before loading anything);
2. load the PyTorch model from safetensors (never pickle, never remote code);
3. export with optimum's ONNX exporter (dynamic batch and sequence axes) into a scratch folder;
4. verify the plain fp32 graph against PyTorch; then optionally optimize / quantize with
   optimum's ORT tools and verify the result (see ``exporter.validate``);
5. attach the mlb header (``batch.modelfile``) and publish atomically: a temporary file in
   the target folder, then ``os.replace``, so a reader never sees half a file and a failed
   export leaves the previous file in place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..batch.errors import MlbError, ModelFileError, UsageError
from ..batch.modelfile import (
    CHECKPOINT_CONFIG_FILE,
    PROBLEM_TYPE,
    CheckpointConfig,
    ModelHeader,
    attach_header,
)
from ..batch.preprocess import Preprocessing

from . import quantize as _q
from .validate import EXACT, LOSSY, SAMPLE_TEXTS, GateLimits, ValidationReport

# ONNX files are one protobuf message, and protobuf cannot serialize a message of 2 GiB or
# more; bigger models must keep their weights in separate "external data" files. mlb ships
# one file so nothing that travels beside it can get lost, so such models are refused. The
# margin leaves room for the graph itself and the header (tokenizer JSON).
ONNX_SINGLE_FILE_LIMIT = 2**31 - 1
SIZE_MARGIN = 64 * 1024**2
# Hugging Face checkpoints without mlb.json: the longest input mlb will assume.
DEFAULT_MAX_LENGTH_CAP = 512
# optimum's default for BERT-like encoders is 14; older opsets lack ops it needs.
MIN_OPSET = 11
MAX_OPSET = 21
TASK = "text-classification"

Echo = Callable[[str], None]


@dataclass
class CheckpointInfo:
    """What ``inspect_checkpoint`` learned without loading the weights."""

    folder: str
    config: CheckpointConfig  # from mlb.json, or derived from config.json
    has_mlb_json: bool
    hf_config: Dict[str, Any]
    weights: List[str]
    max_positions: Optional[int]


@dataclass
class ExportResult:
    path: str
    header: ModelHeader
    size_bytes: int
    reports: List[ValidationReport] = field(default_factory=list)


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
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise ModelFileError(
            f"{folder}: no tokenizer.json (fast tokenizer); the exported file carries it so mlb-batch can tokenize "
            "without transformers: save the tokenizer with AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)"
        )
    id2label = hf.get("id2label") or {}
    try:
        ordered = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    except (TypeError, ValueError):
        raise ModelFileError(f"{config_path}: id2label keys are not label indexes") from None
    num_labels = len(ordered) or int(hf.get("num_labels", 0) or 0)
    max_positions = hf.get("max_position_embeddings")
    max_positions = int(max_positions) if isinstance(max_positions, int) and max_positions > 0 else None

    has_mlb = os.path.exists(os.path.join(folder, CHECKPOINT_CONFIG_FILE))
    if has_mlb:
        config = CheckpointConfig.load(folder)
        if num_labels and len(config.label_names) != num_labels:
            raise ModelFileError(
                f"{folder}: {CHECKPOINT_CONFIG_FILE} names {len(config.label_names)} labels but the model has {num_labels} outputs"
            )
    else:
        if not ordered:
            raise ModelFileError(f"{config_path}: no id2label, so the outputs have no names")
        config = CheckpointConfig(
            label_names=ordered,
            thresholds=[0.5] * len(ordered),
            preprocessing=Preprocessing(emoji="keep", mentions="keep", urls="keep"),
            max_length=_default_max_length(folder, max_positions),
            threshold_objective="none",
            provenance={"derived_from": "config.json (no mlb.json): labels from id2label, thresholds 0.5"},
        )
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
    return CheckpointInfo(folder=folder, config=config, has_mlb_json=has_mlb, hf_config=hf, weights=weights,
                          max_positions=max_positions)


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


def prepare_output(output: str) -> str:
    """Check the output path and reserve a temporary file beside it (proves it is writable)."""
    if output in ("", "-"):
        raise UsageError("OUT.onnx must be a file path (a model file is not written to stdout)")
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a folder; name the .onnx file to write")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"{output}: cannot write there (folder {folder} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(output) + ".", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write there ({exc.strerror or exc})") from None
    return tmp


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


def _load_torch(folder: str):
    """Model and fast tokenizer from safetensors, without remote code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
    except Exception as exc:
        raise ModelFileError(f"{folder}: cannot load the model ({_q._one_line(exc)})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False, local_files_only=True)
    except Exception as exc:
        raise ModelFileError(f"{folder}: cannot load the tokenizer ({_q._one_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelFileError(f"{folder}: the tokenizer is not a fast tokenizer (tokenizer.json)")
    model.eval()
    return model, tokenizer


def _header_tokenizer_json(tokenizer: Any) -> str:
    """The loaded fast tokenizer as JSON, with any saved truncation or padding removed
    (the runtime sets both from the header's max_length)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok.to_str()


def _check_size(model: Any, folder: str) -> int:
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if nbytes > ONNX_SINGLE_FILE_LIMIT - SIZE_MARGIN:
        raise ModelFileError(
            f"{folder}: the weights take {nbytes / 1024**3:.2f} GiB, over what one ONNX file can hold (2 GiB, the "
            "protobuf message limit); larger models need external weight files beside the .onnx, and mlb writes "
            "one self-describing file so that no piece can go missing in deployment: use a smaller model"
        )
    return nbytes


def _onnx_export(model: Any, folder: str, out_dir: str, opset: Optional[int]) -> str:
    """optimum's exporter from the loaded model (dynamic batch/sequence axes are its default)."""
    from optimum.exporters.onnx import onnx_export_from_model

    try:
        with warnings.catch_warnings():
            # The tracer's notes about constants in attention-mask code are expected for
            # BERT-like encoders; the verification step is what tells a real problem.
            warnings.simplefilter("ignore")
            onnx_export_from_model(
                model, output=out_dir, task=TASK, opset=opset, do_validation=False, device="cpu",
                no_dynamic_axes=False,
            )
    except MlbError:
        raise
    except Exception as exc:
        raise MlbError(f"{folder}: optimum's ONNX export failed ({_q._one_line(exc)})") from None
    path = os.path.join(out_dir, "model.onnx")
    if not os.path.exists(path):
        raise MlbError(f"{folder}: optimum's ONNX export wrote no model.onnx")
    if any(n != "model.onnx" and (n.endswith(".onnx_data") or n.endswith(".data")) for n in os.listdir(out_dir)):
        raise ModelFileError(f"{folder}: the export needed external weight files; mlb writes one file only")
    return path


def _graph_io(onnx_model: Any) -> tuple:
    initializers = {i.name for i in onnx_model.graph.initializer}
    inputs = [i.name for i in onnx_model.graph.input if i.name not in initializers]
    outputs = [o.name for o in onnx_model.graph.output]
    return inputs, outputs


def _save_with_header(src_path: str, dst_path: str, header: ModelHeader) -> None:
    import onnx

    model = onnx.load(src_path)
    attach_header(model, header)
    data = model.SerializeToString()
    if len(data) > ONNX_SINGLE_FILE_LIMIT:
        raise ModelFileError(f"{dst_path}: the model file would exceed ONNX's 2 GiB single-file limit")
    with open(dst_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def export_model(
    model_dir: str,
    output: str,
    *,
    quantize: str = "none",
    quantize_config: Optional[str] = None,
    optimize: Optional[str] = None,
    opset: Optional[int] = None,
    max_length: Optional[int] = None,
    validate_on: Optional[str] = None,
    validate_options: Optional[Dict[str, Any]] = None,
    validate_limit: Optional[int] = None,
    limits: Optional[GateLimits] = None,
    force: bool = False,
    echo: Optional[Echo] = None,
) -> ExportResult:
    """Export ``model_dir`` to the single file ``output``; verify it; publish it atomically.

    Raises ``batch.errors.MlbError`` subclasses (one-line messages) for anything the user
    can fix; the previous ``output`` (if any) is untouched unless the export succeeds.
    """
    say: Echo = echo or (lambda _msg: None)
    limits = limits or GateLimits()
    if quantize not in _q.QUANTIZE_MODES:
        raise UsageError(f"--quantize {quantize!r}: use one of {', '.join(_q.QUANTIZE_MODES)}")
    if quantize_config is not None and quantize == "none":
        raise UsageError("--quantize-config needs --quantize int8")
    if opset is not None and not (MIN_OPSET <= opset <= MAX_OPSET):
        raise UsageError(f"--opset {opset}: use an opset from {MIN_OPSET} to {MAX_OPSET}")
    if validate_limit is not None and validate_limit < 1:
        raise UsageError(f"--validate-limit must be at least 1, not {validate_limit}")
    _q.check_optimize_level(optimize, quantize)
    config_name = _q.pick_quantization_config(quantize_config) if quantize == "int8" else None

    info = inspect_checkpoint(model_dir, max_length=max_length)
    config = info.config
    if validate_on is not None and not os.path.exists(validate_on):
        raise UsageError(f"--validate-on {validate_on}: file not found")
    tmp_out = prepare_output(output)
    try:
        return _export(info, output, tmp_out, quantize, config_name, optimize, opset, validate_on,
                       validate_options or {}, validate_limit, limits, force, say)
    finally:
        if os.path.exists(tmp_out):
            os.unlink(tmp_out)


def _export(info: CheckpointInfo, output: str, tmp_out: str, quantize: str, config_name: Optional[str],
            optimize: Optional[str], opset: Optional[int], validate_on: Optional[str],
            validate_options: Dict[str, Any], validate_limit: Optional[int], limits: GateLimits,
            force: bool, say: Echo) -> ExportResult:
    from . import validate as v

    config = info.config
    # Texts first: a bad --validate-on file should fail before minutes of export.
    if validate_on is not None:
        texts, y_true, source = v.load_validation_texts(validate_on, config.label_names, limit=validate_limit,
                                                         **validate_options)
    else:
        texts, y_true, source = list(SAMPLE_TEXTS), None, "built-in sample"
    texts = config.preprocessing.apply(texts)

    say(f"loading {info.folder}")
    model, tokenizer = _load_torch(info.folder)
    if model.config.num_labels != len(config.label_names):
        raise ModelFileError(
            f"{info.folder}: the model has {model.config.num_labels} outputs but {len(config.label_names)} label names"
        )
    _check_size(model, info.folder)
    tokenizer_json = _header_tokenizer_json(tokenizer)

    provenance: Dict[str, Any] = {
        "exporter": "mlb-export",
        "source_checkpoint": os.path.abspath(info.folder),
        "source_has_mlb_json": info.has_mlb_json,
        "source_weights_sha256": _weights_sha256(info.folder, info.weights),
        "checkpoint_provenance": config.provenance,
        "architecture": (info.hf_config.get("architectures") or [None])[0],
        "model_type": info.hf_config.get("model_type"),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "versions": _versions(),
        "task": TASK,
        "optimization": None,
    }

    say(f"PyTorch reference on {len(texts)} texts ({source})")
    reference = v.torch_probabilities(model, tokenizer, texts, config.max_length)

    reports: List[ValidationReport] = []
    with tempfile.TemporaryDirectory(prefix="mlb-export-") as work:
        fp32_dir = os.path.join(work, "fp32")
        say("exporting with optimum (fp32, dynamic batch and sequence axes)")
        fp32_path = _onnx_export(model, info.folder, fp32_dir, opset)
        del model  # free memory before onnxruntime sessions

        import onnx

        proto = onnx.load(fp32_path, load_external_data=False)
        input_names, output_names = _graph_io(proto)
        provenance["opset"] = int(next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0))
        del proto
        if "logits" not in output_names:
            raise MlbError(f"{info.folder}: the exported graph has no 'logits' output ({', '.join(output_names)})")

        def make_header(quantization: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> ModelHeader:
            prov = dict(provenance)
            prov.update(extra or {})
            return ModelHeader.from_checkpoint_config(
                config, tokenizer_json, input_names, quantization=quantization, provenance=prov
            )

        plain = optimize is None and quantize == "none"
        fp32_header = make_header({"mode": "none"})
        fp32_target = tmp_out if plain else os.path.join(work, "fp32-checked.onnx")
        _save_with_header(fp32_path, fp32_target, fp32_header)
        report = v.compare(reference, v.onnx_probabilities(fp32_target, texts), config.thresholds,
                           kind=EXACT, variant="fp32", source=source, y_true=y_true, limits=limits)
        reports.append(report)
        say(report.table())
        if report.failures:
            raise MlbError(f"{info.folder}: the fp32 export does not match PyTorch: {'; '.join(report.failures)}")

        header = fp32_header
        if not plain:
            current_dir, current_file = fp32_dir, "model.onnx"
            quantization: Dict[str, Any] = {"mode": "none"}
            variant_parts = []
            if optimize is not None:
                say(f"optimizing the graph ({optimize})")
                opt = _q.optimize_graph(current_dir, current_file, os.path.join(work, "optimized"), optimize)
                current_dir, current_file = os.path.dirname(opt["path"]), os.path.basename(opt["path"])
                provenance["optimization"] = {k: val for k, val in opt.items() if k != "path"}
                variant_parts.append(optimize)
                if optimize == "O4":
                    quantization = {"mode": "fp16", "via": "optimize O4"}
            if quantize == "int8":
                say(f"quantizing to int8 (dynamic, {config_name} preset)")
                qz = _q.quantize_int8(current_dir, current_file, os.path.join(work, "quantized"), config_name)
                current_dir, current_file = os.path.dirname(qz["path"]), os.path.basename(qz["path"])
                quantization = {k: val for k, val in qz.items() if k != "path"}
            variant = " ".join([quantization["mode"] if quantization["mode"] != "none" else "fp32"] + variant_parts)
            final_path = os.path.join(current_dir, current_file)
            # Optimizers may rewrite the graph's inputs: the header names the final graph's.
            input_names, _ = _graph_io(onnx.load(final_path, load_external_data=False))
            header = make_header(quantization)
            _save_with_header(final_path, tmp_out, header)
            exact = quantize == "none" and optimize in ("O1", "O2")
            report = v.compare(reference, v.onnx_probabilities(tmp_out, texts), config.thresholds,
                               kind=EXACT if exact else LOSSY, variant=variant, source=source, y_true=y_true,
                               limits=limits, force=force)
            reports.append(report)
            say(report.table())
            if report.failures and not force:
                hint = "" if exact else "; pass --force to write it anyway, or loosen the limit"
                raise MlbError(f"{output}: not written: the {variant} file {'; '.join(report.failures)}{hint}")

        # Record what was checked inside the file itself, then publish.
        header.provenance = dict(header.provenance, validation=[r.to_dict() for r in reports])
        _save_with_header(tmp_out, tmp_out, header)
    os.replace(tmp_out, output)
    size = os.path.getsize(output)
    say(f"wrote {output} ({size / 1024**2:.1f} MiB)")
    return ExportResult(path=output, header=header, size_bytes=size, reports=reports)

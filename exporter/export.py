"""Checkpoint folder -> one self-describing, verified ONNX file.

``export_model`` is the whole of ``mlb-export``; the CLI only parses options. Steps:

1. inspect the checkpoint and refuse what mlb cannot serve (before loading anything,
   ``exporter.checkpoint``);
2. load the PyTorch model from safetensors (never pickle, never remote code);
3. export with optimum's ONNX exporter (dynamic batch and sequence axes) into a scratch folder;
4. verify the plain fp32 graph against PyTorch; then optionally optimize (optimum's levels),
   fuse (onnxruntime's transformer fusions, checked exactly) and quantize (an int8 scheme of
   ``exporter.quantize``), and verify the result (see ``exporter.validate``);
5. attach the mlb header (``mlbert.modelfile``) and publish atomically (``mlbert.io.atomic``):
   a reader never sees half a file and a failed export leaves the previous file in place.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mlbert.errors import MlbError, ModelFileError, UsageError, library_step
from mlbert.modelfile import CheckpointConfig, ModelHeader, attach_header
from mlbert.io.atomic import publish_file, umask_file_mode
from mlbert.runtime.cpus import batch_dependence_note

from mlbert.trainer.torch_checkpoint import checkpoint_probabilities, load_checkpoint
from mlbert.exporter import quantize as _q
from mlbert.exporter.checkpoint_info import CheckpointInfo, inspect_checkpoint
from mlbert.exporter.provenance import HeaderMaker, export_provenance, validation_shares
from mlbert.exporter.validate import EXACT, LOSSY, SAMPLE_TEXTS, GateLimits, ValidationReport

# ONNX files are one protobuf message, and protobuf cannot serialize a message of 2 GiB or
# more; bigger models must keep their weights in separate "external data" files. mlb ships
# one file so nothing that travels beside it can get lost, so such models are refused. The
# margin leaves room for the graph itself and the header (tokenizer JSON).
ONNX_SINGLE_FILE_LIMIT = 2**31 - 1
SIZE_MARGIN = 64 * 1024**2
# optimum's default for BERT-like encoders is 14; older opsets lack ops it needs.
MIN_OPSET = 11
MAX_OPSET = 21
TASK = "text-classification"

Echo = Callable[[str], None]


@dataclass
class ExportResult:
    path: str
    header: ModelHeader
    size_bytes: int
    reports: List[ValidationReport] = field(default_factory=list)


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
    limits.check()
    _q.check_optimize_level(optimize, quantize)
    scheme = _q.pick_int8_scheme(quantize_config) if quantize == "int8" else None

    info = inspect_checkpoint(model_dir, max_length=max_length)
    if validate_on is not None and not os.path.exists(validate_on):
        raise UsageError(f"--validate-on {validate_on}: file not found")
    tmp_out = prepare_output(output)
    try:
        return _export(info, output, tmp_out, scheme, optimize, opset, validate_on,
                       validate_options or {}, validate_limit, limits, force, say)
    finally:
        if os.path.exists(tmp_out):
            os.unlink(tmp_out)


def _export(info: CheckpointInfo, output: str, tmp_out: str, scheme: Optional[_q.Int8Scheme],
            optimize: Optional[str], opset: Optional[int], validate_on: Optional[str],
            validate_options: Dict[str, Any], validate_limit: Optional[int], limits: GateLimits,
            force: bool, say: Echo) -> ExportResult:
    config = info.config
    # Texts first: a bad --validate-on file should fail before minutes of export.
    sample = _comparison_texts(config, validate_on, validate_options, validate_limit)
    say(f"loading {info.folder}")
    model, tokenizer = _load_checked(info)
    headers = HeaderMaker(config, _header_tokenizer_json(tokenizer), export_provenance(info, TASK),
                          validation_shares(info.folder, config.thresholds))
    say(f"PyTorch reference on {len(sample.texts)} texts ({sample.source})")
    sample.reference = checkpoint_probabilities(model, tokenizer, config.preprocessing.apply(sample.texts),
                                                config.max_length)

    plain = optimize is None and scheme is None
    with tempfile.TemporaryDirectory(prefix="mlb-export-") as work:
        fp32_dir = os.path.join(work, "fp32")
        say("exporting with optimum (fp32, dynamic batch and sequence axes)")
        fp32_path = _onnx_export(model, info.folder, fp32_dir, opset)
        del model  # free memory before onnxruntime sessions
        input_names = _checked_graph_inputs(fp32_path, info.folder, headers.provenance)
        header = headers.make(input_names, {"mode": "none"})
        fp32_target = tmp_out if plain else os.path.join(work, "fp32-checked.onnx")
        _save_with_header(fp32_path, fp32_target, header)
        reports = [_verify_fp32(fp32_target, sample, config, limits, info.folder, say)]
        if not plain:
            steps = _Steps(optimize=optimize, scheme=scheme, hf_config=info.encoder_config)
            header, step_reports = _optimized_file(fp32_dir, work, tmp_out, output, steps, headers, sample, limits,
                                                   force, say)
            reports.extend(step_reports)
        # Record what was checked inside the file itself, then publish.
        header.provenance = dict(header.provenance, validation=[r.to_dict() for r in reports])
        _save_with_header(tmp_out, tmp_out, header)
    publish_file(tmp_out, output)
    size = os.path.getsize(output)
    say(f"wrote {output} ({size / 1024**2:.1f} MiB)")
    return ExportResult(path=output, header=header, size_bytes=size, reports=reports)


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
        os.chmod(tmp, umask_file_mode())  # mkstemp makes 0600; the published model follows the umask
    except OSError as exc:
        raise UsageError(f"{output}: cannot write there ({exc.strerror or exc})") from None
    return tmp


# --------------------------------------------------------------------------- the comparison texts


@dataclass
class _Sample:
    """The raw texts the file is checked on, their labels when known, and PyTorch's probabilities.

    PyTorch gets the texts preprocessed by the checkpoint's settings; the written file gets
    them raw, through ``mlbert.load(...)``, which must apply the same preprocessing from the
    file's own header: the check covers the whole chain a user runs.
    """

    texts: List[str]
    y_true: Optional[np.ndarray]
    source: str
    reference: Optional[np.ndarray] = None

    def check(self, path: str, thresholds: List[float], *, kind: str, variant: str, limits: GateLimits,
              force: bool = False) -> ValidationReport:
        """The written file's probabilities (the Python API, as mlb-batch runs it) against PyTorch's."""
        from mlbert.runtime.classifier import load
        from mlbert.exporter import validate as v

        written = load(path, "cpu").predict_proba(self.texts)
        return v.compare(self.reference, written, thresholds, kind=kind, variant=variant, source=self.source,
                         y_true=self.y_true, limits=limits, force=force)


def _comparison_texts(config: CheckpointConfig, validate_on: Optional[str], validate_options: Dict[str, Any],
                      validate_limit: Optional[int]) -> _Sample:
    """``--validate-on`` rows in the model's label order, or the built-in sample."""
    from mlbert.exporter import validate as v

    if validate_on is not None:
        texts, y_true, source = v.load_validation_texts(validate_on, config.label_names, limit=validate_limit,
                                                         **validate_options)
    else:
        texts, y_true, source = list(SAMPLE_TEXTS), None, "built-in sample"
    return _Sample(texts=list(texts), y_true=y_true, source=source)


# --------------------------------------------------------------------------- the PyTorch model


def _load_checked(info: CheckpointInfo) -> Tuple[Any, Any]:
    """The model and tokenizer, refused when the outputs do not match the labels or cannot fit one file."""
    model, tokenizer = load_checkpoint(info.folder, local_files_only=True)
    if model.config.num_labels != len(info.config.label_names):
        raise ModelFileError(
            f"{info.folder}: the model has {model.config.num_labels} outputs but {len(info.config.label_names)} label names"
        )
    _check_size(model, info.folder)
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


# --------------------------------------------------------------------------- ONNX files


def _onnx_export(model: Any, folder: str, out_dir: str, opset: Optional[int]) -> str:
    """optimum's exporter from the loaded model (dynamic batch/sequence axes are its default).

    mlb's own classifier (mean pooling, label tokens) goes through optimum's ``export`` with
    the encoder's ONNX config (``exporter.onnx_config``); every other model through
    ``onnx_export_from_model``.
    """
    from mlbert.exporter.onnx_config import export_mlb_classifier, is_mlb_classifier

    with library_step(f"{folder}: optimum's ONNX export"), warnings.catch_warnings():
        # The tracer's notes about constants in attention-mask code are expected for
        # BERT-like encoders; the verification step is what tells a real problem.
        warnings.simplefilter("ignore")
        if is_mlb_classifier(model):
            export_mlb_classifier(model, out_dir, opset, TASK)
        else:
            from optimum.exporters.onnx import onnx_export_from_model

            onnx_export_from_model(
                model, output=out_dir, task=TASK, opset=opset, do_validation=False, device="cpu",
                no_dynamic_axes=False,
            )
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


def _input_names(path: str) -> List[str]:
    import onnx

    return _graph_io(onnx.load(path, load_external_data=False))[0]


def _checked_graph_inputs(path: str, folder: str, provenance: Dict[str, Any]) -> List[str]:
    """The exported graph's inputs; records its opset in ``provenance``; it must output ``logits``."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    input_names, output_names = _graph_io(proto)
    provenance["opset"] = int(next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0))
    del proto
    if "logits" not in output_names:
        raise MlbError(f"{folder}: the exported graph has no 'logits' output ({', '.join(output_names)})")
    return input_names


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


# --------------------------------------------------------------------------- verification


def _verify_fp32(path: str, sample: _Sample, config: CheckpointConfig, limits: GateLimits, folder: str,
                 say: Echo) -> ValidationReport:
    """The plain fp32 file must match PyTorch exactly (within ``limits.atol``, same decisions)."""
    report = sample.check(path, config.thresholds, kind=EXACT, variant="fp32", limits=limits)
    say(report.table())
    if report.failures:
        raise MlbError(f"{folder}: the fp32 export does not match PyTorch: {'; '.join(report.failures)}")
    return report


@dataclass
class _Steps:
    """What is done to the verified fp32 graph: optimum's optimization level, then an int8 scheme."""

    optimize: Optional[str]
    scheme: Optional[_q.Int8Scheme]
    hf_config: Dict[str, Any]

    @property
    def exact(self) -> bool:
        """Only operator fusions (O1/O2): the result must still match PyTorch exactly."""
        return self.scheme is None and self.optimize in ("O1", "O2")

    def variant(self) -> str:
        return " ".join(["int8" if self.scheme else ("fp16" if self.optimize == "O4" else "fp32")]
                        + ([self.optimize] if self.optimize else []) + ([self.scheme.name] if self.scheme else []))


def _optimized_file(fp32_dir: str, work: str, tmp_out: str, output: str, steps: _Steps, headers: HeaderMaker,
                    sample: _Sample, limits: GateLimits, force: bool,
                    say: Echo) -> Tuple[ModelHeader, List[ValidationReport]]:
    """Optimize and/or fuse and quantize the fp32 graph into ``tmp_out`` with its header, and verify it.

    O1/O2 and the transformer fusions only fuse operators, so they are checked exactly;
    int8, O3 and O4 are lossy and gated on the metric drops (``force`` writes a file that
    fails the gate).
    """
    current = os.path.join(fp32_dir, "model.onnx")
    quantization: Dict[str, Any] = {"mode": "none"}
    reports: List[ValidationReport] = []
    if steps.optimize is not None:
        say(f"optimizing the graph ({steps.optimize})")
        opt = _q.optimize_graph(fp32_dir, "model.onnx", os.path.join(work, "optimized"), steps.optimize)
        current = str(opt["path"])
        headers.provenance["optimization"] = {k: val for k, val in opt.items() if k != "path"}
        if steps.optimize == "O4":
            quantization = {"mode": "fp16", "via": "optimize O4"}
    if steps.scheme is not None:
        if steps.scheme.fuse and not _q.fusable(steps.hf_config):
            say(f"onnxruntime's transformer fusions do not know {steps.hf_config.get('model_type')!r} graphs: "
                "quantizing the unfused graph (the header records fused: false)")
            steps.scheme = replace(steps.scheme, fuse=False)
        if steps.scheme.fuse:
            current, report = _fused(current, work, steps, headers, sample, limits, say)
            reports.append(report)
        say(f"quantizing to int8 ({steps.scheme.name} scheme: {steps.scheme.suits})")
        calibration = _calibration(current, headers, sample, say) if steps.scheme.calibrated else None
        if not steps.scheme.row_independent:
            say(f"note: {batch_dependence_note(steps.scheme.settings())}")
        qz = _q.quantize_int8(current, os.path.join(work, "int8.onnx"), steps.scheme, calibration)
        current = str(qz["path"])
        quantization = {k: val for k, val in qz.items() if k != "path"}
    header = _write_final(current, tmp_out, headers, quantization)
    variant = steps.variant()
    report = sample.check(tmp_out, headers.config.thresholds, kind=EXACT if steps.exact else LOSSY, variant=variant,
                          limits=limits, force=force)
    say(report.table())
    if report.failures and not force:
        hint = "" if steps.exact else "; pass --force to write it anyway, or loosen the limit"
        raise MlbError(f"{output}: not written: the {variant} file {'; '.join(report.failures)}{hint}")
    return header, reports + [report]


def _calibration(path: str, headers: HeaderMaker, sample: _Sample, say: Echo) -> Any:
    """The comparison texts (at most ``CALIBRATION_MAX_ROWS``) and a header for the graph ``path`` to read them."""
    from mlbert.exporter.calibrate import Calibration

    say(f"calibrating on {min(len(sample.texts), _q.CALIBRATION_MAX_ROWS)} of the comparison texts ({sample.source})")
    return Calibration(list(sample.texts[:_q.CALIBRATION_MAX_ROWS]), headers.make(_input_names(path), {"mode": "none"}))


def _write_final(path: str, tmp_out: str, headers: HeaderMaker, quantization: Dict[str, Any]) -> ModelHeader:
    """``path`` with its header into ``tmp_out``; optimizers may rewrite the graph's inputs, so the
    header names the final graph's."""
    header = headers.make(_input_names(path), quantization)
    _save_with_header(path, tmp_out, header)
    return header


def _fused(current: str, work: str, steps: _Steps, headers: HeaderMaker, sample: _Sample, limits: GateLimits,
           say: Echo) -> Tuple[str, ValidationReport]:
    """The transformer fusions of ``current``, checked exactly against PyTorch before quantizing."""
    attention = steps.scheme is None or steps.scheme.fuse_attention
    say(f"fusing {'attention, ' if attention else ''}layer norms and GELU (onnxruntime transformer fusions)")
    fused = _q.fuse_encoder(current, os.path.join(work, "fused.onnx"), steps.hf_config, attention=attention)
    headers.provenance["fusion"] = {k: val for k, val in fused.items() if k != "path"}
    checked = os.path.join(work, "fused-checked.onnx")
    _write_final(str(fused["path"]), checked, headers, {"mode": "none"})
    report = sample.check(checked, headers.config.thresholds, kind=EXACT, variant="fp32 fused", limits=limits)
    say(report.table())
    if report.failures:
        raise MlbError(f"the transformer fusions changed the model's answers: {'; '.join(report.failures)}; "
                       "use --quantize-config unfused")
    return str(fused["path"]), report

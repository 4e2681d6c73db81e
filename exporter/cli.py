"""``mlb-export``: a thin click layer over ``exporter.export.export_model``.

Library errors (``batch.errors.MlbError``) become one ``Error: ...`` line and their exit
code; ``MLB_RAISE_ERRORS=1`` shows the traceback instead.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import click

from mlbert.cli_common import MlbCommand
from mlbert.trainer.options import labelled_data_options, read_options

from mlbert import __version__
from mlbert.exporter.quantize import DEFAULT_INT8_SCHEME, OPTIMIZE_LEVELS, QUANTIZE_CONFIGS, QUANTIZE_MODES


def _stopped_message(what: str, obj: Dict[str, Any]) -> str:
    return f"stopped by {what}; the previous output file (if any) is unchanged"


@click.command(cls=MlbCommand, stopped=_stopped_message)
@click.version_option(__version__, "--version", prog_name="mlb-export")
@click.argument("model_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.argument("output", metavar="OUT.onnx", type=click.Path(dir_okay=True))
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default="none", show_default=True,
              help="int8: int8 matrix products (about a quarter of the size, faster on CPU), gated on agreement "
                   "with PyTorch row by row and on accuracy.")
@click.option("--quantize-config", type=click.Choice(QUANTIZE_CONFIGS),
              help=f"int8 scheme [default: {DEFAULT_INT8_SCHEME}: one activation scale per token, so a row's "
                   "scores depend on that row alone; signed 7-bit weights that never saturate, one file for every CPU]; "
                   "docs/EXPORT.md compares them.")
@click.option("--optimize", type=click.Choice(OPTIMIZE_LEVELS),
              help="optimum graph optimization level. O1/O2 fuse operators (checked exactly); O3 adds an approximate "
                   "GELU; O4 is fp16 for CUDA GPUs only.")
@click.option("--opset", type=int, help="ONNX opset (default: optimum's for the architecture, 14 for BERT).")
@click.option("--max-length", type=int, help="Longest input in tokens stored in the file (default: the checkpoint's).")
@click.option("--validate-on", metavar="FILE", type=click.Path(dir_okay=False),
              help="Labelled file (any layout mlb-train reads) to verify on; default: a built-in sample of 32 texts.")
@click.option("--validate-limit", type=int, metavar="N", help="Verify on the first N rows of --validate-on.")
@labelled_data_options("--validate-on", exclude=("label_names_file",))
@click.option("--max-f1-drop", type=float, default=1.0, show_default=True,
              help="Quantized/approximate files: largest allowed micro-F1 drop against PyTorch, in points.")
@click.option("--max-macro-f1-drop", type=float, default=1.5, show_default=True,
              help="Largest allowed macro-F1 drop, in points.")
@click.option("--max-jaccard-drop", type=float, default=1.0, show_default=True,
              help="Largest allowed samples-Jaccard drop, in points.")
@click.option("--min-row-agreement", type=float, default=90.0, show_default=True, metavar="PERCENT",
              help="Quantized/approximate files: least share of rows whose label set stays PyTorch's.")
@click.option("--max-score-diff", type=float, default=0.25, show_default=True,
              help="Quantized/approximate files: largest allowed change of any one score against PyTorch.")
@click.option("--force", is_flag=True, help="Write a quantized/approximate file even when it fails the accuracy gate.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def cli(**kwargs: Any) -> None:
    """Export a trained checkpoint to ONE ONNX file that mlb-batch needs nothing beside.

    \b
    Export and check against the PyTorch model on a built-in sample:
      mlb-export run/ model.onnx
    \b
    int8 for CPU serving, calibrated and gated on labelled data (GoEmotions validation):
      mlb-export run/ model-int8.onnx --quantize int8 --validate-on data/goemotions/dev.tsv.gz
    \b
    Any Hugging Face checkpoint with problem_type "multi_label_classification":
      mlb-export path/to/hf-checkpoint model.onnx --max-length 256

    The file's metadata carries labels, thresholds, preprocessing, max length, the
    tokenizer and provenance (docs/MODEL_FORMAT.md). Every export is verified: fp32 must
    match PyTorch within 1e-4 with the same decisions; int8 must give --min-row-agreement
    of the rows PyTorch's labels, change no score by more than --max-score-diff, and lose
    no more than the --max-*-drop limits on --validate-on data (else refused unless --force);
    the default int8 scheme also calibrates on those texts. The file is
    written to a temporary name beside OUT.onnx and renamed, so a reader never sees half
    a file and a failed export keeps the previous one.
    """
    from mlbert.exporter.export import export_model
    from mlbert.exporter.validate import GateLimits

    quiet = kwargs["quiet"]
    validate_options = _validate_options(kwargs)
    limits = GateLimits(
        max_micro_f1_drop=kwargs["max_f1_drop"],
        max_macro_f1_drop=kwargs["max_macro_f1_drop"],
        max_jaccard_drop=kwargs["max_jaccard_drop"],
        min_row_agreement=kwargs["min_row_agreement"],
        max_score_diff=kwargs["max_score_diff"],
    )
    result = export_model(
        kwargs["model_dir"],
        kwargs["output"],
        quantize=kwargs["quantize"],
        quantize_config=kwargs["quantize_config"],
        optimize=kwargs["optimize"],
        opset=kwargs["opset"],
        max_length=kwargs["max_length"],
        validate_on=kwargs["validate_on"],
        validate_options=validate_options,
        validate_limit=kwargs["validate_limit"],
        limits=limits,
        force=kwargs["force"],
        echo=None if quiet else (lambda line: click.echo(line, err=True)),
    )
    if not quiet:
        click.echo(f"{result.path}\t{result.size_bytes} bytes\t{len(result.header.label_names)} labels\t"
                   f"{result.header.quantization.get('mode', 'none')}")


def _validate_options(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """How to read --validate-on (the options given); those options without --validate-on are an error."""
    validate_options = read_options(kwargs)
    if kwargs["validate_on"] is None:
        used = [k for k in ("format_", "header", "text_column", "id_column", "labels", "label_column", "validate_limit")
                if kwargs[k] is not None]
        if used:
            raise click.UsageError(f"--{used[0].rstrip('_').replace('_', '-')} needs --validate-on FILE")
    return validate_options


def main(args: Optional[List[str]] = None, prog_name: str = "mlb-export") -> None:
    """Console entry point: user errors become one line and an exit code, not a traceback."""
    cli.main(args, prog_name=prog_name)

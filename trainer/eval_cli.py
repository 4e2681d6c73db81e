"""``mlb-eval``: how good is this model (or these two models) on my labelled data?

A thin click layer over ``trainer.evaluate``. ``.onnx`` files run through the batch
runtime exactly like ``mlb-batch``; checkpoint folders through transformers. Library
errors (``batch.errors.MlbError``) become one ``Error: ...`` line and their exit code;
``MLB_RAISE_ERRORS=1`` shows the traceback instead.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from mlbert.cli_common import MlbCommand
from mlbert.runtime.providers import token_budget_help
from mlbert.errors import MlbError, UsageError
from mlbert.io.atomic import write_text_atomic

from mlbert import __version__
from mlbert.trainer.options import labelled_data_options, read_options


def read_eval_data(path: str, model_label_names: Sequence[str], *, label_names_file: Optional[str] = None,
                   **options: Any):
    """Read DATA like ``mlb-train`` does, choosing label names so they can be matched to the model's.

    With ``--label-names`` those names are used. Otherwise the data names its own labels
    (wide-layout columns, or the label names in a list column); when those are a strict
    subset of the model's (a list-layout file in which some label never occurs), it is read
    again against the model's full label list so absent labels become all-zero columns.
    """
    from mlbert.trainer.data import read_label_names_file, read_labelled_file

    if label_names_file:
        return read_labelled_file(path, label_names=read_label_names_file(label_names_file), **options)
    data = read_labelled_file(path, **options)
    names, wanted = set(data.label_names), set(model_label_names)
    if names < wanted and path != "-" and options.get("layout") != "wide" and not options.get("label_columns"):
        data = read_labelled_file(path, label_names=list(model_label_names), **options)
    return data


@click.command(cls=MlbCommand)
@click.version_option(__version__, "--version", prog_name="mlb-eval")
@click.argument("paths", nargs=-1, required=True, metavar="MODEL [MODEL2] DATA")
@labelled_data_options("DATA")
@click.option("--json", "json_path", metavar="FILE", help="Also write every number as JSON to FILE (- for stdout).")
@click.option("--report", "report_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Write report.md/report.html with per-label plots to DIR.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the models run.")
@click.option("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use).")
@click.option("--token-budget", type=int, metavar="N", envvar="MLB_TOKEN_BUDGET",
              help=f"Padded tokens per batch (default: {token_budget_help()}, as mlb-batch).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def cli(paths: Sequence[str], **kw: Any) -> None:
    """Score one model, or compare two, on labelled data.

    \b
    An exported file on the GoEmotions test split (TSV, label ids, names file):
      mlb-eval model.onnx data/goemotions/test.tsv.gz --label-names data/goemotions/emotions.txt

    \b
    Is the int8 file as good as the checkpoint it came from? (B - A deltas, and how
    many rows keep their labels)
      mlb-eval run/ model.onnx test.csv --json compare.json

    \b
    Per-label plots and a report a person can open:
      mlb-eval model.onnx test.csv --report eval-report/

    \b
    Your own model against the built-in one, on your labelled data:
      mlb-eval goemotions my-model.onnx my-labelled.csv

    MODEL is an .onnx file written by mlb-export (run exactly as mlb-batch runs it), a
    built-in model's name (goemotions), or a checkpoint folder written by mlb-train (any multi-label Hugging Face checkpoint works,
    at threshold 0.5). DATA is labelled data in any layout and format mlb-train reads;
    its label names are matched to the model's by name. The table shows samples Jaccard,
    micro/macro F1, exact match, micro/macro ROC-AUC and per-label precision, recall and
    F1, at the model's thresholds and at 0.5; with two models also the row agreement: the
    share of rows whose label set is the same and the largest score difference.
    """
    from mlbert.trainer.evaluate import format_report, load_eval_model

    *model_paths, data_path = _checked_paths(paths, kw)
    quiet = kw["quiet"]

    def log(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    models = [
        load_eval_model(p, device=kw["device"], threads=kw["threads"], token_budget=kw["token_budget"])
        for p in model_paths
    ]
    data = read_eval_data(data_path, models[0].label_names, label_names_file=kw["label_names_file"], **read_options(kw))
    evaluations = [_evaluate(model, data, log) for model in models]
    if kw["json_path"] != "-":
        click.echo(format_report(evaluations), nl=False)
    if kw["json_path"]:
        _write_json(kw["json_path"], evaluations, log)
    if kw["report_dir"]:
        _write_report(kw["report_dir"], evaluations, log)


def _checked_paths(paths: Sequence[str], kw: Dict[str, Any]) -> List[str]:
    """MODEL [MODEL2] DATA, after the checks that need no file."""
    if len(paths) not in (2, 3):
        raise UsageError(f"give MODEL DATA or MODEL MODEL2 DATA ({len(paths)} paths given)")
    if kw["threads"] is not None and kw["threads"] < 1:
        raise UsageError(f"--threads must be at least 1, not {kw['threads']}")
    if kw["token_budget"] is not None and kw["token_budget"] < 1:
        raise UsageError(f"--token-budget must be a positive number of tokens, not {kw['token_budget']}")
    return list(paths)


def _evaluate(model: Any, data: Any, log: Callable[[str], None]) -> Any:
    from mlbert.trainer.evaluate import evaluate_model

    started = time.time()
    evaluation = evaluate_model(model, data.texts, data.label_names, data.labels, data.source)
    seconds = time.time() - started
    log(f"Scored {len(data.texts)} rows with {model.path} in {seconds:.1f} s "
        f"({len(data.texts) / max(seconds, 1e-9):.0f} rows/s)")
    return evaluation


def _write_json(json_path: str, evaluations: Sequence[Any], log: Callable[[str], None]) -> None:
    """Every number as JSON, on stdout for ``-``, else to a file replaced atomically."""
    from mlbert.trainer.evaluate import to_json

    text = json.dumps(to_json(evaluations), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if json_path == "-":
        click.echo(text, nl=False)
        return
    try:
        write_text_atomic(json_path, text)
    except OSError as exc:
        raise MlbError(f"{json_path}: cannot write ({exc.strerror or exc})") from None
    log(f"Wrote {json_path}")


def _write_report(report_dir: str, evaluations: Sequence[Any], log: Callable[[str], None]) -> None:
    from mlbert.trainer.evaluate import write_eval_report

    try:
        path = write_eval_report(report_dir, evaluations)
    except OSError as exc:
        raise MlbError(f"{report_dir}: cannot write the report ({exc.strerror or exc})") from None
    log(f"Wrote {path}")


def main(args: Optional[List[str]] = None, prog_name: str = "mlb-eval") -> None:
    """Console entry point: user errors become one line and an exit code, not a traceback."""
    cli.main(args, prog_name=prog_name)


if __name__ == "__main__":  # pragma: no cover
    main()

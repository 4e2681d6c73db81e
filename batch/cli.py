"""``mlb-batch``: a thin click layer over ``pipeline`` (one file) and ``inbox`` (many).

Errors, exit codes, Ctrl-C and SIGTERM are handled by ``cli_common.MlbCommand`` as for
every mlb command: a stop between batches leaves the previous output in place and the
line printed says how far the run got and that ``--resume`` continues.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional

import click

from mlbert import __version__
from mlbert.cli_common import MlbCommand
from mlbert.errors import ExitCode, UsageError
from mlbert.io.columns import TEXT_COLUMN_NAMES
from mlbert.io.formats import format_names
from mlbert.runtime.providers import DEVICES, token_budget_help


class _Progress:
    """One self-overwriting stderr line with rows/s, only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, rows: int, errors: int, bytes_read: int, size: Optional[int]) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        percent = f"{100.0 * bytes_read / size:5.1f}%  " if size else ""
        sys.stderr.write(f"\r{percent}{rows:,} rows  {errors:,} errors  {rows / elapsed:,.0f} rows/s ")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _stopped_message(what: str, obj: Dict[str, Any]) -> str:
    job = obj.get("job")
    if job is None:
        return f"stopped by {what}"
    keep = "" if job.options.output == "-" else f"; {job.options.output} is unchanged, --resume continues"
    return f"stopped by {what} after {job.summary.rows} rows{keep}"


HELP = """Classify the texts in INPUT with an mlb ONNX model; one output record per input row.

\b
Examples (without --model or MLB_MODEL: the built-in GoEmotions model, 28 emotions):
    mlb-batch tweets.csv -o labels.jsonl
    echo "I'm so happy" | mlb-batch -
    mlb-batch tweets.csv -m model.onnx -o labels.jsonl
    mlb-batch comments.tsv.gz --text-column body --id-column id -o labels.csv
    mlb-batch tweets.jsonl --threshold 0.4 --threshold joy=0.3 --top-k 3 --no-scores

\b
Many inputs (files, a folder, a quoted glob) -> one output each in a folder;
files already done are skipped on the next run:
    mlb-batch /data/inbox/ -m model.onnx -o /data/labels/
    mlb-batch 'exports/*.csv.gz' extra.tsv -m model.onnx -o labels/ --output-format csv

\b
On a Ray cluster (pip install 'mlbert[ray]'): a pool of actors, same output bytes:
    mlb-batch /data/inbox/ -m model.onnx -o labels/ --engine ray --ray-address auto

\b
Parquet and object storage (pip install 'mlbert[parquet,cloud]'):
    mlb-batch s3://lake/in/today.parquet -m model.onnx -o s3://lake/labels/today.parquet
    mlb-batch 's3://lake/in/*.parquet' -m model.onnx -o s3://lake/labels/ --report-json run.json

\b
Cron (MLB_MODEL set once; --resume continues a killed run):
    0 3 * * * MLB_MODEL=/srv/model.onnx mlb-batch /data/today.csv -o /data/labels.jsonl --resume --quiet

INPUT is CSV, TSV, JSON lines or plain text (one text per line), optionally .gz, or
Parquet (pip install 'mlbert[parquet]'); "-" is stdin (plain text unless --format says
otherwise); s3://, gs://, az:// and https:// URLs are read through fsspec. The output is
JSON lines unless its name ends in .csv, .tsv or .parquet, gzip-compressed when it ends
in .gz (labels.jsonl.gz). Every input row gets one record: rows that cannot be classified
(empty text, malformed line, a quote that never closes) get a record with "error" and
"row". A named pipe, a device or /dev/stdout given to -o is written straight into; a
symlink's target is replaced and the link kept. With an output folder (-o DIR/) each input
NAME.csv becomes DIR/NAME.jsonl (or .csv/.tsv/.parquet with --output-format) and
DIR/NAME.jsonl.done marks it done; a failed file is reported and the others still run; an
empty folder or a glob that matches nothing is nothing to do (exit 0).

\b
Exit codes: 0 success, or nothing to do; 3 success but more error rows than
--max-errors allows (default 0); 1 failure: an input that cannot be read, an
output, lock or report that cannot be written (previous output untouched);
2 usage error; 4 another run holds the output's lock; 130 / 143 stopped by
Ctrl-C / SIGTERM (previous output untouched).
"""


@click.command(cls=MlbCommand, help=HELP, stopped=_stopped_message)
@click.version_option(__version__, "--version", prog_name="mlb-batch")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE|DIR/",
              help="Output file (.jsonl, .csv, .tsv or .parquet; a path or an s3://, gs://, az:// URL), - for "
                   "stdout, or a folder (one output per input). Written atomically.")
@click.option("-m", "--model", metavar="FILE.onnx|NAME",
              help="Model written by mlb-export, or a built-in model's name (goemotions). Default: MLB_MODEL, "
                   "else the built-in goemotions model (English, 28 emotions). [env: MLB_MODEL]")
@click.option("--format", "format_", type=click.Choice(format_names(aliases=True)),
              help="Input format when the name does not say (default for stdin: text).")
@click.option("--header/--no-header", default=None,
              help="Whether CSV/TSV input has a header row (default: detect; a one-column file has one only when "
                   "its first line is a known column name such as text or id).")
@click.option("--encoding", metavar="NAME",
              help="The input's text encoding (default utf-8): latin-1, cp1252, utf-16, shift_jis, ...")
@click.option("--text-column", metavar="NAME|N",
              help=f"Column with the text (default: the first present of {', '.join(TEXT_COLUMN_NAMES)}, any case; "
                   "else the only column; without such a name, the column with by far the most letters; or give "
                   "its 1-based position). The summary names the column and why.")
@click.option("--id-column", "id_columns", multiple=True, metavar="NAME|N",
              help="Column copied to each record; repeatable; N is a 1-based position in a file without a header "
                   "(default: id/ID if present, else the row number).")
@click.option("--output-format", type=click.Choice(format_names(writable=True)),
              help="Output format (default: from the output name; JSON lines for stdout).")
@click.option("-t", "--threshold", "thresholds", multiple=True, metavar="P|LABEL=P",
              help="Override the model's thresholds: one number for every label and/or LABEL=P; repeatable.")
@click.option("-k", "--top-k", type=click.IntRange(min=1), metavar="K",
              help="Keep at most K labels (the highest-scoring above threshold) and only the K best scores.")
@click.option("--scores/--no-scores", default=True, show_default=True, help="Include per-label probabilities.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="cuda fails at once if the CUDA provider cannot start; auto uses it when it works.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads (default: the CPUs this process may use, affinity and cgroup quota).")
@click.option("--streams", type=click.IntRange(min=1), metavar="N",
              help="Batches scored at once on a CPU, sharing the threads (default: 2 from 2 threads on); "
                   "the output does not depend on it.")
@click.option("--token-budget", type=click.IntRange(min=1), envvar="MLB_TOKEN_BUDGET", metavar="TOKENS",
              help=f"Padded tokens per batch (default: {token_budget_help()}). [env: MLB_TOKEN_BUDGET]")
@click.option("--chunk-size", type=click.IntRange(min=1), default=4096, show_default=True, metavar="ROWS",
              help="Rows read, tokenized and written at a time (memory is proportional to it).")
@click.option("--resume", is_flag=True,
              help="Continue a killed run from its last checkpoint (OUTPUT.progress); the result is byte-identical.")
@click.option("--redo", is_flag=True, help="With an output folder: run inputs whose outputs are already done too.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: a pool of Ray actors (pip install 'mlbert[ray]').")
@click.option("--ray-address", envvar="RAY_ADDRESS", metavar="ADDRESS",
              help="Ray cluster to join (auto, ray://head:10001); default: start a local one. [env: RAY_ADDRESS]")
@click.option("--ray-concurrency", type=click.IntRange(min=1), metavar="ACTORS",
              help="Predictor actors (default: cluster CPUs / --threads, or one per GPU with cuda).")
@click.option("--ray-batch-size", type=click.IntRange(min=1), metavar="ROWS",
              help="Rows per actor call (default: sized so that each actor gets about 4 calls per file, at "
                   "most --chunk-size; the summary names it, and the local engine with that --chunk-size "
                   "gives the same bytes).")
@click.option("--staging-dir", envvar="MLB_STAGING_DIR", metavar="DIR",
              help="For an output URL: where its partial, progress and lock files live until the upload "
                   "(default: ~/.cache/mlbert/staging). [env: MLB_STAGING_DIR]")
@click.option("--report-json", metavar="FILE",
              help="After the run (failed runs too), write a JSON report for monitoring: rows, errors by kind, "
                   "speed, model SHA-256, per-label positive shares against validation, drift flags.")
@click.option("--report-prom", metavar="FILE.prom",
              help="The same numbers in Prometheus text format (for node-exporter's textfile collector), labelled "
                   "with job and input.")
@click.option("--job", "job_name", metavar="NAME",
              help="The job label of --report-prom and the report's job (default: the output's name).")
@click.option("--max-errors", default="0", show_default=True, metavar="N|P%",
              help="Error rows tolerated before exit 3: a count (10) or a share of the rows (0.5%).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line and no summary (errors are still printed).")
def cli(inputs: tuple, output: str, model: Optional[str], format_: Optional[str], header: Optional[bool],
        encoding: Optional[str], text_column: Optional[str], id_columns: tuple, output_format: Optional[str],
        thresholds: tuple, top_k: Optional[int], scores: bool, device: str, threads: Optional[int],
        streams: Optional[int], token_budget: Optional[int], chunk_size: int, resume: bool, redo: bool, engine: str,
        ray_address: Optional[str], ray_concurrency: Optional[int], ray_batch_size: Optional[int],
        staging_dir: Optional[str], report_json: Optional[str], report_prom: Optional[str], job_name: Optional[str],
        max_errors: str, quiet: bool) -> int:
    from mlbert.batch.job import BatchOptions, ErrorTolerance
    from mlbert.batch.reporting import Reports
    from mlbert.models import resolve_model

    options = BatchOptions(
        input=inputs[0], output=output, model=model, format=format_, header=header, text_column=text_column,
        id_columns=id_columns, output_format=output_format, thresholds=thresholds, top_k=top_k, scores=scores,
        device=device, threads=threads, streams=streams, token_budget=token_budget, chunk_size=chunk_size, resume=resume,
        staging_dir=staging_dir, encoding=encoding,
    )
    if threads:
        # tokenizers' Rust thread pool reads this when it first starts.
        os.environ.setdefault("RAYON_RS_NUM_CPUS", str(threads))
    reports = Reports(report_json, report_prom, inputs, output, model, job_name, max_errors)
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    made: List[Any] = []
    job = None
    try:
        # The named model, else MLB_MODEL, else the built-in one; a broken built-in file is reported too.
        options.model = reports.where["model"] = resolve_model(model).source
        tolerance = ErrorTolerance.parse(max_errors)
        reports.check()  # a report that cannot be written is known before the output is touched
        job = _make_runner(inputs, options, engine, ray_address, ray_concurrency, ray_batch_size, redo, quiet,
                           made)
        click.get_current_context().obj["job"] = job  # for the line printed if the run is stopped
        job.prepare()
        summary = job.run(on_progress=progress)
    except BaseException as exc:
        reports.failed(job, exc)
        raise
    finally:
        progress.finish()
        for each in made:  # the Ray engine's actors stop now, not when the process ends
            each.close()
    if not quiet:
        for note in summary.notes:
            click.echo(f"mlb-batch: {note}", err=True)
        click.echo(summary.line(), err=True)
    code = _exit_code(summary, tolerance)
    reports.finished(job, summary, code)
    return code


def _exit_code(summary: Any, tolerance: Any) -> int:
    """0, or 3 when the error rows are more than --max-errors allows; an inbox's failed or locked files first."""
    code = getattr(summary, "exit_code", None)  # an inbox decides from all its files
    code = code if code is not None else ExitCode.ROW_ERRORS if summary.errors else ExitCode.OK
    if code == ExitCode.ROW_ERRORS and tolerance.allows(summary.errors, summary.rows):
        return ExitCode.OK
    return code


def _make_runner(inputs: tuple, options: Any, engine: str, ray_address: Optional[str],
                 ray_concurrency: Optional[int], ray_batch_size: Optional[int], redo: bool, quiet: bool,
                 made: List[Any]) -> Any:
    """One BatchJob for one input -> FILE/stdout; an InboxRun for an output folder. Ray jobs go into ``made``."""
    from mlbert.batch.inbox import InboxRun, plan
    from mlbert.batch.pipeline import BatchJob

    if engine != "ray" and (ray_address or ray_concurrency or ray_batch_size):
        given = [n for n, v in (("--ray-concurrency", ray_concurrency), ("--ray-batch-size", ray_batch_size)) if v]
        if given:  # RAY_ADDRESS alone may be set in the environment for other tools
            raise UsageError(f"{', '.join(given)} need --engine ray")

    def make_job(job_options: Any) -> Any:
        if engine == "ray":
            from mlbert.batch.ray.engine import RayBatchJob, RayOptions

            made.append(RayBatchJob(job_options, RayOptions(ray_address, ray_concurrency, ray_batch_size)))
            return made[-1]
        return BatchJob(job_options)

    planned = plan(inputs, options.output, options.output_format)
    if not planned.inbox:
        options.input = planned.files[0].input
        return make_job(options)
    return InboxRun(planned, options, make_job, redo=redo, echo=lambda line: click.echo(line, err=True), quiet=quiet)


def main(args: Optional[List[str]] = None, prog_name: str = "mlb-batch") -> None:
    """Console entry point (``mlb-batch``, ``python -m mlbert.batch``)."""
    cli.main(args, prog_name=prog_name)


if __name__ == "__main__":  # pragma: no cover
    main()

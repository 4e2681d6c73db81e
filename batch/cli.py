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
from mlbert.cli_common import MlbCommand, Stopped
from mlbert.errors import ExitCode, MlbError, UsageError, first_line
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
Examples:
    mlb-batch tweets.csv -m model.onnx -o labels.jsonl
    echo "I'm so happy" | mlb-batch - -m model.onnx
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
JSON lines unless its name ends in .csv, .tsv or .parquet. Rows that cannot be classified
(empty text, malformed line) get a record with "error" and "row". With an output folder
(-o DIR/) each input NAME.csv becomes DIR/NAME.jsonl (or .csv/.tsv/.parquet with
--output-format) and DIR/NAME.jsonl.done marks it done; a failed file is reported and the
others still run.

\b
Exit codes: 0 success; 3 success but some rows had errors; 2 usage error;
1 failure (previous output untouched); 4 another run holds the output's lock;
130 / 143 stopped by Ctrl-C / SIGTERM (previous output untouched).
"""


@click.command(cls=MlbCommand, help=HELP, stopped=_stopped_message)
@click.version_option(__version__, "--version", prog_name="mlb-batch")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE|DIR/",
              help="Output file (.jsonl, .csv, .tsv or .parquet; a path or an s3://, gs://, az:// URL), - for "
                   "stdout, or a folder (one output per input). Written atomically.")
@click.option("-m", "--model", envvar="MLB_MODEL", metavar="FILE.onnx",
              help="Model written by mlb-export. [env: MLB_MODEL]")
@click.option("--format", "format_", type=click.Choice(format_names(aliases=True)),
              help="Input format when the name does not say (default for stdin: text).")
@click.option("--header/--no-header", default=None, help="Whether CSV/TSV input has a header row (default: detect).")
@click.option("--text-column", metavar="NAME|N",
              help="Column with the text (default: text, Tweet, sentence, comment, content, body or message; "
                   "without a header row, the column with by far the most letters, or give its 1-based position).")
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
              help="The same numbers in Prometheus text format (for node-exporter's textfile collector).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line and no summary (errors are still printed).")
def cli(inputs: tuple, output: str, model: Optional[str], format_: Optional[str], header: Optional[bool],
        text_column: Optional[str], id_columns: tuple, output_format: Optional[str], thresholds: tuple,
        top_k: Optional[int], scores: bool, device: str, threads: Optional[int], streams: Optional[int], token_budget: Optional[int],
        chunk_size: int, resume: bool, redo: bool, engine: str, ray_address: Optional[str],
        ray_concurrency: Optional[int], ray_batch_size: Optional[int], staging_dir: Optional[str],
        report_json: Optional[str], report_prom: Optional[str], quiet: bool) -> int:
    from mlbert.batch.job import BatchOptions

    options = BatchOptions(
        input=inputs[0], output=output, model=model, format=format_, header=header, text_column=text_column,
        id_columns=id_columns, output_format=output_format, thresholds=thresholds, top_k=top_k, scores=scores,
        device=device, threads=threads, streams=streams, token_budget=token_budget, chunk_size=chunk_size, resume=resume,
        staging_dir=staging_dir,
    )
    if threads:
        # tokenizers' Rust thread pool reads this when it first starts.
        os.environ.setdefault("RAYON_RS_NUM_CPUS", str(threads))
    reports = _Reports(report_json, report_prom, inputs, output, model)
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    made: List[Any] = []
    job = None
    try:
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
    code = getattr(summary, "exit_code", None)  # an inbox decides from all its files
    code = code if code is not None else ExitCode.ROW_ERRORS if summary.errors else ExitCode.OK
    reports.finished(job, summary, code)
    return code


class _Reports:
    """``--report-json`` / ``--report-prom``: written once the run ends, however it ends."""

    STATUS = {ExitCode.OK: "ok", ExitCode.ROW_ERRORS: "row_errors", ExitCode.LOCKED: "locked"}

    def __init__(self, json_path: Optional[str], prom_path: Optional[str], inputs: tuple, output: str,
                 model: Optional[str]):
        from mlbert.io.storage import is_url

        self.paths = (json_path, prom_path)
        self.where = dict(inputs=list(inputs), output=output, model=model, started=time.time())
        for path in self.paths:  # a report that cannot be written is known before the run, not after
            folder = os.path.dirname(os.path.abspath(path)) if path and not is_url(path) else None
            if folder is not None and not os.path.isdir(folder):
                raise UsageError(f"{path}: the report's folder {folder} does not exist")

    def finished(self, job: Any, summary: Any, code: int) -> None:
        self._write(job, summary, code, self.STATUS.get(code, "failed"), None)

    def failed(self, job: Any, exc: BaseException) -> None:
        """Report a run that raised; a report that then fails to write must not hide the run's error."""
        if isinstance(exc, (KeyboardInterrupt, Stopped)):
            code = ExitCode.SIGINT if isinstance(exc, KeyboardInterrupt) else ExitCode.SIGTERM
            status, message = "stopped", "stopped by " + ("Ctrl-C" if code == ExitCode.SIGINT else "SIGTERM")
        elif isinstance(exc, MlbError):
            code, message = exc.exit_code, str(exc)
            status = "locked" if code == ExitCode.LOCKED else "failed"
        else:
            code, status, message = ExitCode.FAILURE, "failed", first_line(exc)
        summary = getattr(job, "result", None) or getattr(job, "summary", None)
        if summary is None:  # stopped before a job existed (no input matched, an option refused)
            from mlbert.batch.job import Summary

            summary = Summary(output=self.where["output"])
        try:
            self._write(job, summary, code, status, message)
        except (MlbError, OSError) as report_error:
            click.echo(f"Error: the run report could not be written: {first_line(report_error)}", err=True)

    def _write(self, job: Any, summary: Any, code: int, status: str, error: Optional[str]) -> None:
        if not any(self.paths):
            return
        from mlbert.batch.run_report import build_report, run_facts, write_json_report, write_prometheus

        report = build_report(run_facts(job, summary, exit_code=int(code), status=status, error=error, **self.where))
        json_path, prom_path = self.paths
        try:
            if json_path:
                write_json_report(json_path, report)
            if prom_path:
                write_prometheus(prom_path, report)
        except OSError as exc:
            raise MlbError(f"{exc.filename or json_path or prom_path}: cannot write the run report "
                           f"({exc.strerror or exc})") from None


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

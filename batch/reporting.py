"""``--report-json`` / ``--report-prom`` around one run of the CLI: checked before it, written after it.

Why here and not in the command: monitoring must see every run that got as far as its
checks, failed and stopped runs included, and a report that cannot be written must be
known before the output is touched, not after yesterday's output was replaced. So the
report paths are checked first (``atomic.check_destination``: exit 1, one line naming
the path), and the reports are written however the run ends, each one that can be.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence, Set

import click

from mlbert.cli_common import Stopped
from mlbert.errors import ExitCode, MlbError, first_line
from mlbert.io import atomic, storage

STATUS = {ExitCode.OK: "ok", ExitCode.ROW_ERRORS: "row_errors", ExitCode.LOCKED: "locked"}


def default_job_name(output: str) -> str:
    """The ``job`` label when ``--job`` is not given: the output's name (``stdout`` for ``-``)."""
    if output == "-":
        return "stdout"
    return storage.basename(output.rstrip("/")) or output


class Reports:
    """The run's report files; ``check`` before the run, then ``finished`` or ``failed``."""

    def __init__(self, json_path: Optional[str], prom_path: Optional[str], inputs: Sequence[str], output: str,
                 model: Optional[str], job_name: Optional[str], max_errors: str):
        self.paths = [p for p in (json_path, prom_path) if p]
        self.json_path, self.prom_path = json_path, prom_path
        self.where: Dict[str, Any] = dict(inputs=list(inputs), output=output, model=model, started=time.time(),
                                          job_name=job_name or default_job_name(output), max_errors=max_errors)
        self.unwritable: Set[str] = set()

    def check(self) -> None:
        """Every report path can be written; the first that cannot stops the run (the others still report it)."""
        first: Optional[MlbError] = None
        for path in self.paths:
            try:
                atomic.check_destination(path, "the run report")
            except MlbError as exc:
                self.unwritable.add(path)
                first = first or exc
        if first is not None:
            raise first

    def finished(self, job: Any, summary: Any, code: int) -> None:
        status = "nothing_to_do" if getattr(summary, "nothing_to_do", False) else STATUS.get(code, "failed")
        self._write(job, summary, code, status, None)

    def failed(self, job: Any, exc: BaseException) -> None:
        """Report a run that raised; a report that then fails to write must not hide the run's error."""
        if isinstance(exc, (KeyboardInterrupt, Stopped)):
            code = ExitCode.SIGINT if isinstance(exc, KeyboardInterrupt) else ExitCode.SIGTERM
            status, message = "stopped", "stopped by " + ("Ctrl-C" if code == ExitCode.SIGINT else "SIGTERM")
        elif isinstance(exc, MlbError):
            code, message = exc.exit_code, str(exc)
            status = "locked" if code == ExitCode.LOCKED else "failed"
        elif isinstance(exc, OSError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            code, status, message = ExitCode.FAILURE, "failed", f"{where}{exc.strerror or first_line(exc)}"
        else:
            code, status, message = ExitCode.FAILURE, "failed", first_line(exc)
        summary = getattr(job, "result", None) or getattr(job, "summary", None)
        if summary is None:  # stopped before a job existed (an option refused, a destination not writable)
            from mlbert.batch.job import Summary

            summary = Summary(output=self.where["output"])
        try:
            self._write(job, summary, code, status, message)
        except (MlbError, OSError) as report_error:
            click.echo(f"Error: the run report could not be written: {first_line(report_error)}", err=True)

    def _write(self, job: Any, summary: Any, code: int, status: str, error: Optional[str]) -> None:
        paths = [p for p in self.paths if p not in self.unwritable]
        if not paths:
            return
        from mlbert.batch.run_report import build_report, run_facts, write_json_report, write_prometheus

        report = build_report(run_facts(job, summary, exit_code=int(code), status=status, error=error, **self.where))
        for path in paths:
            try:
                if path == self.json_path:
                    write_json_report(path, report)
                else:
                    write_prometheus(path, report)
            except OSError as exc:
                raise MlbError(f"{exc.filename or path}: cannot write the run report ({exc.strerror or exc})") from None

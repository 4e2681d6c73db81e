"""The run report for monitoring: what a run did, as JSON (and Prometheus text) for machines.

Why: a nightly job watched by monitoring learns little from an exit code. ``--report-json``
writes after every run (failed and stopped runs too) the rows, the error rows by kind,
time and speed, the provider, which model file ran (its SHA-256), and per label the share
of rows predicted positive next to the share the model predicted positive on its
validation set (``ModelHeader.validation_shares``, stored by mlb-export). A label whose
share moved too far is flagged: the population-stability index of its positive/negative
split, ``PSI = sum((a - e) * ln(a / e))`` over {positive, negative}, above ``PSI_BOUND``.
``--report-prom`` writes the same numbers in Prometheus' text format, for node-exporter's
textfile collector, every sample labelled with the run's ``job`` (``--job``, default the
output's name) and ``input``, so the files of two jobs can be told apart. Both are written
atomically (``atomic.write_bytes_atomic``). The progress and summary lines for people are
unchanged.

The counts are kept per chunk (``Tally``) and saved in the resume checkpoint, so the
report of a resumed run covers every row of its output, not only the rows after the kill.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert import __version__
from mlbert.decisions import decide
from mlbert.io.atomic import write_bytes_atomic
from mlbert.io.storage import is_url

REPORT_VERSION = 1
# A label is flagged when the PSI of its predicted-positive share against the validation
# share exceeds this (0.1-0.25 is usually read as a moderate shift, above 0.25 as a major one).
PSI_BOUND = 0.2
# Shares are clipped to [PSI_EPSILON, 1 - PSI_EPSILON] so a share of 0 gives a finite PSI.
PSI_EPSILON = 1e-4
# Below this many scored rows a share is too noisy to call drift; the flag is then null.
DRIFT_MIN_ROWS = 100

# Row errors by kind: the start of each message the readers and the pipeline write.
ERROR_KINDS = (
    ("empty text", "empty_text"),
    ("no ", "missing_field"),
    ("bytes that are not UTF-8", "invalid_utf8"),
    ("bytes that are not ", "invalid_bytes"),
    ("malformed JSON", "malformed_json"),
    ("a JSON line must be an object", "not_an_object"),
    ("broken quote", "broken_quote"),
    ("malformed CSV", "malformed_row"),
    ("malformed TSV", "malformed_row"),
    ("expected ", "wrong_field_count"),
    ("unreadable row", "unreadable_row"),
)


def error_kind(message: str) -> str:
    """A stable name for a row error message (``other`` for one this table does not know)."""
    for prefix, kind in ERROR_KINDS:
        if message.startswith(prefix):
            return kind
    if message.endswith(" is null"):
        return "null_text"
    if " is not text" in message:
        return "not_text"
    return "other"


@dataclass
class Tally:
    """Counts over the rows written: scored rows, positives per label, error rows by kind."""

    positives: List[int]
    scored: int = 0
    error_kinds: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, labels: int) -> "Tally":
        return cls([0] * labels)

    def add_chunk(self, errors: Sequence[Optional[str]], probabilities: np.ndarray, thresholds: np.ndarray) -> None:
        """Count one chunk: ``probabilities`` has a row per row without an error."""
        for message in errors:
            if message is not None:
                kind = error_kind(message)
                self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        if len(probabilities):
            counts = decide(probabilities, thresholds).sum(axis=0)
            self.positives = [a + int(b) for a, b in zip(self.positives, counts)]
        self.scored += len(probabilities)

    def add(self, other: "Tally") -> None:
        if len(other.positives) == len(self.positives):
            self.positives = [a + b for a, b in zip(self.positives, other.positives)]
        self.scored += other.scored
        for kind, count in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count

    def to_dict(self) -> Dict[str, Any]:
        return {"positives": list(self.positives), "scored": self.scored, "error_kinds": dict(self.error_kinds)}

    @classmethod
    def from_dict(cls, data: Any, labels: int) -> "Tally":
        """A tally saved in a checkpoint; an empty one when it is missing or does not fit."""
        try:
            positives = [int(v) for v in data["positives"]]
            if len(positives) != labels:
                raise ValueError("label count")
            kinds = {str(k): int(v) for k, v in dict(data["error_kinds"]).items()}
            return cls(positives, int(data["scored"]), kinds)
        except (KeyError, TypeError, ValueError):
            return cls.empty(labels)


def psi(expected: float, actual: float) -> float:
    """Population-stability index of a two-way split (positive / negative)."""
    e = min(max(expected, PSI_EPSILON), 1 - PSI_EPSILON)
    a = min(max(actual, PSI_EPSILON), 1 - PSI_EPSILON)
    return (a - e) * math.log(a / e) + ((1 - a) - (1 - e)) * math.log((1 - a) / (1 - e))


def label_rows(label_names: Sequence[str], thresholds: Sequence[float], model_thresholds: Sequence[float],
               tally: Optional[Tally], validation: Any) -> List[Dict[str, Any]]:
    """Per label: threshold, positive rows and share, validation share, PSI and drift flag.

    The validation share was measured at the model's thresholds, so a label whose threshold
    was overridden (``--threshold``) has no validation share to compare with.
    """
    rows = []
    scored = tally.scored if tally is not None else 0
    for j, name in enumerate(label_names):
        positive = tally.positives[j] if tally is not None else 0
        share = positive / scored if scored else None
        same_threshold = abs(float(thresholds[j]) - float(model_thresholds[j])) < 1e-12
        expected = validation.predicted[j] if validation is not None and same_threshold else None
        index = psi(expected, share) if expected is not None and share is not None else None
        drift = None if index is None or scored < DRIFT_MIN_ROWS else index > PSI_BOUND
        rows.append({
            "name": name, "threshold": float(thresholds[j]), "positive_rows": positive,
            "positive_share": _rounded(share), "validation_share": expected,
            "psi": _rounded(index), "drift": drift,
        })
    return rows


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 6)


def model_fingerprint(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """Which model file ran: its path, size and SHA-256 (the whole file)."""
    if not path or is_url(path) or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": os.path.abspath(path), "size": os.path.getsize(path), "sha256": digest.hexdigest()}


@dataclass
class RunFacts:
    """What the CLI knows when a run ends, however it ended; ``classifier`` None if no model loaded."""

    inputs: List[str]
    output: str
    model: Optional[str]
    started: float
    exit_code: int
    status: str  # ok, row_errors, failed, locked, stopped
    error: Optional[str] = None
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    provider: str = ""
    resumed_from: int = 0
    files: Optional[Dict[str, int]] = None
    tally: Optional[Tally] = None
    classifier: Any = None
    job: str = ""
    rows_read: int = 0
    text_columns: List[Dict[str, str]] = field(default_factory=list)
    output_note: Optional[str] = None
    max_errors: str = "0"


def build_report(facts: RunFacts) -> Dict[str, Any]:
    """The report as a JSON-able dict (docs/BATCH.md lists the fields)."""
    clf = facts.classifier
    labels: List[Dict[str, Any]] = []
    if clf is not None:
        labels = label_rows(clf.label_names, list(clf.thresholds), clf.header.thresholds, facts.tally,
                            clf.header.validation_shares)
    flagged = [row["name"] for row in labels if row["drift"]]
    checked = any(row["drift"] is not None for row in labels)
    tally = facts.tally
    return {
        "report_version": REPORT_VERSION,
        "mlbert": __version__,
        "status": facts.status,
        "exit_code": facts.exit_code,
        "error": facts.error,
        "started_at": _iso(facts.started),
        "finished_at": _iso(time.time()),
        "job": facts.job,
        "inputs": list(facts.inputs),
        "output": facts.output,
        "output_mode": facts.output_note or ("stdout" if facts.output == "-" else "replaced atomically"),
        "files": facts.files,
        "text_columns": facts.text_columns,
        "rows": facts.rows,
        "rows_read": facts.rows_read,
        "records_written": facts.rows,
        "rows_scored": facts.rows - facts.errors,
        "error_rows": facts.errors,
        "max_errors": facts.max_errors,
        "error_rows_by_kind": dict(sorted((tally.error_kinds if tally else {}).items())),
        "resumed_after_row": facts.resumed_from,
        "seconds": round(facts.seconds, 3),
        "rows_per_second": round(facts.rows_per_second, 1),
        "provider": facts.provider,
        "model": model_fingerprint(facts.model),
        "drift": {
            "measure": "psi of the predicted-positive share against the validation share",
            "bound": PSI_BOUND,
            "min_rows": DRIFT_MIN_ROWS,
            "checked": checked,
            "labels_over_bound": flagged,
        },
        "labels": labels,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json_report(path: str, report: Dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# Every gauge of ``--report-prom`` with its help text (docs/BATCH.md lists them; a test holds the two equal).
METRICS = {
    "last_run_timestamp_seconds": "When the last run finished (Unix time).",
    "success": "1 if the last run wrote its output or had nothing to do (exit code 0 or 3), else 0.",
    "exit_code": "Exit code of the last run.",
    "rows": "Rows in the output of the last run.",
    "rows_read": "Rows the last run read from its input (always equal to records_written).",
    "records_written": "Records the last run wrote (one per row read).",
    "error_rows": "Rows that became error records, by kind.",
    "seconds": "Wall time of the last run.",
    "rows_per_second": "Rows classified per second in the last run.",
    "info": "The provider and model file of the last run.",
    "label_positive_share": "Share of scored rows predicted positive, per label.",
    "label_validation_share": "Share predicted positive on the validation set, per label.",
    "label_psi": "Population-stability index of the positive share against validation, per label.",
    "label_drift": f"1 if the label's PSI exceeds {PSI_BOUND}, per label.",
}


def _samples(report: Dict[str, Any]) -> Dict[str, List[tuple]]:
    """(labels, value) samples of each gauge; a value of None is left out (not known for this run)."""
    model = report.get("model") or {}
    rows = report["labels"]
    return {
        "last_run_timestamp_seconds": [({}, time.time())],
        "success": [({}, 1 if report["exit_code"] in (0, 3) else 0)],
        "exit_code": [({}, report["exit_code"])],
        "rows": [({}, report["rows"])],
        "rows_read": [({}, report.get("rows_read", report["rows"]))],
        "records_written": [({}, report.get("records_written", report["rows"]))],
        "error_rows": [({"kind": k}, v) for k, v in report["error_rows_by_kind"].items()] or [({"kind": "any"}, 0)],
        "seconds": [({}, report["seconds"])],
        "rows_per_second": [({}, report["rows_per_second"])],
        "info": [({"provider": report["provider"], "model_sha256": model.get("sha256", "")}, 1)],
        "label_positive_share": [({"label": r["name"]}, r["positive_share"]) for r in rows],
        "label_validation_share": [({"label": r["name"]}, r["validation_share"]) for r in rows],
        "label_psi": [({"label": r["name"]}, r["psi"]) for r in rows],
        "label_drift": [({"label": r["name"]}, None if r["drift"] is None else int(r["drift"])) for r in rows],
    }


def prometheus_text(report: Dict[str, Any]) -> str:
    """The report's numbers as Prometheus gauges (text exposition format 0.0.4), labelled with job and input."""
    run = {"job": report.get("job") or "", "input": " ".join(report.get("inputs") or [])}
    lines: List[str] = []
    for name, samples in _samples(report).items():
        lines.append(f"# HELP mlb_batch_{name} {METRICS[name]}")
        lines.append(f"# TYPE mlb_batch_{name} gauge")
        for labels, value in samples:
            if value is None:
                continue
            tags = ",".join(f'{k}="{_escape(str(v))}"' for k, v in {**labels, **run}.items())
            lines.append(f"mlb_batch_{name}{{{tags}}} {float(value):.10g}")
    return "\n".join(lines) + "\n"


def write_prometheus(path: str, report: Dict[str, Any]) -> None:
    """Written whole (a temporary file renamed), as the textfile collector requires."""
    write_bytes_atomic(path, prometheus_text(report).encode("utf-8"))


def _text_columns(summary: Any, inputs: Sequence[str]) -> List[Dict[str, str]]:
    """Per input, the text column its run used and the rule that chose it."""
    chosen = getattr(summary, "text_columns", None)
    if chosen is None:  # one file
        chosen = {inputs[0] if inputs else "-": getattr(summary, "text_column", None)}
    return [{"input": where, "name": c.name, "chosen_by": c.chosen_by} for where, c in chosen.items() if c is not None]


def run_facts(job: Any, summary: Any, *, inputs: Sequence[str], output: str, model: Optional[str], started: float,
              exit_code: int, status: str, error: Optional[str] = None, job_name: str = "",
              max_errors: str = "0") -> RunFacts:
    """``RunFacts`` from the CLI's runner (``BatchJob`` or ``InboxRun``) and its summary.

    ``summary`` is a ``job.Summary`` (one file) or an ``inbox.InboxSummary`` (several),
    as far as the run got; both carry rows, errors, seconds, provider and a ``Tally``.
    """
    files = None
    seconds = summary.seconds or (time.time() - started)  # a run that failed has not set its time
    if hasattr(summary, "processed"):  # an inbox: per-file counts
        files = {"total": summary.files, "written": summary.processed, "skipped_as_done": summary.skipped,
                 "failed": len(summary.failed), "locked": len(summary.locked)}
        speed = summary.rows / seconds if seconds > 0 else 0.0
    else:
        done = summary.rows - summary.resumed_from
        speed = done / seconds if seconds > 0 else 0.0
    return RunFacts(
        inputs=list(inputs), output=output, model=model, started=started, exit_code=exit_code, status=status,
        error=error, rows=summary.rows, errors=summary.errors, seconds=seconds, rows_per_second=speed,
        provider=summary.provider, resumed_from=getattr(summary, "resumed_from", 0), files=files,
        tally=summary.tally, classifier=getattr(job, "classifier", None), job=job_name,
        rows_read=getattr(summary, "rows_read", summary.rows), text_columns=_text_columns(summary, inputs),
        output_note=getattr(summary, "output_note", None), max_errors=max_errors,
    )

"""Check an exported file against the PyTorch model it came from, on the same texts.

Why always on: an export that silently changes answers (a tokenizer that does not match
the graph, an operator exported wrongly, int8 that ruins a model) is worse than no
export. Both sides see the same texts through the same ``batch.preprocess`` settings;
the PyTorch side tokenizes with the checkpoint's own fast tokenizer, the ONNX side goes
through ``mlbert.load`` (the object ``mlb-batch`` runs) with only the file's
header, so the check covers the whole chain, not just the graph.

Two kinds of check:

* **exact** (plain fp32, and O1/O2 graph optimizations, which only fuse operators):
  max |p_onnx - p_torch| <= ``atol`` (1e-4) and the same label decisions. A decision may
  differ only where the PyTorch probability lies within ``atol`` of its threshold; such
  cells are counted as borderline, since no tolerance can make them stable.
* **lossy** (int8, O3's approximate GELU, O4's fp16): row agreement (the share of rows whose
  label set is PyTorch's, and the largest score difference; no labels needed) and, with
  labels, micro-F1, macro-F1 and samples-Jaccard of the file against the PyTorch model;
  a share, a difference or a drop beyond its limit refuses the export unless forced. Row
  agreement is checked because aggregate metrics hide a file that moves rows both ways
  (issue 25: 13.8% of rows changed labels while Jaccard moved 0.2 point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mlbert.decisions import decide
from mlbert.errors import InputError, MlbError, UsageError

# Varied on purpose: emotions, negation, emoji (with modifiers and ZWJ), mentions, URLs,
# hashtags, non-English, digits, a text with nothing to read (a zero-width joiner: the shortest
# encoding, [CLS] [SEP]; an empty string is an error record in mlb-batch and an error in the
# Python API, so it is never scored), a single character, and a text longer than any
# max_length so truncation is exercised.
SAMPLE_TEXTS: List[str] = [
    "I am so happy today, this is the best day ever!",
    "I hate it when the train is late again.",
    "This is terrible... I can't stop crying 😢",
    "Wow, I did not expect that at all! 😮",
    "not bad, not great either",
    "@user thanks so much for the help!! ❤️",
    "Check this out https://example.com/news?id=42 unbelievable",
    "I'm scared of what tomorrow brings #anxiety",
    "lol 😂😂😂 you are hilarious",
    "Great, another Monday. Just what I needed.",
    "We won the final!!! 🏆🎉",
    "I miss you so much it hurts",
    "How dare they treat people like that? Disgusting.",
    "Feeling grateful for my friends and family 🙏🏽",
    "meh",
    "\u200d",
    "?",
    "The meeting is at 10:30 in room 4B.",
    "Je suis tellement content de te voir !",
    "Estoy muy triste hoy.",
    "これは素晴らしいです",
    "I can't believe you did that... I'm not angry, just disappointed.",
    "OMG OMG OMG best news ever!!!",
    "👨‍👩‍👧‍👦 family time 👍",
    "www.example.org has the worst customer service, never again",
    "I'm so nervous about the exam tomorrow, what if I fail?",
    "That movie was beautiful, I cried at the end but in a good way",
    "ugh why does this always happen to me",
    "Thank you @support_team, problem solved in minutes",
    "Love love love this song 🎶",
    "I am not sure how I feel about this.",
    " ".join(["this sentence keeps going and going because long inputs must be truncated the same way"] * 40),
]

EXACT = "exact"
LOSSY = "lossy"


@dataclass
class GateLimits:
    """How far a lossy export may fall behind the PyTorch model, in percentage points."""

    max_micro_f1_drop: float = 1.0
    max_macro_f1_drop: float = 1.5
    max_jaccard_drop: float = 1.0
    atol: float = 1e-4  # exact checks: max absolute probability difference
    min_row_agreement: float = 90.0  # lossy: percent of rows whose label set must stay PyTorch's
    max_score_diff: float = 0.25  # lossy: largest allowed change of any one score

    def check(self) -> None:
        """Refuse limits that cannot mean anything (a UsageError naming the option)."""
        if not 0.0 <= self.min_row_agreement <= 100.0:
            raise UsageError(f"--min-row-agreement is a percentage from 0 to 100, not {self.min_row_agreement:g}")
        if self.max_score_diff < 0:
            raise UsageError(f"--max-score-diff must not be negative, not {self.max_score_diff:g}")


@dataclass
class ValidationReport:
    """What was compared and what came out; ``failures`` empty means the file may be written."""

    kind: str
    variant: str  # "fp32", "int8", "fp32 O3", ...
    source: str
    rows: int
    labels: int
    max_abs_diff: float
    mean_abs_diff: float
    changed_decisions: int  # (row, label) cells whose decision differs
    borderline_changes: int  # of those, cells with the PyTorch probability within atol of its threshold
    rows_identical: int  # rows whose decisions all agree
    reference_metrics: Optional[Dict[str, float]] = None  # PyTorch fp32, with labels only
    candidate_metrics: Optional[Dict[str, float]] = None
    limits: GateLimits = field(default_factory=GateLimits)
    failures: List[str] = field(default_factory=list)
    forced: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures or self.forced

    @property
    def same_labels_percent(self) -> float:
        """Percent of rows whose label set is PyTorch's: what --min-row-agreement limits."""
        return 100.0 * self.rows_identical / max(1, self.rows)

    @property
    def drops(self) -> Optional[Dict[str, float]]:
        """Metric drops in points (positive = the file is worse than PyTorch)."""
        if self.reference_metrics is None or self.candidate_metrics is None:
            return None
        return {k: 100.0 * (self.reference_metrics[k] - self.candidate_metrics[k]) for k in self.reference_metrics}

    def to_dict(self) -> Dict[str, Any]:
        """A compact summary for the file's provenance."""
        out: Dict[str, Any] = {
            "kind": self.kind,
            "variant": self.variant,
            "texts": self.source,
            "rows": self.rows,
            "max_abs_diff": float(self.max_abs_diff),
            "mean_abs_diff": float(self.mean_abs_diff),
            "changed_decisions": self.changed_decisions,
            "borderline_changes": self.borderline_changes,
            "rows_identical": self.rows_identical,
            "row_agreement": round(self.rows_identical / self.rows, 6) if self.rows else 1.0,
            "passed": not self.failures,
        }
        if self.drops is not None:
            out["reference_metrics"] = self.reference_metrics
            out["metrics"] = self.candidate_metrics
        if self.forced and self.failures:
            out["forced_past"] = list(self.failures)
        return out

    def table(self) -> str:
        """A short table of what was checked, for the terminal."""
        lim = self.limits
        rows: List[Tuple[str, str, str, str]] = []
        rows.append(("texts compared", f"{self.rows} x {self.labels} labels", "", ""))
        if self.kind == EXACT:
            rows.append(("max |p_onnx - p_torch|", f"{self.max_abs_diff:.2e}", f"<= {lim.atol:.0e}",
                         _ok(self.max_abs_diff <= lim.atol)))
            hard = self.changed_decisions - self.borderline_changes
            rows.append(("label decisions changed", f"{self.changed_decisions} ({self.borderline_changes} borderline)",
                         "0 (not borderline)", _ok(hard == 0)))
            if self.drops is not None:
                for key, name in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_jaccard", "samples-Jaccard")):
                    rows.append((f"{name} torch -> {self.variant}",
                                 f"{self.reference_metrics[key]:.4f} -> {self.candidate_metrics[key]:.4f}", "", "info"))
        else:
            rows.append(("max |p_onnx - p_torch|", f"{self.max_abs_diff:.2e}", f"<= {lim.max_score_diff:g}",
                         _ok(self.max_abs_diff <= lim.max_score_diff)))
            cells = max(1, self.rows * self.labels)
            rows.append(("label decisions agreeing", f"{100.0 * (1 - self.changed_decisions / cells):.2f}%", "", "info"))
            share = self.same_labels_percent
            rows.append(("rows with the same labels", f"{self.rows_identical}/{self.rows} ({share:.2f}%)",
                         f">= {lim.min_row_agreement:g}%", _ok(share >= lim.min_row_agreement - 1e-9)))
            drops = self.drops
            if drops is None:
                rows.append(("F1 / Jaccard vs PyTorch", "not measured (no labels: use --validate-on)", "", "-"))
            else:
                for key, name, limit in (
                    ("micro_f1", "micro-F1", lim.max_micro_f1_drop),
                    ("macro_f1", "macro-F1", lim.max_macro_f1_drop),
                    ("samples_jaccard", "samples-Jaccard", lim.max_jaccard_drop),
                ):
                    ref = self.reference_metrics[key]
                    cand = self.candidate_metrics[key]
                    rows.append((
                        f"{name} torch -> {self.variant}",
                        f"{ref:.4f} -> {cand:.4f} ({-drops[key]:+.2f} pt)",
                        f"drop <= {limit:g} pt",
                        _ok(drops[key] <= limit + 1e-9),
                    ))
        widths = [max(len(r[i]) for r in rows + [("check", "value", "limit", "result")]) for i in range(4)]
        lines = [f"{self.variant} file against PyTorch on {self.source}:"]
        for r in [("check", "value", "limit", "result")] + rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        verdict = "passed" if not self.failures else ("FAILED (written anyway: --force)" if self.forced else "FAILED")
        lines.append(f"verification of the {self.variant} file: {verdict}")
        return "\n".join(lines)


def _ok(good: bool) -> str:
    return "ok" if good else "FAIL"


def _metrics(y_true: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float]) -> Dict[str, float]:
    from mlbert.trainer.metrics import multilabel_metrics

    m = multilabel_metrics(y_true, probabilities, list(thresholds))
    return {k: float(m[k]) for k in ("micro_f1", "macro_f1", "samples_jaccard")}


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    thresholds: Sequence[float],
    *,
    kind: str,
    variant: str,
    source: str,
    y_true: Optional[np.ndarray] = None,
    limits: Optional[GateLimits] = None,
    force: bool = False,
) -> ValidationReport:
    """Compare the file's probabilities (``candidate``) with PyTorch's (``reference``).

    Pure numpy (plus ``trainer.metrics`` when labels are given), so the gate can be
    tested on constructed arrays.
    """
    limits = limits or GateLimits()
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise MlbError(
            f"verification: the exported file gave scores of shape {candidate.shape}, PyTorch {reference.shape}"
        )
    if not np.all(np.isfinite(candidate)):
        raise MlbError("verification: the exported file produced NaN or infinite probabilities")
    n, n_labels = reference.shape
    diff = np.abs(reference - candidate)
    ref_dec = decide(reference, thresholds)
    cand_dec = decide(candidate, thresholds)
    changed = ref_dec != cand_dec
    near = np.abs(reference - np.asarray(thresholds, dtype=np.float64)[None, :]) <= limits.atol
    report = ValidationReport(
        kind=kind,
        variant=variant,
        source=source,
        rows=n,
        labels=n_labels,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        changed_decisions=int(changed.sum()),
        borderline_changes=int(np.logical_and(changed, near).sum()),
        rows_identical=int((~changed.any(axis=1)).sum()) if n else 0,
        limits=limits,
    )
    if y_true is not None:
        report.reference_metrics = _metrics(y_true, reference, thresholds)
        report.candidate_metrics = _metrics(y_true, candidate, thresholds)
    if kind == EXACT:
        report.failures.extend(_exact_failures(report))
    else:
        report.failures.extend(_gate_failures(report))
        report.forced = force
    return report


def _exact_failures(report: ValidationReport) -> List[str]:
    """An exact export must match PyTorch's probabilities and decisions (borderline cells excepted)."""
    failures = []
    if report.max_abs_diff > report.limits.atol:
        failures.append(
            f"probabilities differ from PyTorch by up to {report.max_abs_diff:.2e} (limit {report.limits.atol:.0e})"
        )
    hard = report.changed_decisions - report.borderline_changes
    if hard:
        failures.append(f"{hard} label decisions differ from PyTorch")
    return failures


def _gate_failures(report: ValidationReport) -> List[str]:
    """A lossy export must keep rows' label sets and scores (no labels needed) and, with labels, lose at
    most the limits' points of micro-F1, macro-F1 and Jaccard."""
    limits = report.limits
    failures = []
    share = report.same_labels_percent
    if share < limits.min_row_agreement - 1e-9:
        failures.append(f"gives {report.rows - report.rows_identical} of {report.rows} rows other labels than "
                        f"PyTorch ({share:.2f}% agree, limit {limits.min_row_agreement:g}%, --min-row-agreement)")
    if report.max_abs_diff > limits.max_score_diff:
        failures.append(f"changes a score by up to {report.max_abs_diff:.4f} against PyTorch "
                        f"(limit {limits.max_score_diff:g}, --max-score-diff)")
    drops = report.drops
    if drops is None:
        return failures
    for key, name, limit, flag in (
        ("micro_f1", "micro-F1", limits.max_micro_f1_drop, "--max-f1-drop"),
        ("macro_f1", "macro-F1", limits.max_macro_f1_drop, "--max-macro-f1-drop"),
        ("samples_jaccard", "samples-Jaccard", limits.max_jaccard_drop, "--max-jaccard-drop"),
    ):
        if drops[key] > limit + 1e-9:
            failures.append(f"{name} drops by {drops[key]:.2f} points against PyTorch (limit {limit:g}, {flag})")
    return failures


def load_validation_texts(
    path: str,
    label_names: Sequence[str],
    *,
    limit: Optional[int] = None,
    **read_options: Any,
) -> Tuple[List[str], np.ndarray, str]:
    """Texts and a label matrix in the model's label order from a labelled file.

    Any layout ``mlb-train`` reads works (``trainer.data.read_labelled_file``); the
    model's label names fix the set and order, so a file that names other labels is an
    error naming the difference rather than a silently misaligned comparison.
    """
    from mlbert.trainer.data import read_labelled_file

    data = read_labelled_file(path, label_names=list(label_names), **read_options)
    names = list(data.label_names)
    if names != list(label_names):
        missing = [n for n in label_names if n not in names]
        extra = [n for n in names if n not in label_names]
        if missing or extra:
            raise InputError(
                "labels do not match the model's"
                + (f"; missing: {', '.join(missing[:10])}" if missing else "")
                + (f"; not in the model: {', '.join(extra[:10])}" if extra else ""),
                path,
            )
        order = [names.index(n) for n in label_names]
        labels = np.asarray(data.labels)[:, order]
    else:
        labels = np.asarray(data.labels)
    texts = list(data.texts)
    if not texts:
        raise InputError("no labelled rows to validate on", path)
    if limit is not None and len(texts) > limit:
        texts, labels = texts[:limit], labels[:limit]
    return texts, labels.astype(np.float32), f"{path}, {len(texts)} rows"

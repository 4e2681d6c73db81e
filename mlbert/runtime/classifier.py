"""The Python API: an exported mlb model as an object that classifies texts.

    import mlbert
    clf = mlbert.load("model.onnx", device="auto")
    clf.predict(["so happy", "so sad"])     # records: labels at/above thresholds, and scores
    clf.predict_proba(texts)                # numpy array, rows x labels
    clf.label_names, clf.thresholds

Preprocessing (emoji as words, mentions, URLs), tokenization, token-budget bucketing and
the thresholds all come from the model file and happen inside, so a caller in a notebook,
an Airflow task or a Spark UDF gets exactly what ``mlb-batch`` writes for the same texts.
``mlb-batch``, ``mlb-eval``, the Ray engine's actors and the exporter's verification use
this same object. It needs only the lean runtime (onnxruntime, tokenizers, numpy).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from mlbert.decisions import Thresholds, labels_and_scores, threshold_vector
from mlbert.errors import UsageError
from mlbert.modelfile import ModelHeader
from mlbert.runtime.providers import default_token_budget
from mlbert.runtime.session import LoadedModel, ModelSource, Predictor, load_model

# Texts tokenized and scored at a time. mlb-batch reads its input in chunks of this many
# rows, so the API and the CLI group rows the same way and give the same numbers; memory
# stays a few MB whatever the number of texts.
DEFAULT_CHUNK_SIZE = 4096

Texts = Union[str, Sequence[str]]


def _as_list(texts: Texts) -> List[str]:
    if isinstance(texts, str):
        return [texts]
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise UsageError(f"texts[{i}] is not a string but {type(text).__name__}: {text!r:.60}")
    return items


class Classifier:
    """A loaded model file: ``predict`` (records) and ``predict_proba`` (an array), thresholds included."""

    def __init__(self, model: LoadedModel, *, token_budget: Optional[int] = None,
                 thresholds: Optional[Thresholds] = None):
        header = model.header
        budget = token_budget or default_token_budget(model.provider, header.max_length)
        self._predictor = Predictor(model, budget)
        self.model = model
        self.header: ModelHeader = header
        self.label_names: List[str] = list(header.label_names)
        self.thresholds: np.ndarray = threshold_vector(header.thresholds if thresholds is None else thresholds,
                                                       len(self.label_names))

    # -- what the model is -----------------------------------------------------------
    @property
    def provider(self) -> str:
        """The onnxruntime execution provider that runs the model (``CPUExecutionProvider``, ...)."""
        return self.model.provider

    @property
    def threads(self) -> int:
        return self.model.threads

    @property
    def streams(self) -> int:
        """Batches scored at once (CPU), each on ``threads // streams`` threads."""
        return self.model.streams

    @property
    def notes(self) -> List[str]:
        """Lines about how the file suits this machine (e.g. an int8 file made for another CPU)."""
        return list(self.model.notes)

    @property
    def token_budget(self) -> int:
        """Padded tokens per batch."""
        return self._predictor.token_budget

    @property
    def max_length(self) -> int:
        return self.header.max_length

    def __repr__(self) -> str:
        return (f"Classifier({self.model.where!r}, {len(self.label_names)} labels, {self.provider}, "
                f"threads={self.threads}, streams={self.streams}, token_budget={self.token_budget})")

    # -- scoring -----------------------------------------------------------------------
    def predict_proba(self, texts: Texts, *, chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE) -> np.ndarray:
        """Probabilities, float32, one row per text in input order, one column per label.

        A single string gives one row of shape ``(labels,)``. ``chunk_size`` texts are
        tokenized and scored at a time (None: all at once).
        """
        items = _as_list(texts)
        preprocess = self.header.preprocessing.apply
        if chunk_size is None or len(items) <= chunk_size:
            out = self._predictor.predict(preprocess(items))
        else:
            if chunk_size < 1:
                raise UsageError(f"chunk_size must be at least 1, not {chunk_size}")
            parts = [self._predictor.predict(preprocess(items[i:i + chunk_size]))
                     for i in range(0, len(items), chunk_size)]
            out = np.concatenate(parts, axis=0)
        return out[0] if isinstance(texts, str) else out

    def predict(self, texts: Texts, *, top_k: Optional[int] = None, scores: bool = True,
                thresholds: Optional[Thresholds] = None) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """Records ``{"labels": [...], "scores": {label: probability}}``, one per text.

        ``labels`` holds the labels at or above their thresholds, highest score first (at most
        ``top_k``, whose scores alone are then kept); ``thresholds`` overrides the model's for
        this call (one number, or one per label). A single string gives one record.
        """
        probabilities = self.predict_proba([texts] if isinstance(texts, str) else texts)
        if top_k is not None and top_k < 1:
            raise UsageError(f"top_k must be at least 1, not {top_k}")
        chosen = self.thresholds if thresholds is None else threshold_vector(thresholds, len(self.label_names))
        labels, shown = labels_and_scores(probabilities, self.label_names, chosen, top_k=top_k, scores=scores)
        records = [{"labels": row_labels, **({"scores": row_scores} if scores else {})}
                   for row_labels, row_scores in zip(labels, shown)]
        return records[0] if isinstance(texts, str) else records

    def warm_up(self) -> None:
        """Run one batch now, so a broken model or device fails before any work (mlb-batch does this
        before it opens its output)."""
        self._predictor.warm_up()


def load(model: ModelSource, device: str = "auto", *, threads: Optional[int] = None,
         token_budget: Optional[int] = None, thresholds: Optional[Thresholds] = None,
         streams: Optional[int] = None) -> Classifier:
    """Open a model file written by ``mlb-export`` (a path, or the file's bytes).

    ``device``: ``auto`` (an accelerator when one starts, else the CPU), ``cpu`` or ``cuda``
    (fails with the reason when CUDA cannot start, never falls back silently). ``threads``:
    CPU threads (default: the CPUs this process may use). ``streams``: batches scored at once
    on a CPU, sharing the threads (default: 2 from 2 threads on; the scores do not depend on
    it). ``token_budget``: padded tokens per batch (default: 2048 on CPU, 65536 on CUDA).
    ``thresholds``: override the model's. Raises ``mlbert.MlbError`` subclasses with one-line
    messages.
    """
    return Classifier(load_model(model, device, threads, streams), token_budget=token_budget,
                      thresholds=thresholds)

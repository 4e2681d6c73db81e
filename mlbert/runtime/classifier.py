"""The Python API: an exported mlb model as an object that classifies texts.

    import mlbert
    clf = mlbert.load()                      # the built-in GoEmotions model (28 emotions), or MLB_MODEL
    clf = mlbert.load("model.onnx", device="auto")
    clf.predict(["so happy", "so sad"])     # records: labels at/above thresholds, and scores
    clf.predict(texts, output="pipeline")   # [[{"label", "score"}, ...], ...] as transformers' pipeline
    clf.predict_proba(texts)                # numpy array, rows x labels (a DataFrame for pandas input)
    clf.label_names, clf.thresholds

One contract with ``mlb-batch``: an item is cleaned, or is an error, by the rule that makes a
file's row an error record (``mlbert.texts``); preprocessing (emoji as words, mentions, URLs),
tokenization, token-budget bucketing and the thresholds come from the model file and happen
inside, so a notebook, an Airflow task or a Spark UDF gets exactly what ``mlb-batch`` writes for
the same texts. A bad item raises ``ItemError`` (a ``ValueError``) naming its position before
anything is scored, or, with ``errors="record"``, gets an error entry (a NaN row in
``predict_proba``) while the others are classified. What is accepted as texts: ``items``.

``mlb-batch``, ``mlb-eval``, the Ray engine's actors and the exporter's verification use this
same object. It needs only the lean runtime (onnxruntime, tokenizers, numpy); pandas objects are
accepted when pandas is installed, and pandas is never imported otherwise.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np

from mlbert.decisions import ThresholdSpec, labels_and_scores, ranked_scores, resolve_thresholds
from mlbert.errors import UsageError
from mlbert.modelfile import ModelHeader
from mlbert.models import resolve_model
from mlbert.runtime.items import read_items
from mlbert.runtime.providers import default_token_budget
from mlbert.runtime.session import LoadedModel, ModelSource, Predictor, load_model

# Texts tokenized and scored at a time. mlb-batch reads its input in chunks of this many
# rows, so the API and the CLI group rows the same way and give the same numbers; memory
# stays a few MB whatever the number of texts.
DEFAULT_CHUNK_SIZE = 4096
# predict's output shapes: mlb-batch's records, or the transformers text-classification pipeline's.
OUTPUTS = ("records", "pipeline")

# One str, or an iterable of texts: list, tuple, 1-D numpy array, pandas Series or DataFrame.
Texts = Union[str, Iterable[Any]]


def _check_predict_options(output: str, top_k: Optional[int], scores: bool, thresholds: Any) -> None:
    if output not in OUTPUTS:
        raise UsageError(f"output={output!r}: use 'records' (labels at or above the thresholds, and scores) or "
                         "'pipeline' (every label and its score, as the transformers pipeline with top_k=None)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UsageError(f"top_k must be a whole number of at least 1, not {top_k!r}")
    if output == "pipeline" and (thresholds is not None or not scores):
        raise UsageError("output='pipeline' lists every label with its score, as the transformers pipeline does: "
                         "thresholds= and scores=False apply to output='records'")


class Classifier:
    """A loaded model file: ``predict`` (records or pipeline-shaped results) and ``predict_proba``
    (probabilities), thresholds included; ``label_names`` names the columns of ``predict_proba``."""

    def __init__(self, model: LoadedModel, *, token_budget: Optional[int] = None,
                 thresholds: Optional[ThresholdSpec] = None, description: Optional[str] = None):
        header = model.header
        # How a summary names the model: "built-in goemotions (28 labels)", or the file.
        self.description: str = description or f"{model.where} ({len(header.label_names)} labels)"
        budget = token_budget or default_token_budget(model.provider, header.max_length)
        self._predictor = Predictor(model, budget)
        self.model = model
        self.header: ModelHeader = header
        self.label_names: List[str] = list(header.label_names)
        self.thresholds: np.ndarray = resolve_thresholds(thresholds, self.label_names, header.thresholds)

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
    def predict_proba(self, texts: Texts, *, errors: str = "raise", text_column: Any = None,
                      chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE) -> Any:
        """Probabilities, float32, one row per item in input order, one column per label (``label_names``).

        A numpy array; a pandas DataFrame with the input's index and label-named columns when
        ``texts`` is a Series or DataFrame; one row of shape ``(labels,)`` for a single str.
        ``errors="raise"``: a bad item raises ``ItemError`` before anything is scored;
        ``errors="record"``: its row is NaN (``predict(..., errors="record")`` gives the reasons).
        ``text_column``: a DataFrame's text column (default: mlb-batch's column rule).
        ``chunk_size`` texts are tokenized and scored at a time (None: all at once).
        """
        items = read_items(texts, text_column)
        items.check(errors)
        return items.proba_result(items.spread(self._score(items.texts, chunk_size)), self.label_names)

    def predict(self, texts: Texts, *, output: str = "records", top_k: Optional[int] = None, scores: bool = True,
                thresholds: Optional[ThresholdSpec] = None, errors: str = "raise", text_column: Any = None,
                chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE) -> Union[Dict[str, Any], List[Any]]:
        """One result per item, in input order, in a list (one result for a single str).

        ``output="records"``: ``{"labels": [...], "scores": {label: probability}}``, mlb-batch's
        record: the labels at or above their thresholds, highest score first (at most ``top_k``,
        whose scores alone are then kept; ``scores=False`` drops the scores). ``thresholds``
        overrides the model's for this call: one number, ``{label: number}`` (the others keep
        the model's), or one number per label, each from 0 to 1.
        ``output="pipeline"``: ``[{"label": ..., "score": ...}, ...]``, every label (or the
        ``top_k`` best) highest first: what ``transformers.pipeline("text-classification")``
        returns with ``top_k=None`` (``top_k=k``), so code written for it runs unchanged.
        ``errors``, ``text_column``, ``chunk_size``: as ``predict_proba``; with
        ``errors="record"`` a bad item's result is ``{"error": reason}``, mlb-batch's reason.
        """
        _check_predict_options(output, top_k, scores, thresholds)
        chosen = resolve_thresholds(thresholds, self.label_names, self.thresholds)
        items = read_items(texts, text_column)
        items.check(errors)
        probabilities = self._score(items.texts, chunk_size)
        if output == "pipeline":
            results: List[Any] = ranked_scores(probabilities, self.label_names, top_k=top_k)
        else:
            labels, shown = labels_and_scores(probabilities, self.label_names, chosen, top_k=top_k, scores=scores)
            results = [{"labels": row_labels, **({"scores": row_scores} if scores else {})}
                       for row_labels, row_scores in zip(labels, shown)]
        entries = items.entries(results)
        return entries[0] if items.single else entries

    def _score(self, texts: List[str], chunk_size: Optional[int]) -> np.ndarray:
        """Probabilities of clean texts (``items.read_items``' output), ``chunk_size`` at a time."""
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise UsageError(f"chunk_size must be a whole number of at least 1 (or None), not {chunk_size!r}")
        preprocess = self.header.preprocessing.apply
        if chunk_size is None or len(texts) <= chunk_size:
            return self._predictor.predict(preprocess(texts))
        parts = [self._predictor.predict(preprocess(texts[i:i + chunk_size])) for i in range(0, len(texts), chunk_size)]
        return np.concatenate(parts, axis=0)

    def warm_up(self) -> None:
        """Run one batch now, so a broken model or device fails before any work (mlb-batch does this
        before it opens its output)."""
        self._predictor.warm_up()


def load(model: Optional[ModelSource] = None, device: str = "auto", *, threads: Optional[int] = None,
         token_budget: Optional[int] = None, thresholds: Optional[ThresholdSpec] = None,
         streams: Optional[int] = None) -> Classifier:
    """Open a model file written by ``mlb-export`` (a path, or the file's bytes), or a built-in model.

    ``model``: a path, a URL, the file's bytes, or a built-in model's name (``goemotions``); without
    one, ``MLB_MODEL`` when it is set, else the built-in ``goemotions`` model (28 emotions,
    English): the same rule as ``mlb-batch`` (``mlbert.models.resolve_model``).

    ``device``: ``auto`` (an accelerator when one starts, else the CPU), ``cpu`` or ``cuda``
    (fails with the reason when CUDA cannot start, never falls back silently). ``threads``:
    CPU threads (default: the CPUs this process may use). ``streams``: batches scored at once
    on a CPU, sharing the threads (default: 2 from 2 threads on; the scores do not depend on
    it). ``token_budget``: padded tokens per batch (default: 2048 on CPU, 65536 on CUDA).
    ``thresholds``: override the model's (one number, ``{label: number}`` or one per label, each
    from 0 to 1). Raises ``mlbert.MlbError`` subclasses with one-line messages.
    """
    resolved = resolve_model(model, origin="model")
    loaded = load_model(resolved.source, device, threads, streams, where=resolved.where)
    return Classifier(loaded, token_budget=token_budget, thresholds=thresholds,
                      description=None if resolved.builtin is None else resolved.description)

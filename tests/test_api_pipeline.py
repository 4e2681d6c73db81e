"""``predict(..., output="pipeline")`` against the real transformers text-classification pipeline.

Code written for ``pipeline("text-classification", ...)(texts, top_k=None)`` must run unchanged on
our results: the same nesting, the same keys and types, every label highest first, the same
numbers (the exported file of the same checkpoint), for a list and for a single string.
"""

import numpy as np
import pytest

import mlbert

TEXTS = ["i am so happy today !", "what a terrible awful day", "😂 face with tears of joy", "no",
         "he was not very glad that day . she was scared and afraid"]


@pytest.fixture(scope="module")
def both(varied_onnx):
    """Our classifier on the exported file, and the transformers pipeline on its checkpoint."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    checkpoint = str(varied_onnx.parent / "checkpoint")
    pipe = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(checkpoint),
                    tokenizer=AutoTokenizer.from_pretrained(checkpoint), device=-1)
    return mlbert.load(str(varied_onnx), device="cpu"), pipe


def _same(ours, theirs, tolerance=1e-5):
    """The same structure exactly, the same labels in the same order, scores within ``tolerance``."""
    assert type(ours) is type(theirs) is list and len(ours) == len(theirs)
    for mine, real in zip(ours, theirs):
        assert type(mine) is type(real)
        if isinstance(real, dict):
            assert set(mine) == set(real) == {"label", "score"}
            assert mine["label"] == real["label"] and type(mine["score"]) is type(real["score"]) is float
            assert mine["score"] == pytest.approx(real["score"], abs=tolerance)
        else:
            _same(mine, real, tolerance)


def test_pipeline_output_is_the_pipelines(both):
    clf, pipe = both
    # The pipeline does not preprocess; ours applies the model's preprocessing (emoji as words) inside.
    prepared = clf.header.preprocessing.apply(TEXTS)
    real = pipe(prepared, top_k=None)  # multi_label_classification: sigmoid by default, as ours
    ours = clf.predict(TEXTS, output="pipeline")
    spread = np.diff([[d["score"] for d in row] for row in real], axis=1)
    assert (np.abs(spread) > 1e-4).all()  # no near-ties: the order is a real check
    _same(ours, real)
    _same(clf.predict(TEXTS, output="pipeline", top_k=2), pipe(prepared, top_k=2))
    _same(clf.predict(TEXTS[0], output="pipeline"), pipe(prepared[0], top_k=None))  # one str: one flat list
    # Code written for the pipeline, run on our results unchanged.
    chosen = [[d["label"] for d in row if d["score"] > 0.5] for row in ours]
    assert chosen == [[d["label"] for d in row if d["score"] > 0.5] for row in real]

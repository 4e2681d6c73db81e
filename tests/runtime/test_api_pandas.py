"""The Python API with pandas in: Series and DataFrames, their index kept, the CLI's column rule and reasons.

pandas is not a runtime dependency: in the runtime-only environment (scripts/test_runtime_only.sh)
it is absent and this whole module is skipped.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import mlbert
from mlbert.batch.cli import cli

pd = pytest.importorskip("pandas")

TEXTS = ["i am so happy today !", "what a terrible awful day", "😂 face with tears of joy", "@someone http://x.io no"]


@pytest.fixture(scope="module")
def clf(golden_model):
    return mlbert.load(str(golden_model), device="cpu")


def test_series_gives_a_frame_with_its_index_and_label_columns(clf):
    series = pd.Series(TEXTS, index=["a", "b", "c", "d"], name="tweet")
    frame = clf.predict_proba(series)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == clf.label_names
    assert list(frame.index) == ["a", "b", "c", "d"] and (frame.dtypes == np.float32).all()
    np.testing.assert_array_equal(frame.to_numpy(), clf.predict_proba(TEXTS))
    assert clf.predict(series) == clf.predict(TEXTS)  # predict: a list in the Series' order
    assert clf.predict(series, output="pipeline") == clf.predict(TEXTS, output="pipeline")
    empty = clf.predict_proba(pd.Series([], dtype=object))
    assert empty.shape == (0, 4) and list(empty.columns) == clf.label_names


def test_missing_values_and_errors_name_the_index(clf):
    series = pd.Series(["so happy", None, np.nan, "fine", ""], index=[10, 11, 12, 13, 14])
    with pytest.raises(mlbert.ItemError) as caught:
        clf.predict(series)
    assert str(caught.value).startswith("texts.iloc[1] (index 11): the value is null (and 2 more items")
    assert (caught.value.position, caught.value.index) == (1, 11)
    frame = clf.predict_proba(series, errors="record")
    assert list(frame.index) == [10, 11, 12, 13, 14]
    assert frame.loc[[11, 12, 14]].isna().all().all() and not frame.loc[[10, 13]].isna().any().any()
    entries = clf.predict(series, errors="record")
    assert [e.get("error") for e in entries] == [None, "the value is null", "the value is null", None, "empty text"]
    nested = pd.Series(["so happy", ""], index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)]))
    with pytest.raises(mlbert.ItemError, match=r"^texts.iloc\[1\] \(index \('y', 2\)\): empty text$"):
        clf.predict_proba(nested)
    strings = pd.Series(["so happy", pd.NA], dtype="string")
    assert clf.predict(strings, errors="record")[1] == {"error": "the value is null"}


def test_dataframe_text_column_by_the_cli_rule_or_named(clf, golden_model, tmp_path):
    frame = pd.DataFrame({"id": [7, 8, 9], "review": ["so happy", "", "so sad"], "stars": [5, 1, 2]},
                         index=["x", "y", "z"])
    proba = clf.predict_proba(frame, errors="record")
    assert list(proba.index) == ["x", "y", "z"] and proba.loc["y"].isna().all()
    np.testing.assert_array_equal(proba.loc[["x", "z"]].to_numpy(), clf.predict_proba(["so happy", "so sad"]))
    with pytest.raises(mlbert.ItemError, match=r"^texts.iloc\[1\] \(index 'y'\): empty text$"):
        clf.predict(frame)
    # mlb-batch picks the same column of the same table.
    source = tmp_path / "reviews.csv"
    frame.to_csv(source, index=False)
    result = CliRunner().invoke(cli, [str(source), "-m", str(golden_model), "--device", "cpu"], catch_exceptions=False)
    written = [json.loads(line) for line in result.stdout.splitlines()]
    api = clf.predict(frame, errors="record")
    assert [r.get("labels") for r in written] == [r.get("labels") for r in api]
    assert [r.get("error") for r in written] == [r.get("error") for r in api] == [None, "empty text", None]

    two_prose = pd.DataFrame({"a": ["so happy today my friend", "what a day"], "b": ["very sad and alone now", "oh no"]})
    with pytest.raises(mlbert.UsageError, match=r"cannot tell which column .* \(columns: a, b\); pass text_column=NAME"):
        clf.predict(two_prose)
    np.testing.assert_array_equal(clf.predict_proba(two_prose, text_column="B").to_numpy(),
                                  clf.predict_proba(list(two_prose["b"])))
    with pytest.raises(mlbert.UsageError, match=r"text_column='c': the DataFrame has no such column \(columns: a, b\)"):
        clf.predict(two_prose, text_column="c")
    numbered = pd.DataFrame([["so happy", 1]])  # integer column labels: exact label only
    assert clf.predict(numbered, text_column=0) == clf.predict(["so happy"])


def test_dataframe_reasons_are_mlb_batch_reasons(clf, golden_model, tmp_path):
    """A DataFrame names its column as mlb-batch names a file's: the same error text for the same cell."""
    values = ["so happy", None, "", "\x00\x01", "  "]
    frame = pd.DataFrame({"text": values})
    source = tmp_path / "values.jsonl"
    source.write_text("".join(json.dumps({"text": v}) + "\n" for v in values), encoding="utf-8")
    result = CliRunner().invoke(cli, [str(source), "-m", str(golden_model), "--device", "cpu"], catch_exceptions=False)
    written = [json.loads(line).get("error") for line in result.stdout.splitlines()]
    assert written == [e.get("error") for e in clf.predict(frame, errors="record")]
    assert written[1] == "'text' is null"

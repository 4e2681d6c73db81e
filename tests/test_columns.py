"""batch.columns: one rule decides the text, id and label columns for every command."""

import pytest

from mlbert.io import columns
from mlbert.errors import ExitCode, InputError
from mlbert.io.readers import open_table
from mlbert.batch.job import pick_id_columns, pick_text_column
from mlbert.trainer.data import read_labelled_file


def test_explicit_column_by_name_case_or_position():
    cols = ["ID", "Tweet", "anger"]
    assert columns.find_column(cols, "Tweet", what="text", source="f") == "Tweet"
    assert columns.find_column(cols, "tweet", what="text", source="f") == "Tweet"
    assert columns.find_column(cols, "3", what="label", source="f") == "anger"
    with pytest.raises(columns.ColumnNotFound, match=r"f: no text column 'body'; the columns are: ID, Tweet, anger") as err:
        columns.find_column(cols, "body", what="text", source="f")
    assert err.value.exit_code == ExitCode.USAGE


def test_text_by_name_then_single_column_then_prose():
    assert columns.text_column(["id", "Review", "stars"], [], source="f") == "Review"
    assert columns.text_column(["only"], [], source="f") == "only"
    rows = [{"a": "k1", "b": "this is a sentence with words", "c": "0,1"},
            {"a": "k2", "b": "another one right here", "c": "3"}]
    assert columns.text_column(["a", "b", "c"], rows, source="f") == "b"


def test_two_prose_columns_are_not_guessed():
    rows = [{"a": "a long sentence here", "b": "another long sentence"}]
    with pytest.raises(InputError, match="cannot tell which column holds the text; the columns are: a, b"):
        columns.text_column(["a", "b"], rows, source="f")


def test_wrong_delimiter_is_named():
    with pytest.raises(InputError, match="looks like TSV; pass --format tsv"):
        columns.text_column(["text\tlabels"], [], source="f", delimiter_hint="\t")


def test_id_names_and_unique_leftover():
    assert columns.id_column(["Tweet", "tweet_id"], exclude=["Tweet"], source="f") == "tweet_id"
    assert columns.id_column(["text", "labels"], exclude=["text"], source="f") is None
    assert columns.id_column(["text", "label_id"], exclude=["text"], source="f") is None
    rows = [{"t": "x", "l": "1", "k": "a"}, {"t": "y", "l": "1", "k": "b"}]
    assert columns.unique_leftover_column(["t", "l", "k"], ["t", "l"], rows) == "k"
    assert columns.unique_leftover_column(["t", "l", "k"], ["t", "k"], rows) is None  # "1" twice


def test_batch_and_trainer_agree_on_a_file(tmp_path):
    """The disagreement this module removed: mlb-train found a `review` column, mlb-batch did not."""
    path = tmp_path / "reviews.csv"
    path.write_text("review_id,review,labels\nr1,what a lovely day,joy\nr2,so sad and alone,sadness\n")
    data = read_labelled_file(str(path))
    with open_table(str(path)) as table:
        text = pick_text_column(table, None).name
        ids = pick_id_columns(table, (), text)
    assert text == "review" and data.texts == ["what a lovely day", "so sad and alone"]
    assert ids == ["review_id"] and data.ids == ["r1", "r2"]

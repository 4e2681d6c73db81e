"""trainer.data: label layouts, file formats, header detection, hub datasets, errors."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mlbert.errors import InputError, UsageError
from mlbert.trainer.data import (
    hold_out,
    labels_without_positives,
    read_label_names_file,
    read_labelled_file,
)
from mlbert.trainer.hub_data import read_dataset_splits

FIXTURES = Path(__file__).parent / "fixtures"
SEMEVAL = FIXTURES / "semeval_ec_sample.tsv"
GOEMO = FIXTURES / "goemotions_sample.tsv"
GOEMO_NAMES = FIXTURES / "goemotions_labels.txt"
SEMEVAL_LABELS = "anger anticipation disgust fear joy love optimism pessimism sadness surprise trust".split()

ROWS = [
    {"id": "r1", "text": "so happy today", "labels": ["joy"]},
    {"id": "r2", "text": "this is awful and sad", "labels": ["anger", "sadness"]},
    {"id": "r3", "text": "wow what a surprise", "labels": ["surprise", "joy"]},
    {"id": "r4", "text": "just a day", "labels": []},
]
NAMES = ["anger", "joy", "sadness", "surprise"]
EXPECTED = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=np.float32)


def _write(path: Path, text: str, compress: bool) -> Path:
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _delimited(rows, sep, layout, header):
    lines = []
    if layout == "wide":
        if header:
            lines.append(sep.join(["id", "text"] + NAMES))
        for r in rows:
            lines.append(sep.join([r["id"], r["text"]] + ["1" if n in r["labels"] else "0" for n in NAMES]))
    else:
        if header:
            lines.append(sep.join(["id", "text", "labels"]))
        for r in rows:
            cell = ",".join(r["labels"])
            if sep == "," and "," in cell:
                cell = f'"{cell}"'
            lines.append(sep.join([r["id"], r["text"], cell]))
    return "\n".join(lines) + "\n"


def _jsonl(rows, layout):
    out = []
    for r in rows:
        if layout == "wide":
            out.append(json.dumps({"id": r["id"], "text": r["text"], **{n: n in r["labels"] for n in NAMES}}))
        else:
            out.append(json.dumps({"id": r["id"], "text": r["text"], "labels": r["labels"]}))
    return "\n".join(out) + "\n"


def _parquet(path: Path, rows, layout):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout == "wide":
        cols = {"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}
        cols.update({n: [int(n in r["labels"]) for r in rows] for n in NAMES})
    else:
        cols = {"id": [r["id"] for r in rows], "text": [r["text"] for r in rows], "labels": [r["labels"] for r in rows]}
    pq.write_table(pa.table(cols), path)
    return path


@pytest.mark.parametrize("layout", ["wide", "list"])
@pytest.mark.parametrize(
    "fmt,compress",
    [("csv", False), ("csv", True), ("tsv", False), ("tsv", True), ("jsonl", False), ("jsonl", True), ("parquet", False)],
)
def test_formats_and_layouts_read_the_same_data(tmp_path, layout, fmt, compress):
    if fmt == "parquet":  # Parquet compresses itself; .parquet.gz is refused (tested below)
        path = _parquet(tmp_path / "d.parquet", ROWS, layout)
    elif fmt == "jsonl":
        path = _write(tmp_path / "d.jsonl", _jsonl(ROWS, layout), compress)
    else:
        path = _write(tmp_path / f"d.{fmt}", _delimited(ROWS, "," if fmt == "csv" else "\t", layout, True), compress)
    kwargs = {"label_names": NAMES} if layout == "list" else {}
    data = read_labelled_file(str(path), **kwargs)
    assert data.texts == [r["text"] for r in ROWS]
    assert data.ids == ["r1", "r2", "r3", "r4"]
    assert data.label_names == NAMES
    np.testing.assert_array_equal(data.labels, EXPECTED)
    assert data.labels.dtype == np.float32


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_headerless_wide_file_with_names_file_and_forced_layout(tmp_path, sep, ext):
    path = _write(tmp_path / f"d.{ext}", _delimited(ROWS, sep, "wide", header=False), False)
    data = read_labelled_file(str(path), label_names=NAMES, text_column="2", id_column="1")
    assert data.label_names == NAMES
    np.testing.assert_array_equal(data.labels, EXPECTED)
    assert data.ids[0] == "r1"


def test_header_option_overrides_detection(tmp_path):
    # "id,text,labels" would be detected as a header; --no-header makes it a data row ...
    path = _write(tmp_path / "d.csv", _delimited(ROWS, ",", "list", header=True), False)
    with pytest.raises(InputError, match="row 1"):
        read_labelled_file(str(path), header=False, text_column="2", label_column="3", label_names=NAMES)
    # ... and with --header the same file reads normally.
    assert len(read_labelled_file(str(path), header=True, label_names=NAMES)) == 4


def test_semeval_wide_fixture_is_detected():
    data = read_labelled_file(str(SEMEVAL))
    assert data.label_names == SEMEVAL_LABELS
    assert data.labels.shape == (40, 11)
    assert data.ids[0] == "2018-En-10001"
    assert data.texts[1].startswith("@united worst customer service")
    assert data.labels[0].tolist() == [1] + [0] * 10
    assert data.labels[24].sum() == 0  # the "nothing to report" tweet has no emotion


def test_semeval_boolean_columns(tmp_path):
    lines = ["ID\tTweet\tanger\tjoy", "a\tgrr so mad\tTrue\tFalse", "b\tyay fun\tfalse\ttrue", "c\tmeh\tFALSE\tFALSE"]
    path = _write(tmp_path / "b.tsv", "\n".join(lines) + "\n", False)
    data = read_labelled_file(str(path))
    assert data.labels.tolist() == [[1, 0], [0, 1], [0, 0]]
    assert data.texts[0] == "grr so mad"


def test_goemotions_headerless_ids_with_names_file():
    names = read_label_names_file(str(GOEMO_NAMES))
    data = read_labelled_file(str(GOEMO), label_names=names)
    assert data.label_names == names
    assert len(data) == 24
    assert data.ids[:2] == ["id0000", "id0001"]
    assert data.labels[6].tolist() == [1, 1, 0, 0, 0, 0, 0]  # "0,1"
    assert data.texts[11].startswith('"Quoted" text, with a comma')  # CSV-style quoting undone
    assert labels_without_positives(data) == ["grief"]


def test_ids_without_names_become_names_and_keep_their_index():
    data = read_labelled_file(str(GOEMO))
    assert data.label_names == ["0", "1", "2", "3", "4", "5"]
    assert data.labels[8].tolist() == [0, 0, 1, 0, 1, 0]


def test_first_label_id_one_like_xed(tmp_path):
    path = _write(tmp_path / "x.tsv", "I am so angry now\t1\nwhat a lovely surprise\t2, 1\n", False)
    data = read_labelled_file(str(path), label_names=["anger", "surprise"], label_id_base=1)
    assert data.labels.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(InputError, match=r"x.tsv, row 1: label id 1 is out of range"):
        read_labelled_file(str(path), label_names=["anger"], label_id_base=0)


def test_list_layout_with_names_and_json_lists(tmp_path):
    path = _write(tmp_path / "n.csv", 'text,labels\nhappy day,"joy, surprise"\nbad day,"[""anger""]"\n', False)
    data = read_labelled_file(str(path))
    assert data.label_names == ["anger", "joy", "surprise"]  # sorted names when no list is given
    assert data.labels.tolist() == [[0, 1, 1], [1, 0, 0]]
    assert data.ids is None


def test_text_column_detected_by_content_in_headerless_file(tmp_path):
    path = _write(tmp_path / "h.tsv", "3\tk1\tthis is a long sentence with words\n0,1\tk2\tanother one right here\n", False)
    data = read_labelled_file(str(path), label_names=["a", "b", "c", "d"])
    assert data.texts == ["this is a long sentence with words", "another one right here"]
    assert data.labels.tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]
    assert data.ids == ["k1", "k2"]


# --------------------------------------------------------------------------- errors


def test_missing_file():
    with pytest.raises(InputError, match="nope.tsv: no such file"):
        read_labelled_file("nope.tsv")


def test_unknown_column_lists_the_columns():
    with pytest.raises(InputError, match=r"no text column 'body'; the columns are: ID, Tweet, anger"):
        read_labelled_file(str(SEMEVAL), text_column="body")
    with pytest.raises(InputError, match=r"no label column 'angst'"):
        read_labelled_file(str(SEMEVAL), label_columns=["anger", "angst"])


def test_wide_values_must_be_zero_or_one(tmp_path):
    path = _write(tmp_path / "w.tsv", "ID\tTweet\tanger\tjoy\na\tgrr\t1\t0\nb\tyay\t0\t2\n", False)
    with pytest.raises(InputError, match=r"w.tsv, row 2: label column 'joy' holds '2'"):
        read_labelled_file(str(path), layout="wide")


def test_ids_out_of_range_of_names():
    with pytest.raises(InputError, match=r"goemotions_sample.tsv, row 3: label id 2 is out of range: there are 2 label names"):
        read_labelled_file(str(GOEMO), label_names=["admiration", "amusement"])


def test_unknown_label_name(tmp_path):
    path = _write(tmp_path / "n.jsonl", '{"text": "hi there", "labels": ["joy"]}\n{"text": "oh no", "labels": ["dread"]}\n', False)
    with pytest.raises(InputError, match=r"n.jsonl, row 2: label 'dread' is not one of the 2 known labels"):
        read_labelled_file(str(path), label_names=["joy", "anger"])


def test_empty_split(tmp_path):
    path = _write(tmp_path / "e.tsv", "ID\tTweet\tanger\n", False)
    with pytest.raises(InputError, match=r"e.tsv: no data rows \(empty split\)"):
        read_labelled_file(str(path))


@pytest.mark.parametrize(
    "line,reason",
    [('{"text": "", "labels": ["joy"]}', "is empty"), ('{"text": 42, "labels": ["joy"]}', "is not a string"),
     ('{"text": null, "labels": ["joy"]}', "is missing"), ('{"text": "   ", "labels": []}', "is empty")],
)
def test_empty_or_non_string_text(tmp_path, line, reason):
    path = _write(tmp_path / "t.jsonl", '{"text": "fine", "labels": ["joy"]}\n' + line + "\n", False)
    with pytest.raises(InputError, match=rf"t.jsonl, row 2: text in column 'text' {reason}"):
        read_labelled_file(str(path), label_names=["joy"])


def test_unreadable_row_is_an_error_not_dropped(tmp_path):
    path = _write(tmp_path / "r.tsv", "ID\tTweet\tanger\na\tgrr\t1\nb\tragged row\n", False)
    with pytest.raises(InputError, match=r"r.tsv, row 2: expected 3 fields, found 2"):
        read_labelled_file(str(path))


def test_gzipped_parquet_is_refused(tmp_path):
    path = tmp_path / "d.parquet.gz"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="gzip-compressed Parquet"):
        read_labelled_file(str(path))


def test_label_names_file_errors(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n")
    with pytest.raises(InputError, match="duplicate label names: a"):
        read_label_names_file(str(dup))
    with pytest.raises(InputError, match="no such file"):
        read_label_names_file(str(tmp_path / "none.txt"))


def test_conflicting_layout_options():
    with pytest.raises(UsageError):
        read_labelled_file(str(SEMEVAL), layout="list", label_columns=["anger"])


# --------------------------------------------------------------------------- hub / saved datasets


def test_saved_dataset_with_bool_columns_and_splits(tmp_path):
    import datasets

    def split(n):
        return datasets.Dataset.from_dict(
            {"ID": [f"i{k}" for k in range(n)], "Tweet": [f"tweet number {k} here" for k in range(n)],
             "anger": [k % 2 == 0 for k in range(n)], "joy": [k % 3 == 0 for k in range(n)]}
        )

    datasets.DatasetDict({"train": split(6), "validation": split(3), "test": split(2)}).save_to_disk(str(tmp_path / "ds"))
    splits = read_dataset_splits(str(tmp_path / "ds"))
    assert set(splits) == {"train", "validation", "test"}
    assert splits["train"].label_names == ["anger", "joy"]
    assert splits["train"].labels[:, 0].tolist() == [1, 0, 1, 0, 1, 0]
    assert splits["validation"].ids == ["i0", "i1", "i2"]
    assert "[validation]" in splits["validation"].source


def test_saved_dataset_class_label_names_from_schema(tmp_path):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"),
         "labels": datasets.Sequence(datasets.ClassLabel(names=["admiration", "anger", "joy"])),
         "id": datasets.Value("string")}
    )
    ds = datasets.Dataset.from_dict(
        {"text": ["great stuff", "so mad", "yay and great"], "labels": [[0], [1], [2, 0]], "id": ["a", "b", "c"]},
        features=features,
    )
    datasets.DatasetDict({"train": ds, "dev": ds}).save_to_disk(str(tmp_path / "go"))
    splits = read_dataset_splits(str(tmp_path / "go"))
    assert splits["train"].label_names == ["admiration", "anger", "joy"]
    assert splits["validation"].labels.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_missing_dataset_is_one_line_error(tmp_path):
    with pytest.raises(InputError) as info:
        read_dataset_splits(str(tmp_path / "no-such-dataset-here"))
    assert "\n" not in str(info.value)


def test_hold_out_is_seeded_and_disjoint():
    data = read_labelled_file(str(SEMEVAL))
    train1, val1 = hold_out(data, 0.25, seed=3)
    train2, val2 = hold_out(data, 0.25, seed=3)
    _, val3 = hold_out(data, 0.25, seed=4)
    assert len(val1) == 10 and len(train1) == 30
    assert val1.ids == val2.ids and val1.ids != val3.ids
    assert not set(val1.ids) & set(train1.ids)
    assert sorted(val1.ids + train1.ids) == sorted(data.ids)
    with pytest.raises(InputError, match="too few"):
        hold_out(data.subset([0]), 0.1, seed=0)

"""The XED English split shipped in data/xed-en: readable by mlb-train as documented, counts as its README says."""

import hashlib
from pathlib import Path

import numpy as np

from mlbert.trainer.data import read_label_names_file, read_labelled_file

XED = Path(__file__).resolve().parent.parent / "data" / "xed-en"


def test_split_files_are_the_documented_bytes():
    readme = (XED / "README.md").read_text(encoding="utf-8")
    for name in ("train.tsv.gz", "dev.tsv.gz", "test.tsv.gz", "emotions.txt"):
        digest = hashlib.sha256((XED / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in readme, name


def test_splits_read_with_the_documented_options_and_counts():
    names = read_label_names_file(str(XED / "emotions.txt"))
    assert names == ["anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust"]
    splits = {
        role: read_labelled_file(str(XED / f"{role}.tsv.gz"), label_names=names, label_id_base=1)
        for role in ("train", "dev", "test")
    }
    assert {role: len(s) for role, s in splits.items()} == {"train": 14022, "dev": 1753, "test": 1753}
    np.testing.assert_array_equal(splits["train"].labels.sum(axis=0), [3053, 2712, 1847, 1978, 2286, 1961, 1967, 2144])
    assert int((splits["test"].labels.sum(axis=1) > 1).sum()) == 393
    ids = [i for s in splits.values() for i in s.ids]
    assert len(set(ids)) == 17528 and all(i.startswith("en-") for i in ids)
    texts = [t for s in splits.values() for t in s.texts]
    assert len(set(texts)) == len(texts)  # no text in two splits

"""The GoEmotions files shipped in data/goemotions: what their README says, and mlb-batch reads
them (gzip, no header row, CSV quoting inside TSV) exactly as a CSV reader does."""

import csv
import gzip
import hashlib
import json
import re

import numpy as np
from click.testing import CliRunner

from mlbert.batch.cli import cli
from mlbert.runtime.session import Predictor, load_model
from mlbert.io.records import SCORE_DECIMALS

SPLITS = {"train": 43_410, "dev": 5_426, "test": 5_427}


def read_rows(path):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_readme_checksums_and_row_counts_hold(goemotions_data):
    readme = (goemotions_data / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, flags=re.MULTILINE)
    assert {name for _, name in listed} == {"train.tsv", "dev.tsv", "test.tsv", "emotions.txt",
                                             "train.tsv.gz", "dev.tsv.gz", "test.tsv.gz"}
    for digest, name in listed:
        if name.endswith(".tsv"):  # the official file: what the .gz holds
            data = gzip.decompress((goemotions_data / f"{name}.gz").read_bytes())
        else:
            data = (goemotions_data / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    names = (goemotions_data / "emotions.txt").read_text(encoding="utf-8").split("\n")
    assert len(names) == 28 and names[0] == "admiration" and names[-1] == "neutral"
    for split, count in SPLITS.items():
        rows = read_rows(goemotions_data / f"{split}.tsv.gz")
        assert len(rows) == count and {len(r) for r in rows} == {3}
        assert all(0 <= int(i) < 28 for r in rows for i in r[1].split(","))
        assert f"| {split:<5} | {count:,}" in readme


def test_mlb_batch_reads_the_shipped_gz_like_a_csv_reader(goemotions_data, golden_model, tmp_path):
    """Text column found without a header, quoted texts unquoted, every row once, ids kept."""
    source = goemotions_data / "test.tsv.gz"
    rows = read_rows(source)
    assert sum(1 for r in rows if '"' in r[0]) > 100  # the quoted texts are in there
    out = tmp_path / "labels.jsonl"
    result = CliRunner().invoke(cli, [str(source), "-m", str(golden_model), "--id-column", "3", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} rows, 0 errors" in result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["column_3"] for r in records] == [r[2] for r in rows]
    model = load_model(str(golden_model), "cpu")
    reference = Predictor(model, 8192).predict(model.header.preprocessing.apply([r[0] for r in rows]))
    scores = np.array([list(r["scores"].values()) for r in records])
    np.testing.assert_allclose(scores, np.round(reference, SCORE_DECIMALS), atol=1.01 * 10 ** -SCORE_DECIMALS, rtol=0)

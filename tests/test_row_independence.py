"""A row's scores depend on that row alone, for every file mlb-export writes by default (issue 25).

A property test: random texts in random groupings, through the Python API (alone, in random
groups, with random token budgets) and through mlb-batch (random --token-budget, --chunk-size,
--streams), for the fp32 file and the default int8 file of a tiny random model. Each row must
get the same scores to the bit, or within ``TOLERANCE`` where a float kernel's blocking could
forbid bit-identity (none did here). The batch-dependent scheme kept as an option (``unfused``,
one activation scale per batch tensor) is run through the same property and must fail it:
that is what shows the property can fail.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import _WORDS, write_varied_checkpoint

TOLERANCE = 1e-5
EXTRAS = ["😂", "❤️", "@someone", "http://x.example/a", "#wow", "!!!", "?", "12", "été", "日本"]


def random_texts(rng: random.Random, n: int) -> List[str]:
    """Texts of 0 to 90 words (some longer than the model's 64 tokens), with emoji, mentions, URLs."""
    texts = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 34, 90])
        texts.append(" ".join(rng.choice(_WORDS + EXTRAS) for _ in range(length)))
    return texts


@pytest.fixture(scope="module")
def files(tiny_checkpoint, tmp_path_factory) -> Dict[str, Path]:
    """fp32, the default int8 file, and the batch-dependent ``unfused`` int8 file of one varied model."""
    from mlbert.exporter.export import export_model
    from mlbert.exporter.validate import GateLimits

    base = tmp_path_factory.mktemp("rows")
    checkpoint = write_varied_checkpoint(tiny_checkpoint, base / "checkpoint")
    # The tiny random model is far more fragile than a trained one: the gate is not what is tested here.
    loose = GateLimits(max_micro_f1_drop=100, max_macro_f1_drop=100, max_jaccard_drop=100, min_row_agreement=0,
                       max_score_diff=1)
    out = {"fp32": base / "fp32.onnx", "int8": base / "int8.onnx", "unfused": base / "unfused.onnx"}
    export_model(str(checkpoint), str(out["fp32"]))
    export_model(str(checkpoint), str(out["int8"]), quantize="int8", limits=loose)
    export_model(str(checkpoint), str(out["unfused"]), quantize="int8", quantize_config="unfused", limits=loose)
    return out


def api_groupings(path: Path, texts: List[str], rng: random.Random) -> List[np.ndarray]:
    """The same texts scored whole, in random groups with random token budgets, and one by one."""
    from mlbert.runtime.classifier import load

    results = [load(path, "cpu").predict_proba(texts, errors="record")]
    for _ in range(3):
        classifier = load(path, "cpu", token_budget=rng.choice([64, 128, 320, 2048]), threads=rng.choice([1, 2]))
        order = list(range(len(texts)))
        rng.shuffle(order)
        scores = np.empty_like(results[0])
        start = 0
        while start < len(order):
            size = rng.choice([1, 2, 3, 7, 16, 40])
            part = order[start:start + size]
            scores[part] = classifier.predict_proba([texts[i] for i in part], errors="record",
                                                   chunk_size=rng.choice([None, 1, 5]))
            start += size
        results.append(scores)
    alone = load(path, "cpu")
    results.append(np.vstack([alone.predict_proba([t], errors="record") for t in texts]))
    return results


def largest_difference(results: List[np.ndarray]) -> float:
    """The largest score change against the first result; an empty text is NaN (no score) in every one."""
    first = results[0]
    assert np.isnan(first).any(axis=1).sum() > 0, "the texts include empty ones, which get no scores"
    for r in results[1:]:
        assert np.array_equal(np.isnan(r), np.isnan(first))
    return max(float(np.nanmax(np.abs(r - first))) for r in results[1:])


@pytest.mark.parametrize("kind", ["fp32", "int8"])
@pytest.mark.parametrize("seed", [1, 2])
def test_python_api_scores_a_row_the_same_in_any_grouping(files, kind, seed):
    rng = random.Random(seed)
    texts = random_texts(rng, 70)
    results = api_groupings(files[kind], texts, rng)
    assert largest_difference(results) <= TOLERANCE
    assert all(np.array_equal(r, results[0], equal_nan=True) for r in results[1:]), "not bit-identical (but within tolerance)"


def test_the_property_fails_for_the_batch_dependent_scheme(files):
    """One activation scale per batch tensor: the grouping moves scores by far more than the tolerance."""
    rng = random.Random(1)
    texts = random_texts(rng, 70)
    assert largest_difference(api_groupings(files["unfused"], texts, rng)) > 1e-3


def cli_records(path: Path, data: Path, out: Path, options: List[str]) -> List[dict]:
    from mlbert.batch.cli import cli

    result = CliRunner().invoke(cli, [str(data), "-m", str(path), "-o", str(out), "--device", "cpu", "--quiet",
                                      "--max-errors", "100%", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output  # empty texts are error records, tolerated here
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_mlb_batch_writes_a_row_the_same_whatever_its_batch(files, kind, tmp_path):
    rng = random.Random(7)
    texts = random_texts(rng, 120)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    settings = [[]] + [["--token-budget", str(rng.choice([64, 96, 200, 1000])), "--chunk-size",
                        str(rng.choice([1, 3, 10, 57])), "--streams", str(rng.choice([1, 2])), "--threads", "2"]
                       for _ in range(3)]
    runs = [cli_records(files[kind], data, tmp_path / f"out{i}.jsonl", s) for i, s in enumerate(settings)]
    for options, records in zip(settings[1:], runs[1:]):
        assert records == runs[0], f"mlb-batch {' '.join(options)} wrote other records"


@pytest.mark.parametrize("kind", ["fp32", "int8", "unfused"])
def test_a_file_quantized_per_batch_is_named_once_and_others_are_not(files, kind, tmp_path):
    """An int8 file whose scores depend on its batch (every int8 file before issue 25) gets one line saying so
    in mlb-batch's output and in ``Classifier.notes``; the fp32 and the default int8 file get none."""
    from mlbert.batch.cli import cli
    from mlbert.runtime.classifier import load

    data = tmp_path / "in.txt"
    data.write_text("so happy\nso sad\nwhat a day\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [str(data), "-m", str(files[kind]), "-o", str(tmp_path / "out.jsonl"),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "quantized per batch" in line]
    notes = [n for n in load(files[kind], "cpu").notes if "quantized per batch" in n]
    expected = 1 if kind == "unfused" else 0
    assert len(said) == expected and len(notes) == expected
    if expected:
        assert said[0].startswith(f"mlb-batch: {files[kind]}: int8 file quantized per batch")
        assert "mlb-export --quantize int8" in said[0]
    assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 3

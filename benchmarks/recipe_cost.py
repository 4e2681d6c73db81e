"""What label names in the input cost: tokens per row (``--mode lengths``) and rows/s at inference (``--mode label-cost``).

SpanEmo's input puts the label names before every text, so every row carries the label
segment (9 tokens for XED English's 8 labels, 29 for GoEmotions' 28, with the special
tokens). ``lengths`` counts tokens per training row both ways, with the packaged tokenizer
and mlb-train's preprocessing. ``label-cost`` measures inference: the packaged
all-MiniLM-L6-v2 under a plain head and under the label-token head (untrained heads: speed
does not depend on the weights), each exported with ``mlb-export`` (fp32 and the default
int8), classifying each set's test split through ``mlbert.load`` as mlb-batch does, in
rounds that alternate the two models. Its rows/s go into docs: run it alone on the machine
(``flock -x /tmp/mlb-cpu.lock``).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import common as c
from recipe_variants import DATASETS

COST_DIR = c.REPO / "runs" / "recipe" / "label-cost"
ROUNDS = 2


def _texts_and_names(ds_name: str, split: str, limit: int = 0) -> tuple:
    sys.path.insert(0, str(c.REPO))
    from mlbert.trainer.data import read_label_names_file, read_labelled_file

    dataset = DATASETS[ds_name]
    folder = c.REPO / dataset.folder
    names = read_label_names_file(str(folder / "emotions.txt"))
    texts = read_labelled_file(str(folder / f"{split}.tsv.gz"), label_names=names,
                               label_id_base=dataset.first_label_id).texts
    return (texts[:limit] if limit else texts), names


def input_lengths(datasets: Sequence[str]) -> str:
    """Mean tokens per training row, as trained (preprocessed, truncated at 128), and with the label
    segment first as ``--label-input`` encodes it (the text truncated to what the labels leave)."""
    from transformers import AutoTokenizer

    from mlbert.trainer.head import default_base_model
    from mlbert.trainer.label_input import encode_pairs, label_segment
    from mlbert.trainer.train_options import TrainOptions

    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    preprocessing = TrainOptions(output="", train="").preprocessing
    rows = []
    for ds_name in datasets:
        texts, names = _texts_and_names(ds_name, "train")
        texts = preprocessing.apply(texts)
        plain = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
        segment = label_segment(tokenizer, names, 128)
        paired = [len(ids) for ids in encode_pairs(tokenizer, texts, segment.text, 128)["input_ids"]]
        mean_plain, mean_paired = statistics.mean(plain), statistics.mean(paired)
        rows.append([ds_name, len(texts), len(names), c.fmt(mean_plain, 1), c.fmt(mean_paired, 1),
                     f"{mean_paired / mean_plain:.2f}x"])
    table = c.md_table(["dataset", "train rows", "labels", "tokens per row", "with the label segment first (--label-input)",
                        "ratio"], rows)
    return "\n".join(["Written by `python benchmarks/bench_recipe.py --mode lengths` (packaged all-MiniLM-L6-v2 "
                      "tokenizer, mlb-train's default preprocessing, whole training splits, --max-length 128):", "",
                      table])


def untrained_checkpoint(folder: Path, names: List[str], label_input: bool) -> Path:
    """The packaged base under a fresh plain or label-token head, saved as mlb-train saves (no training)."""
    sys.path.insert(0, str(c.REPO))
    from mlbert.modelfile import CheckpointConfig
    from mlbert.preprocess import Preprocessing
    from mlbert.trainer.head import default_base_model, load_model_and_tokenizer
    from mlbert.trainer.head_loading import HeadSpec

    if (folder / "mlb.json").exists():
        return folder
    head = HeadSpec(label_input=label_input)
    model, tokenizer, _ = load_model_and_tokenizer(default_base_model(), names, head, 128)
    model.config.problem_type = "multi_label_classification"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    segment = getattr(model.config, "label_segment", None)
    CheckpointConfig(label_names=list(names), thresholds=[0.5] * len(names), preprocessing=Preprocessing(emoji="words"),
                     max_length=128, head=head.describe(segment), label_segment=segment,
                     provenance={"made_by": "benchmarks/recipe_cost.py (untrained head, speed runs only)"}).save(str(folder))
    return folder


def _rows_per_second(path: Path, texts: List[str]) -> Dict[str, float]:
    sys.path.insert(0, str(c.REPO))
    import mlbert

    classifier = mlbert.load(str(path), device="cpu")
    classifier.warm_up()
    started = time.perf_counter()
    classifier.predict_proba(texts)
    seconds = time.perf_counter() - started
    encoder = classifier._predictor.encoder
    lengths = [float(encoder.encode(classifier.header.preprocessing.apply(texts[i:i + 4096])).lengths.mean())
               for i in range(0, len(texts), 4096)]
    return {"rows_per_s": len(texts) / seconds, "tokens_per_row": statistics.mean(lengths)}


def label_cost(datasets: Sequence[str], limit: int = 0) -> List[Dict[str, Any]]:
    """rows/s and tokens per row of the plain and the label-token model, per dataset and precision."""
    results = []
    for ds_name in datasets:
        texts, names = _texts_and_names(ds_name, "test", limit)
        files = {}
        for model in ("plain", "labels-in"):
            checkpoint = untrained_checkpoint(COST_DIR / ds_name / model, names, model == "labels-in")
            for precision, quantize in (("fp32", "none"), ("int8", "int8")):
                files[(model, precision)] = c.export_onnx(checkpoint, COST_DIR / ds_name / f"{model}-{precision}.onnx",
                                                          quantize)
        for round_number in range(ROUNDS):
            order = sorted(files) if round_number % 2 == 0 else sorted(files, reverse=True)
            for model, precision in order:
                c.log(f"label-cost {ds_name} {model} {precision} round {round_number + 1}")
                figures = _rows_per_second(files[(model, precision)], texts)
                results.append({"dataset": ds_name, "model": model, "precision": precision, "round": round_number + 1,
                                "rows": len(texts), **figures})
    return results


def render_label_cost(results: List[Dict[str, Any]], written: str) -> str:
    """tokens per row and rows/s (mean of the rounds) per dataset, model and precision, against the plain model."""
    rows = []
    keys = list(dict.fromkeys((r["dataset"], r["precision"], r["model"]) for r in results))
    for ds_name, precision, model in sorted(keys):
        mine = [r for r in results if (r["dataset"], r["precision"], r["model"]) == (ds_name, precision, model)]
        plain = [r for r in results if (r["dataset"], r["precision"], r["model"]) == (ds_name, precision, "plain")]
        speed, base = statistics.mean(r["rows_per_s"] for r in mine), statistics.mean(r["rows_per_s"] for r in plain)
        rows.append([ds_name, precision, model, mine[0]["rows"], c.fmt(mine[0]["tokens_per_row"], 1),
                     ", ".join(f"{r['rows_per_s']:.0f}" for r in mine), c.fmt(speed), f"{speed / base:.2f}x"])
    table = c.md_table(["dataset", "precision", "model", "rows", "tokens per row", "rows/s per round", "rows/s",
                        "x plain"], rows)
    return "\n".join([written, "", "The packaged all-MiniLM-L6-v2 with an untrained plain head and an untrained "
                      "label-token head (`--label-input`), exported by mlb-export, classifying each test split "
                      "through `mlbert.load` on the CPU (2 streams), rounds alternating the models:", "", table])

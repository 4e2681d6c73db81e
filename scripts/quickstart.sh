#!/usr/bin/env bash
# Your own model, end to end on a CPU: train -> export (int8, checked) -> classify a file -> evaluate.
# The README's next step after the built-in model (scripts/try_builtin.sh).
#
#   scripts/quickstart.sh                       # GoEmotions shipped in data/goemotions, 12,000 training rows
#   scripts/quickstart.sh --dataset sem_eval_2018_task_1 --dataset-config subtask5.english   # any mlb-train data options
#
# Everything lands in runs/quickstart/. MLB_QUICKSTART_ROWS changes the training rows (all of
# GoEmotions train is 43,410; scripts/build_builtin_model.sh trains the built-in model on all of it).
# The last step prints the trained model's figures on the test split: a model trained on a slice
# for two epochs is usable but below the built-in one, and the figures say by how much.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=runs/quickstart
DATA=data/goemotions
ROWS=${MLB_QUICKSTART_ROWS:-12000}
mkdir -p "$OUT"

if [ "$#" -gt 0 ]; then
  DATA_OPTIONS=("$@")
  CLASSIFY_INPUT=""
else
  DATA_OPTIONS=(--train "$DATA/train.tsv.gz" --validation "$DATA/dev.tsv.gz" --test "$DATA/test.tsv.gz"
                --label-names "$DATA/emotions.txt")
  CLASSIFY_INPUT="$DATA/test.tsv.gz"
fi

run() { printf '\n$ %s\n' "$*" >&2; "$@"; }

run $BIN/mlb-train "${DATA_OPTIONS[@]}" --limit-train "$ROWS" --limit-eval 2000 --epochs 2 \
    --threshold-objective label-f1 -o "$OUT/model" --overwrite
run $BIN/mlb-export "$OUT/model" "$OUT/model.onnx"
if [ -n "$CLASSIFY_INPUT" ]; then
  # int8 is written only if it keeps micro-F1/Jaccard within 1 point (macro-F1 1.5) of PyTorch on dev.
  run $BIN/mlb-export "$OUT/model" "$OUT/model.int8.onnx" --quantize int8 \
      --validate-on "$DATA/dev.tsv.gz" --validate-limit 1000
else
  run $BIN/mlb-export "$OUT/model" "$OUT/model.int8.onnx" --quantize int8
fi
if [ -n "$CLASSIFY_INPUT" ]; then
  run $BIN/mlb-batch "$CLASSIFY_INPUT" --model "$OUT/model.int8.onnx" --id-column 3 \
      -o "$OUT/test-labels.jsonl" || [ $? -eq 3 ]
  printf '\nFirst records of %s:\n' "$OUT/test-labels.jsonl" >&2
  head -n 3 "$OUT/test-labels.jsonl"
  # The figures of the model just trained, on all 5,427 test comments, beside the built-in model's.
  run $BIN/mlb-eval goemotions "$OUT/model.int8.onnx" "$DATA/test.tsv.gz" --label-names "$DATA/emotions.txt"
fi

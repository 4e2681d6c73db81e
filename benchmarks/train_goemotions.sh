#!/usr/bin/env bash
# Full training run of the default base model (packaged all-MiniLM-L6-v2) on GoEmotions
# train/dev/test as this environment provides it (../shared/data/goemotions). The figures in
# docs/RESULTS.md come from this command. Usage: benchmarks/train_goemotions.sh [OUTPUT] [extra mlb-train options]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MLB_GOEMOTIONS:-../shared/data/goemotions}
OUT=${1:-runs/goemotions}
shift || true
exec .venv/bin/mlb-train \
  --train "$DATA/train.tsv" --validation "$DATA/dev.tsv" --test "$DATA/test.tsv" \
  --label-names "$DATA/emotions.txt" \
  --epochs 6 \
  -o "$OUT" --overwrite "$@"

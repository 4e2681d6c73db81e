#!/usr/bin/env bash
# Full training run of the default base model (packaged all-MiniLM-L6-v2) on GoEmotions
# train/dev/test as shipped in data/goemotions (gzip-compressed, read directly). The figures in
# docs/RESULTS.md come from this command. Usage: benchmarks/train_goemotions.sh [OUTPUT] [extra mlb-train options]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MLB_GOEMOTIONS:-data/goemotions}
OUT=${1:-runs/goemotions}
shift || true
exec .venv/bin/mlb-train \
  --train "$DATA/train.tsv.gz" --validation "$DATA/dev.tsv.gz" --test "$DATA/test.tsv.gz" \
  --label-names "$DATA/emotions.txt" \
  --epochs 6 \
  -o "$OUT" --overwrite "$@"

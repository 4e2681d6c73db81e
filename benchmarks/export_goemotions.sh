#!/usr/bin/env bash
# fp32 and int8 exports of the GoEmotions model trained by benchmarks/train_goemotions.sh, each
# verified by mlb-export against the PyTorch model on all of GoEmotions test.tsv (5,427 rows).
# The size, parity and F1 figures in docs/EXPORT.md come from this command.
# Usage: benchmarks/export_goemotions.sh [RUN_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MLB_GOEMOTIONS:-data/goemotions}
RUN=${1:-runs/goemotions}
OUT=${2:-runs/goemotions-export}
mkdir -p "$OUT"
for mode in none int8; do
  start=$(date +%s)
  .venv/bin/mlb-export "$RUN" "$OUT/model-$mode.onnx" --quantize "$mode" --validate-on "$DATA/test.tsv.gz" \
    2>&1 | tee "$OUT/export-$mode.log"
  echo "export --quantize $mode: $(( $(date +%s) - start )) s, $(stat -c %s "$OUT/model-$mode.onnx") bytes" | tee -a "$OUT/export-$mode.log"
done

#!/usr/bin/env bash
# The README's first command, after `pip install -e .` (the lean runtime: no torch): the built-in
# GoEmotions model classifies the shipped sample data/samples/tweets.csv, then shows what came out.
#
#   scripts/try_builtin.sh                 # data/samples/tweets.csv
#   scripts/try_builtin.sh my.csv          # any file mlb-batch reads
#
# Everything lands in runs/try/ (or MLB_TRY_OUT): labels.jsonl (one record per row) and report.json (the run report).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MLB_BIN:-.venv/bin}
INPUT=${1:-data/samples/tweets.csv}
OUT=${MLB_TRY_OUT:-runs/try}
mkdir -p "$OUT"

# No --model and no MLB_MODEL: mlb-batch uses the built-in model and its summary line says so.
printf '$ mlb-batch %s -o %s/labels.jsonl --report-json %s/report.json\n' "$INPUT" "$OUT" "$OUT" >&2
env -u MLB_MODEL "$BIN/mlb-batch" "$INPUT" -o "$OUT/labels.jsonl" --report-json "$OUT/report.json" || [ $? -eq 3 ]

"$BIN/python" - "$INPUT" "$OUT/labels.jsonl" "$OUT/report.json" <<'PY'
import csv, gzip, json, sys

source, labels_path, report_path = sys.argv[1:]
records = [json.loads(line) for line in open(labels_path, encoding="utf-8")]
texts = []
if source.endswith((".csv", ".csv.gz")):
    with (gzip.open if source.endswith(".gz") else open)(source, "rt", encoding="utf-8-sig", newline="") as f:
        texts = [row.get("text", "") for row in csv.DictReader(f)]
print(f"\n{len(records)} records in {labels_path}; the first eight:")
for i, record in enumerate(records[:8]):
    text = texts[i] if i < len(texts) else ""
    top = sorted(record.get("scores", {}).items(), key=lambda kv: -kv[1])[:2]
    shown = ", ".join(record.get("labels") or []) or "(no label above its threshold)"
    print(f"  {text[:58]:<60} -> {shown}" + ("" if record.get("labels") else f"; top: {top[0][0]} {top[0][1]:.2f}"))
report = json.load(open(report_path, encoding="utf-8"))
shares = sorted((r for r in report["labels"] if r["positive_rows"]), key=lambda r: -r["positive_rows"])
print("\nLabel shares (rows with the label / rows):")
print("  " + ", ".join(f"{r['name']} {100 * r['positive_share']:.0f}%" for r in shares[:12]))
print(f"\nNext: your own files (mlb-batch FILE -o labels.jsonl), the Python API (mlbert.load()), or a model of "
      "your own (scripts/quickstart.sh): see README.md.")
PY

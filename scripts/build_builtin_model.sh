#!/usr/bin/env bash
# Rebuilds the built-in model, mlbert/models/goemotions.int8.onnx, from the GoEmotions files shipped
# in data/goemotions, and says whether the file it made is the shipped one, byte for byte.
#
#   scripts/build_builtin_model.sh                 # all steps into runs/builtin (about an hour on an idle CPU)
#   scripts/build_builtin_model.sh runs/b export check    # only some steps: checksums train export card check
#   scripts/build_builtin_model.sh runs/builtin install   # copy the file and its card into mlbert/models/ (a release)
#
# What makes it repeatable: the data's checksums are checked first; training is seeded (--seed 42)
# on one thread (a fixed order of every sum, whatever the machine has); every recorded time is SOURCE_DATE_EPOCH (the shipped file's); paths are recorded
# relative to the repository. On the machine kind it was built on (x86-64, AVX-512 VNNI, 2 cores)
# the rebuild is byte-identical; another CPU's kernels round differently in the last bits, and the
# `check` step then shows how far the test figures moved. Needs `pip install -e '.[export]'` in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MLB_BIN:-.venv/bin}
OUT=${1:-runs/builtin}
shift || true
STEPS=${*:-checksums train export card check}
DATA=data/goemotions
SHIPPED=mlbert/models/goemotions.int8.onnx
export SOURCE_DATE_EPOCH=1796428800   # 2026-12-05T00:00:00Z
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONHASHSEED=0 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

run() { printf '\n$ %s\n' "$*" >&2; "$@"; }

for step in $STEPS; do
  case "$step" in
    checksums)
      # The shipped files (data/goemotions/README.md lists the same sums and the originals').
      (cd "$DATA" && sha256sum -c --quiet <<'SUMS'
bad1c42ff350e4923bae248d04bcf66eece69c327bedada2f15c2dd4b27b5230  train.tsv.gz
27bfd8a3eee2bce1973940ff5ad1709b24b08e7bd7027f2872336a6300beda15  dev.tsv.gz
3546e9c14da65b5a6f387b336c2d929c95e7011284fb59b59338197eb1d234a1  test.tsv.gz
45c3ef86782d2a4d7fedcd6d8c111aa0d0e94720689bd164fac94fefb4495a89  emotions.txt
SUMS
      ) && echo "data: checksums match" >&2 ;;
    train)
      # mlb-train's defaults (benchmarks/train_goemotions.sh, docs/RESULTS.md): up to 6 epochs, early stopping.
      # The saved thresholds are one per label, each tuned on validation for that label's F1: an emotion
      # classifier is asked about every one of its 28 labels, rare ones included (the model card says why).
      run "$BIN/mlb-train" --train "$DATA/train.tsv.gz" --validation "$DATA/dev.tsv.gz" --test "$DATA/test.tsv.gz" \
          --label-names "$DATA/emotions.txt" --epochs 6 --seed 42 --threshold-objective label-f1 \
          -o "$OUT/checkpoint" --overwrite ;;
    export)
      # Through mlb-export's gates: int8 is refused unless it agrees with the PyTorch model on validation data.
      run "$BIN/mlb-export" "$OUT/checkpoint" "$OUT/goemotions.int8.onnx" --quantize int8 \
          --validate-on "$DATA/dev.tsv.gz" ;;
    check)
      run "$BIN/mlb-eval" "$OUT/checkpoint" "$OUT/goemotions.int8.onnx" "$DATA/test.tsv.gz" \
          --label-names "$DATA/emotions.txt" --json "$OUT/test-metrics.json" --quiet
      # Byte for byte; where the bytes differ, whether the graph and weights do, and which header fields.
      "$BIN/python" - "$OUT/goemotions.int8.onnx" "$SHIPPED" <<'PY'
import hashlib, json, sys
import onnx

made, shipped = sys.argv[1:]
def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
def parts(path):
    model = onnx.load(path)
    header = json.loads({p.key: p.value for p in model.metadata_props}["mlb"])
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString()).hexdigest(), header
def flat(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}
if digest(made) == digest(shipped):
    print(f"built-in model: {made} is byte-identical to {shipped} (sha256 {digest(made)})")
    sys.exit(0)
(graph_a, head_a), (graph_b, head_b) = parts(made), parts(shipped)
a, b = flat(head_a), flat(head_b)
fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
print(f"built-in model: {made} differs from {shipped}: graph and weights "
      + ("identical" if graph_a == graph_b else "DIFFER") + "; header fields that differ: " + (", ".join(fields) or "none"))
sys.exit(1)
PY
      ;;
    card)
      # The model card from the figures the build measured (test-metrics.json comes from the check step's
      # mlb-eval, so the card step runs it first when it is missing or older than the model file).
      [ "$OUT/test-metrics.json" -nt "$OUT/goemotions.int8.onnx" ] || run "$BIN/mlb-eval" "$OUT/checkpoint" "$OUT/goemotions.int8.onnx" \
          "$DATA/test.tsv.gz" --label-names "$DATA/emotions.txt" --json "$OUT/test-metrics.json" --quiet
      run "$BIN/python" scripts/builtin_model_card.py "$OUT" "$OUT/goemotions.md"
      if cmp -s "$OUT/goemotions.md" mlbert/models/goemotions.md; then
        echo "model card: $OUT/goemotions.md is the shipped card"
      else
        echo "model card: $OUT/goemotions.md differs from mlbert/models/goemotions.md (diff them to see how)"
      fi ;;
    install)
      cp "$OUT/goemotions.int8.onnx" "$SHIPPED" && cp "$OUT/goemotions.md" mlbert/models/goemotions.md
      echo "installed $SHIPPED and mlbert/models/goemotions.md" ;;
    *) echo "unknown step: $step (checksums, train, export, card, check, install)" >&2; exit 2 ;;
  esac
done

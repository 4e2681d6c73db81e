#!/usr/bin/env bash
# The runtime as `pip install mlbert` installs it, tested: a second virtual environment,
# .venv-runtime, gets this clone installed as a wheel (not editable) with only its runtime
# dependencies (onnxruntime-gpu, tokenizers, numpy, click) plus pytest, and runs tests/runtime/.
#
#   scripts/test_runtime_only.sh            # after the main suite (see the README's test command)
#
# Checks, in order: torch and transformers are not importable there; the mlbert distribution
# put exactly one top-level import name, mlbert, into site-packages (besides its dist-info);
# tests/runtime/ passes when run from a folder outside the repository, so that neither the
# working folder (`python -m pytest` puts it first on sys.path) nor the repository's own
# mlbert/ folder can stand in for the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=$REPO/.venv-runtime
PY=$VENV/bin/python
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mlb-runtime-only.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The source as a fresh clone has it (tracked and new files, nothing ignored): a build/ folder
# left by an earlier build could otherwise slip stale modules into the wheel.
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$WORK/src"

rm -rf "$VENV"
python3 -m venv "$VENV"
"$PY" -m pip install -q "$WORK/src" pytest

# From here on, outside the repository: its mlbert/ and mlbert.egg-info would shadow the install.
mkdir "$WORK/run"
cd "$WORK/run"

"$PY" - <<'EOF'
import importlib.util, sys
present = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"runtime-only environment: {', '.join(present)} importable, but `pip install mlbert` must not pull them in")
EOF

"$PY" - <<'EOF'
import sys
from importlib.metadata import distribution

dist = distribution("mlbert")
top = {str(f).split("/")[0] for f in dist.files if not str(f).startswith("..")}  # ../../bin: console scripts
names = {t for t in top if not t.endswith(".dist-info")}
if names != {"mlbert"} or len(top) != 2:
    sys.exit(f"the mlbert wheel put {sorted(top)} into site-packages; expected mlbert and its dist-info only")
print(f"installed: mlbert {dist.version}, top-level names {sorted(top)}")
EOF

MLB_RUNTIME_ONLY=1 "$PY" -m pytest -q -p no:cacheprovider "$REPO/tests/runtime"

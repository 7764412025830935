#!/usr/bin/env bash
# Run the transformers-facing tests against the oldest and newest transformers that pyproject allows
# (and any other versions named), each installed beside the project's venv, not into it:
#
#   scripts/test_transformers_range.sh [VERSION ...] [-- PYTEST ARGS]
#
# Default versions: the lower bound in pyproject.toml (5.0.0), the GPU machine's (5.17.0, ../shared/GPU.md) and
# the newest on the index. Each goes into /tmp/imitlab-tf/<version> with `pip install --no-deps --target`,
# together with the huggingface_hub and tokenizers releases its own metadata asks for, and the tests run with
# that folder first on PYTHONPATH. A version equal to the venv's runs against the venv itself.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${IMITLAB_TF_DIR:-/tmp/imitlab-tf}
export IMITLAB_DATA=${IMITLAB_DATA:-/work/shared/data}

versions=()
while [[ $# -gt 0 && $1 != "--" ]]; do versions+=("$1"); shift; done
[[ ${1:-} == "--" ]] && shift
tests=("$@")
[[ ${#tests[@]} -eq 0 ]] && tests=(tests/test_devices.py tests/test_flops.py tests/test_train_logic.py tests/test_evals_hf.py)

if [[ ${#versions[@]} -eq 0 ]]; then
  lowest=$(sed -n 's/.*"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml)
  [[ $lowest =~ ^[0-9]+\.[0-9]+$ ]] && lowest="$lowest.0"
  newest=$("$PY" -m pip index versions transformers 2>/dev/null | sed -n 's/^transformers (\(.*\))$/\1/p')
  versions=("$lowest" 5.17.0 "${newest:?could not ask the index for the newest transformers}")
fi
installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("transformers"))')

summary=()
for version in "${versions[@]}"; do
  pythonpath=""
  if [[ $version != "$installed" ]]; then
    target="$ROOT/$version"
    if [[ ! -f $target/.complete ]]; then
      rm -rf "$target"
      "$PY" -m pip install -q --no-deps --target "$target" "transformers==$version"
      # The hub and tokenizers releases this transformers pins (the venv's may be outside its range).
      mapfile -t pins < <(sed -n 's/^Requires-Dist: \(\(huggingface-hub\|tokenizers\)[^;]*\)$/\1/p' \
        "$target"/transformers-"$version".dist-info/METADATA | tr -d ' ')
      "$PY" -m pip install -q --no-deps --target "$target" "${pins[@]}"
      touch "$target/.complete"
    fi
    pythonpath="$target"
  fi
  stack=$(PYTHONPATH=$pythonpath "$PY" -c 'import transformers, tokenizers, huggingface_hub as h
print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, huggingface_hub {h.__version__}")')
  echo "== $stack"
  start=$SECONDS
  if PYTHONPATH=$pythonpath "$PY" -m pytest "${tests[@]}" -q -p no:cacheprovider -o addopts= 2>&1 | tee "$ROOT-$version.log" | tail -3; then
    :
  fi
  result=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ (passed|failed|error)' "$ROOT-$version.log" | tail -1)
  summary+=("$stack: $result ($((SECONDS - start)) s)")
done

echo
echo "tests: ${tests[*]}"
printf '%s\n' "${summary[@]}"
! grep -qE '[0-9]+ (failed|error)' <(printf '%s\n' "${summary[@]}")

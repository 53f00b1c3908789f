#!/usr/bin/env bash
# Builds the safetensors fuzz target with clang (libFuzzer + ASan + UBSan) into build/fuzz and runs
# it for SECONDS (default 60) on the seed corpus fuzz/corpus, the regressions fuzz/regressions and
# what earlier runs found (build/fuzz/corpus). Skips with a message (exit 0) when clang or its
# libFuzzer runtime (Debian: libclang-rt-14-dev) is missing. A crash leaves its input in
# build/fuzz/ (crash-*): copy it to fuzz/regressions/, which io_tests replays in every build.
#   scripts/fuzz.sh [SECONDS] [extra libFuzzer flags, e.g. -jobs=2 -workers=2]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
shift || true
CLANG="${ATTN_FUZZ_CXX:-clang++}"
out=build/fuzz
mkdir -p "$out/corpus"

if ! command -v "$CLANG" >/dev/null; then
  echo "fuzz: skipped ($CLANG not found; scripts/setup.sh installs clang)"
  exit 0
fi
probe="$out/probe.cpp"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe"
if ! "$CLANG" -fsanitize=fuzzer "$probe" -o "$out/probe" 2>"$out/probe.log"; then
  echo "fuzz: skipped (clang cannot link -fsanitize=fuzzer: $(head -c 300 "$out/probe.log"); install libclang-rt-14-dev)"
  exit 0
fi

# Only the safetensors reader/writer and what they need: the rest of src/io (checkpoints, module
# state) links against attn::nn, which the fuzz target does not build.
sources=(fuzz/safetensors_fuzz.cpp src/io/safetensors_read.cpp src/io/safetensors_write.cpp
  src/io/safetensors_dtypes.cpp src/io/utf8.cpp src/io/tensor_copy.cpp src/core/tensor.cpp)
bin="$out/safetensors_fuzz"
if [[ ! -x "$bin" ]] || [[ -n "$(find "${sources[@]}" include/attn src/io -newer "$bin" -print -quit)" ]]; then
  echo "fuzz: building $bin"
  "$CLANG" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -Wall -Wextra -Werror -Iinclude -Isrc "${sources[@]}" -o "$bin"
fi
echo "fuzz: running $bin for ${seconds} s"
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
  "$bin" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict=fuzz/safetensors.dict -artifact_prefix="$out/" "$@" "$out/corpus" fuzz/corpus fuzz/regressions

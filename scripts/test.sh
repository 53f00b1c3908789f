#!/usr/bin/env bash
# All tests on a fresh machine: install dependencies, build and test the release preset, then
# build and test the asan preset (AddressSanitizer + UndefinedBehaviorSanitizer), then fuzz the
# safetensors reader for ATTN_FUZZ_SECONDS (default 60; scripts/fuzz.sh), then the Python tests
# (pytest, against the attn package that scripts/setup.sh installed in the venv).
# ATTN_JOBS sets the parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS="${ATTN_JOBS:-$(nproc)}"
start=$SECONDS

scripts/setup.sh
# Compiler cache (scripts/setup.sh installs ccache): paths relative to the repo, so clones and
# worktrees share hits. Set CMAKE_CXX_COMPILER_LAUNCHER yourself to override.
if command -v ccache >/dev/null && [[ -z "${CMAKE_CXX_COMPILER_LAUNCHER:-}" ]]; then
  export CCACHE_BASEDIR="$PWD" CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache
fi
for preset in release asan; do
  echo "== ${preset}: configure, build, test"
  cmake --preset "$preset"
  cmake --build --preset "$preset" --parallel "$JOBS"
  ctest --preset "$preset" --parallel "$JOBS"
done
echo "== fuzz: the safetensors reader under libFuzzer for ${ATTN_FUZZ_SECONDS:-60} s (skips without clang's libFuzzer)"
scripts/fuzz.sh "${ATTN_FUZZ_SECONDS:-60}"
echo "== python: pytest (attn package built by scripts/setup.sh into ${ATTN_VENV:-.venv})"
if [[ "${ATTN_SKIP_PYTHON:-0}" != 1 ]]; then
  rc=0
  "${ATTN_VENV:-$PWD/.venv}/bin/python" -m pytest -q python/tests || rc=$?
  ((rc == 0 || rc == 5)) || exit "$rc"  # 5 = no tests collected
fi
echo "test.sh: all tests passed in $((SECONDS - start)) s"

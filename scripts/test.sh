#!/usr/bin/env bash
# All tests on a fresh machine: install dependencies, build and test the release preset, then
# build and test the asan preset (AddressSanitizer + UndefinedBehaviorSanitizer).
# ATTN_JOBS sets the parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS="${ATTN_JOBS:-$(nproc)}"
start=$SECONDS

scripts/setup.sh
for preset in release asan; do
  echo "== ${preset}: configure, build, test"
  cmake --preset "$preset"
  cmake --build --preset "$preset" --parallel "$JOBS"
  ctest --preset "$preset" --parallel "$JOBS"
done
echo "test.sh: all tests passed in $((SECONDS - start)) s"

#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build the release preset, run the
# self-check (every fast backend against the reference), the quick benchmark table (attn vs the
# FMA peak, sgemm and a naive BLAS attention, measured in the same run) and a small attention demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS="${ATTN_JOBS:-$(nproc)}"

scripts/setup.sh
cmake --preset release
cmake --build --preset release --parallel "$JOBS"
build/release/tools/attn/attn --version
build/release/tools/attn/attn check
build/release/tools/attn/attn bench --quick --json build/release/bench_quick.json
build/release/tools/attn/attn demo

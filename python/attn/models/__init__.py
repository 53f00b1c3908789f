"""Whole models on attn's layers (docs/generation.md, docs/embeddings.md)."""

from .causal_lm import CausalLM, train_causal_lm
from .sentence import SentenceEncoder

__all__ = ["CausalLM", "SentenceEncoder", "train_causal_lm"]

"""Whole models on attn's layers (docs/generation.md, docs/embeddings.md)."""

from .causal_lm import CausalLM
from .sentence import SentenceEncoder

__all__ = ["CausalLM", "SentenceEncoder"]

"""Whole models on attn's layers (docs/generation.md)."""

from .causal_lm import CausalLM

__all__ = ["CausalLM"]

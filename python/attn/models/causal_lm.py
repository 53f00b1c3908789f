"""A LLaMA-style causal language model on attn's C++ modules, with KV-cached generation.

``CausalLM(model_dir)`` loads a Hugging Face model directory (``config.json`` and
``model.safetensors``, as ``LlamaForCausalLM.save_pretrained(dir, safe_serialization=True)`` writes
it) into ``attn::nn::LlamaForCausalLM`` (docs/generation.md): RMSNorm, RoPE (half-split,
``rope_theta``), GQA attention, SwiGLU MLP, tied or separate ``lm_head``; inference in float32.

    lm = attn.models.CausalLM("my-llama")
    new = lm.generate([1, 15043, 29892], max_new_tokens=32)                 # greedy
    new = lm.generate(ids, 32, temperature=0.8, top_k=50, top_p=0.95, seed=0)  # seeded sampling

The prompt is prefilled in one call, then each new token is one step against the KV cache
(``kv_dtype`` 'f32', 'bf16' or 'i8'; ``paged=True`` for the paged layout). Seeded sampling gives
the same tokens on every run and thread count. Errors are ValueError/TypeError with the C++
library's message (a missing file or tensor, a wrong shape, an unsupported config).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .. import _core

__all__ = ["CausalLM", "train_causal_lm"]


def _ids(ids, name: str) -> list[int]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name}: is a {type(ids).__name__}, expected a sequence of token ids (ints)")
    try:
        arr = np.asarray(ids)
    except Exception as e:  # pragma: no cover - numpy's own message
        raise TypeError(f"{name}: cannot be read as token ids, expected a sequence of ints ({e})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: has shape {list(arr.shape)}, expected one sequence of token ids [L]")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: has dtype {arr.dtype}, expected integer token ids")
    return [int(x) for x in arr]


class CausalLM:
    """A LLaMA-style causal LM loaded from ``model_dir`` (see the module docstring)."""

    def __init__(self, model_dir: str | os.PathLike):
        self._lm = _core.CausalLM(os.fspath(model_dir))

    @property
    def config(self) -> dict:
        """The config.json values the model uses."""
        return self._lm.config

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """float32 logits [L, V] of the sequence, recomputed without a cache."""
        return self._lm.logits(_ids(ids, "ids"))

    def cached_logits(self, ids: Sequence[int], prefill: int | None = None, *, kv_dtype: str = "f32",
                      paged: bool = False) -> np.ndarray:
        """float32 logits [L, V] through the KV cache: the first ``prefill`` tokens (default all but
        the last) in one call, then one token per call (teacher forcing)."""
        ids = _ids(ids, "ids")
        if prefill is None:
            prefill = max(1, len(ids) - 1)
        return self._lm.cached_logits(ids, int(prefill), kv_dtype, bool(paged))

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, *, kv_dtype: str = "f32",
                 paged: bool = False, use_cache: bool = True, stop_tokens: Sequence[int] | None = None,
                 return_dict: bool = False):
        """The new tokens after ``prompt_ids`` (an int64 array of at most ``max_new_tokens``).

        temperature 0 is greedy; otherwise logits/temperature, ``top_k`` (0 = all), ``top_p``
        (nucleus, 1 = all) and one draw from a stream seeded by ``seed``. ``stop_tokens``: stop after
        producing one (default: the config's eos_token_id; ``[]`` never stops early).
        ``use_cache=False`` recomputes the whole sequence for every token. ``return_dict=True``
        returns ``{"tokens", "prompt_logits" [Lp, V], "logits" [n, V] (row t gave tokens[t]),
        "prefill_seconds", "decode_seconds", "decode_steps"}``.
        """
        prompt = _ids(prompt_ids, "prompt_ids")
        if stop_tokens is None:
            stop_tokens = self.config["eos_token_id"]
        r = self._lm.generate(prompt, int(max_new_tokens), float(temperature), int(top_k), float(top_p),
                              int(seed), bool(use_cache), kv_dtype, bool(paged),
                              _ids(list(stop_tokens), "stop_tokens"), bool(return_dict))
        tokens = np.asarray(r["tokens"], dtype=np.int64)
        if not return_dict:
            return tokens
        r["tokens"] = tokens
        return r


def train_causal_lm(tokens, out_dir, *, vocab_size: int = 256, hidden_size: int = 64,
                    intermediate_size: int | None = None, num_layers: int = 2, num_heads: int = 4,
                    num_kv_heads: int | None = None, rope_theta: float = 10000.0, steps: int = 100,
                    batch: int = 8, seq_len: int = 64, lr: float = 3e-3, warmup: int = 10,
                    weight_decay: float = 0.1, clip: float = 1.0, seed: int = 0) -> np.ndarray:
    """Trains a LLaMA-style LM (``attn::nn::TrainableLlama``, docs/training.md) on ``tokens`` and
    writes ``out_dir`` (``config.json`` + ``model.safetensors``, loadable by :class:`CausalLM` and
    transformers' ``LlamaForCausalLM.from_pretrained``). ``tokens``: token ids, or ``bytes``/``str``
    (its UTF-8 bytes, for ``vocab_size=256``). Each step takes ``batch`` random windows of
    ``seq_len`` tokens; AdamW with linear warmup and cosine decay to ``lr/10``, gradient clipping.
    Returns the loss (mean cross-entropy, nats) of every step."""
    if isinstance(tokens, str):
        tokens = tokens.encode("utf-8")
    ids = list(tokens) if isinstance(tokens, (bytes, bytearray)) else _ids(tokens, "tokens")
    losses = _core.train_causal_lm(
        ids, os.fspath(out_dir), vocab_size, hidden_size,
        intermediate_size if intermediate_size is not None else 2 * hidden_size, num_layers, num_heads,
        num_kv_heads if num_kv_heads is not None else num_heads, rope_theta, steps, batch, seq_len, lr, warmup,
        weight_decay, clip, seed)
    return np.asarray(losses)

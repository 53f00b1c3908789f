"""The one multi-head attention module code under attn.torch's classes (docs/architecture.md §6).

``AttentionCore`` is the ``nn.Module`` base of both faces: ``attn.torch.MultiheadAttention`` (torch's
signature, state-dict names and ``True = blocked`` masks) and the seeds' classes of
``attn.modules`` (``MultiHeadAttention``, ``MultiQueryAttention``, ``GroupQueryAttention``: one
``[B, S, E]`` layout, ``True = attend`` masks). A subclass only stores its parameters and converts
its own inputs and masks; the computation is here, once:

1. projections: ``F.linear`` (torch's GEMM and autograd) with the weights ``_in_weights()`` gives
   (one fused QKV GEMM when query, key and value are one tensor and the storage is fused);
2. heads: ``[B, L, H·D] -> [B, H, L, D]`` strided views, read by attn in place;
3. attention: attn's op through ``attn.torch._attention`` (docs/contract.md), dropout in training;
4. heads merged (a view) and the output projection ``out_proj``; the weights averaged or per head.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionCore", "check_mask_dtype"]


def check_mask_dtype(name: str, mask: Optional[Tensor], meaning: str) -> None:
    """torch's rule for masks: bool or floating (an integer mask would otherwise pass as a bias)."""
    if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name}: has dtype {mask.dtype}, expected torch.bool ({meaning}) or a floating dtype "
                        "(added to the scores)")


class AttentionCore(nn.Module):
    """Projections, heads, attn's op and the output projection, shared by every attention module.

    Subclasses set ``embed_dim`` (E), ``num_heads`` (Hq), ``num_kv_heads`` (Hkv, dividing Hq),
    ``head_dim`` (E / Hq), ``kv_dim`` (Hkv·head_dim), ``dropout`` (a float, applied to the
    attention weights in training) and ``out_proj`` (an ``nn.Linear(E, E)``), and implement
    ``_in_weights()``.
    """

    def _init_shape(self, embed_dim: int, num_heads: int, num_kv_heads: int, kv_name: str) -> None:
        """Checks and stores the head shape; ``kv_name`` is how the subclass's constructor names Hkv."""
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim: = {embed_dim} with num_heads = {num_heads}, expected both > 0 (torch: "
                             "embed_dim and num_heads must be greater than 0)")
        if embed_dim % num_heads:
            raise ValueError(f"num_heads: = {num_heads}, expected a divisor of embed_dim = {embed_dim} (embed_dim = "
                             f"{embed_dim} must be divisible by num_heads = {num_heads})")
        if num_kv_heads <= 0 or num_heads % num_kv_heads:
            raise ValueError(f"{kv_name}: = {num_kv_heads}, expected a divisor of num_heads = {num_heads} ({kv_name} = "
                             f"{num_kv_heads} must divide num_heads = {num_heads})")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.kv_dim = num_kv_heads * self.head_dim

    def _in_weights(self) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        """(W_q [E, E], W_k [Ekv, kdim], W_v [Ekv, vdim], b_q, b_k, b_v), as ``nn.Linear`` stores them."""
        raise NotImplementedError

    def _fused_qkv(self) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
        """([W_q; W_k; W_v], [b_q; b_k; b_v]) when the storage is one tensor (one GEMM for self-attention)."""
        return None

    # -- 1. projections -------------------------------------------------------------------------

    def project_q(self, x: Tensor) -> Tensor:
        """x [..., E] -> q [..., E] (before the head split)."""
        wq, _, _, bq, _, _ = self._in_weights()
        return F.linear(x, wq, bq)

    def project_k_v(self, key: Tensor, value: Tensor) -> Tuple[Tensor, Tensor]:
        """key [..., kdim], value [..., vdim] -> k, v [..., Ekv] (before the head split)."""
        _, wk, wv, _, bk, bv = self._in_weights()
        return F.linear(key, wk, bk), F.linear(value, wv, bv)

    def project_qkv(self, query: Tensor, key: Tensor, value: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """q, k, v before the head split; one GEMM when query, key and value are one tensor and the
        weights are stored fused."""
        fused = self._fused_qkv() if query is key and key is value else None
        if fused is not None:
            e, ekv = self.embed_dim, self.kv_dim
            return F.linear(query, *fused).split([e, ekv, ekv], dim=-1)
        return (self.project_q(query), *self.project_k_v(key, value))

    # -- 2. heads -------------------------------------------------------------------------------

    @staticmethod
    def split_heads(t: Tensor, heads: int) -> Tensor:
        """[B, L, heads·D] -> [B, heads, L, D], a strided view where t's rows allow it."""
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    # -- 3. + 4. attention and output projection ------------------------------------------------

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, bool_mask: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, need_weights: bool = False, average_attn_weights: bool = True,
               **params) -> Tuple[Tensor, Optional[Tensor]]:
        """q [B, Hq, L, D], k [B, Hkv, S, D], v [B, Hkv, S, D] (any strides) -> (out [B, L, E] after
        ``out_proj``, weights [B, L, S] averaged over heads or [B, Hq, L, S], post-dropout, or None).
        bool_mask (True = attend) and bias (added, differentiable) broadcast to [B, Hq, L, S];
        ``params`` are entries of attn's parameter table (causal, alignment, ...)."""
        dropout_p = self.dropout if self.training else 0.0
        out, _, probs = _attention(q, k, v, bool_mask=bool_mask, bias=bias, need_probs=bool(need_weights),
                                   dropout_p=float(dropout_p), **params)
        weights = None
        if need_weights:
            weights = probs.mean(dim=1) if average_attn_weights else probs
        return self.merge_heads(out), weights

    def merge_heads(self, out: Tensor) -> Tensor:
        """Attention output [B, Hq, L, D] (in q's dimension order [B, L, H, D]) -> out_proj of [B, L, E]."""
        b, _, l, _ = out.shape
        out = out.transpose(1, 2).reshape(b, l, self.embed_dim)  # a view when out is [B, L, H, D] in memory
        return F.linear(out, self.out_proj.weight, self.out_proj.bias)


def _attention(*args, **kwargs):
    """attn.torch's one entry point, bound at call time (attn.torch imports this module)."""
    from .torch import _attention as attention
    return attention(*args, **kwargs)

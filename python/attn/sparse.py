"""Strided sparse attention for torch (docs/sparse_attention.md), re-exported by ``attn.torch``.

``strided_attention(q, k, v, stride, window=0, causal=False, global_tokens=0)`` is exact softmax
attention in which query i sees key j iff (i − j) mod stride = 0 (Child et al. 2019, "Sparse
Transformers"), or |i − j| ≤ window, or j < global_tokens, or i < global_tokens (global tokens as in
Longformer / BigBird), and with ``causal`` only j ≤ i: one softmax over the union of those keys.
The cost grows as N·(window + global_tokens + N/stride), never N². Shapes ``[B, H, N, D]`` (GQA:
fewer k/v heads). It is a ``torch.library`` custom op with a registered autograd formula (the C++
backward), so ``torch.autograd`` and ``torch.compile`` see one op.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import _core

__all__ = ["strided_attention"]


def _lse_dtype(q: Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


@torch.library.custom_op("attn::strided_fwd", mutates_args=(), device_types="cpu")
def _strided_fwd(q: Tensor, k: Tensor, v: Tensor, stride: int, window: int, global_tokens: int, causal: bool,
                 alignment: Optional[str], scale: Optional[float],
                 k_lengths: Optional[List[int]]) -> Tuple[Tensor, Tensor]:
    out = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    lse = torch.empty(q.shape[:3], dtype=_lse_dtype(q), device=q.device)
    _core.strided_attention_forward(out, q, k, v, lse, stride=stride, window=window, global_tokens=global_tokens,
                                    causal=causal, alignment=alignment, scale=scale, k_lengths=k_lengths)
    return out, lse


@_strided_fwd.register_fake
def _(q, k, v, stride, window, global_tokens, causal, alignment, scale, k_lengths):
    out = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    return out, q.new_empty(q.shape[:3], dtype=_lse_dtype(q))


@torch.library.custom_op("attn::strided_bwd", mutates_args=(), device_types="cpu")
def _strided_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, stride: int, window: int,
                 global_tokens: int, causal: bool, alignment: Optional[str], scale: Optional[float],
                 k_lengths: Optional[List[int]]) -> Tuple[Tensor, Tensor, Tensor]:
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    _core.strided_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, stride=stride, window=window,
                                     global_tokens=global_tokens, causal=causal, alignment=alignment, scale=scale,
                                     k_lengths=k_lengths)
    return dq, dk, dv


@_strided_bwd.register_fake
def _(dout, q, k, v, out, lse, stride, window, global_tokens, causal, alignment, scale, k_lengths):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, stride, window, global_tokens, causal, alignment, scale, k_lengths = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.args = (stride, window, global_tokens, causal, alignment, scale, k_lengths)


def _backward(ctx, dout, dlse):
    # lse is returned for the backward; it is not differentiated through here.
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = _strided_bwd(dout.contiguous(), q, k, v, out, lse, *ctx.args)
    return dq, dk, dv, None, None, None, None, None, None, None


torch.library.register_autograd("attn::strided_fwd", _backward, setup_context=_setup_context)


def _int_arg(name: str, value, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{name}: = {value!r}, expected an int >= {lowest}")
    return value


def _key_lengths(key_padding_mask: Optional[Tensor], B: int, S: int) -> Optional[List[int]]:
    """[B, S] bool, True = padding (torch's convention), padding only at the end of each row -> the
    per-row key lengths the kernel takes; anything else is a ValueError saying why."""
    if key_padding_mask is None:
        return None
    m = key_padding_mask
    if m.dtype != torch.bool:
        raise ValueError(f"key_padding_mask: has dtype {m.dtype}, expected torch.bool (True = padding)")
    if tuple(m.shape) != (B, S):
        raise ValueError(f"key_padding_mask: has shape {list(m.shape)}, expected [B, S_kv] = {[B, S]}")
    lengths = (~m).sum(dim=1)
    right = torch.arange(S, device=m.device)[None, :] >= lengths[:, None]
    if not torch.equal(right, m):
        raise ValueError("key_padding_mask: pads keys before the end of a row, expected right padding only (True "
                         "from some position to the end): strided attention hides padded keys by per-row key "
                         "lengths; use MultiHeadAttention with a bool mask for other patterns")
    return [int(n) for n in lengths.tolist()]


def strided_attention(q: Tensor, k: Tensor, v: Tensor, stride: int, window: int = 0, causal: bool = False,
                      global_tokens: int = 0, *, alignment: Optional[str] = None, scale: Optional[float] = None,
                      key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """Strided sparse attention of q [B, Hq, L, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] -> [B, Hq, L, Dv].

    Query i (at position i, or i + S − L with ``alignment="bottom_right"``; required when L != S)
    sees key j iff (i − j) mod stride = 0, or |i − j| <= window, or j < global_tokens, or
    i < global_tokens; with ``causal`` only keys j <= i. One softmax over the union (each key once).
    ``key_padding_mask`` [B, S] bool (True = padding, as torch's), padding at the end of each row
    only, hides the padded keys (their rows of dk/dv are zero); a query that then sees no key gets
    zeros (docs/contract.md, fully masked rows).
    """
    _int_arg("stride", stride, 1)
    _int_arg("window", window, 0)
    _int_arg("global_tokens", global_tokens, 0)
    if alignment not in (None, "top_left", "bottom_right"):
        raise ValueError(f"alignment: = {alignment!r}, expected None, 'top_left' or 'bottom_right'")
    k_lengths = _key_lengths(key_padding_mask, k.shape[0], k.shape[2])
    out, _ = _strided_fwd(q, k, v, stride, window, global_tokens, bool(causal), alignment,
                          None if scale is None else float(scale), k_lengths)
    return out

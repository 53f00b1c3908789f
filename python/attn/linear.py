"""Linear ("fast") attention for torch (docs/linear_attention.md), re-exported by ``attn.torch``.

``linear_attention(q, k, v, feature_map="elu" | "favor", causal=False, ...)`` computes
``out_i = φ(q_i)ᵀS / (φ(q_i)ᵀz + eps)`` with ``S = Σ_j φ(k_j) v_jᵀ`` and ``z = Σ_j φ(k_j)`` over
the keys query i sees, in O(N) time and memory, on ``[B, H, N, D]`` tensors (GQA: fewer k/v heads).
It is a ``torch.library`` custom op with a registered autograd formula (the C++ backward), so
``torch.autograd`` and ``torch.compile`` see one op. ``linear_attention_step`` decodes causally
from a state ``(S, z)``.

Feature maps: ``"elu"`` is elu(x) + 1 (Katharopoulos et al. 2020); ``"favor"`` is FAVOR+
(Choromanski et al. 2021): ``num_features`` positive orthogonal random features approximating the
softmax kernel exp(qᵀk/√D). The projection is fixed (no gradient); ``seed`` draws it
deterministically, ``seed=None`` draws a new one from torch's generator on every call (so
``torch.manual_seed`` makes it reproducible), ``projection=`` passes one ([m, D]).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _core

__all__ = ["linear_attention", "linear_attention_step", "favor_projection", "default_num_features"]

# The core binding has no default alignment (docs/contract.md); this API is documented as
# bottom-right aligned (query i sees keys j <= i + S − L), so it states it on every call.
_ALIGNMENT = "bottom_right"


def default_num_features(head_dim: int) -> int:
    """FAVOR+'s default number of features, ⌈D ln D⌉ (the Performer default; 1 for D = 1)."""
    return max(1, int(math.ceil(head_dim * math.log(head_dim))))


def favor_projection(num_features: int, head_dim: int, seed: int) -> Tensor:
    """The FAVOR+ projection ω [num_features, head_dim] (float32) for `seed`: blocks of orthogonal
    Gaussian rows, the same on every platform."""
    if num_features < 1 or head_dim < 1:
        raise ValueError(f"num_features: = {num_features} with head_dim = {head_dim}, expected both >= 1")
    w = torch.empty(num_features, head_dim, dtype=torch.float32)
    _core.favor_projection(w, int(seed) & (2**64 - 1))
    return w


@torch.library.custom_op("attn::linear_fwd", mutates_args=(), device_types="cpu")
def _linear_fwd(q: Tensor, k: Tensor, v: Tensor, projection: Optional[Tensor], key_padding_mask: Optional[Tensor],
                feature_map: str, causal: bool, eps: float) -> Tuple[Tensor, Tensor]:
    out = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    den = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    _core.linear_attention_forward(out, q, k, v, den, feature_map=feature_map, projection=projection, causal=causal,
                                   alignment=_ALIGNMENT, key_padding_mask=key_padding_mask, eps=eps)
    return out, den


@_linear_fwd.register_fake
def _(q, k, v, projection, key_padding_mask, feature_map, causal, eps):
    out = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    return out, q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("attn::linear_bwd", mutates_args=(), device_types="cpu")
def _linear_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, den: Tensor, projection: Optional[Tensor],
                key_padding_mask: Optional[Tensor], feature_map: str, causal: bool,
                eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    _core.linear_attention_backward(dq, dk, dv, dout, q, k, v, out, den, feature_map=feature_map,
                                    projection=projection, causal=causal, alignment=_ALIGNMENT,
                                    key_padding_mask=key_padding_mask, eps=eps)
    return dq, dk, dv


@_linear_bwd.register_fake
def _(dout, q, k, v, out, den, projection, key_padding_mask, feature_map, causal, eps):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, projection, key_padding_mask, feature_map, causal, eps = inputs
    out, den = output
    ctx.save_for_backward(q, k, v, out, den, projection, key_padding_mask)
    ctx.feature_map, ctx.causal, ctx.eps = feature_map, causal, eps


def _backward(ctx, dout, dden):
    # den is an auxiliary output (the backward's input), not differentiated through.
    q, k, v, out, den, projection, key_padding_mask = ctx.saved_tensors
    dq, dk, dv = _linear_bwd(dout, q, k, v, out, den, projection, key_padding_mask, ctx.feature_map, ctx.causal, ctx.eps)
    return dq, dk, dv, None, None, None, None, None


torch.library.register_autograd("attn::linear_fwd", _backward, setup_context=_setup_context)


def _resolve_features(q: Tensor, feature_map: str, num_features: Optional[int], seed: Optional[int],
                      projection: Optional[Tensor], for_step: bool) -> Optional[Tensor]:
    if feature_map not in ("elu", "favor"):
        raise ValueError(f"feature_map: = {feature_map!r}, expected 'elu' or 'favor'")
    if feature_map == "elu":
        if num_features is not None or seed is not None or projection is not None:
            raise ValueError("num_features: (or seed, projection) is given with feature_map = 'elu', expected none "
                             "(they are FAVOR+ options; elu has D fixed features; use feature_map='favor')")
        return None
    if projection is not None:
        if num_features is not None and projection.shape[0] != num_features:
            raise ValueError(f"num_features: = {num_features}, expected {projection.shape[0]} = the rows of projection")
        return projection.detach()
    if seed is None:
        if for_step:
            raise ValueError("seed: is not given, expected seed= or projection= for linear_attention_step with "
                             "feature_map='favor' (every step must use the same random features)")
        seed = int(torch.randint(0, 2**62, ()).item())
    m = default_num_features(q.shape[-1]) if num_features is None else int(num_features)
    return favor_projection(m, q.shape[-1], seed)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: str = "elu", causal: bool = False,
                     num_features: Optional[int] = None, key_padding_mask: Optional[Tensor] = None,
                     eps: float = 1e-6, seed: Optional[int] = None, *,
                     projection: Optional[Tensor] = None) -> Tensor:
    """Linear attention of q [B, Hq, L, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] -> [B, Hq, L, Dv].

    causal: query i sees keys j <= i + S − L (bottom-right aligned, = j <= i when L = S).
    key_padding_mask: [B, S] bool, True = padding (as torch's MultiheadAttention); padded keys drop
    out of the sums. num_features / seed / projection: FAVOR+ only (see the module docstring).
    Masks linear attention cannot express (arbitrary [L, S] masks, windows) have no argument here:
    use ``attn.torch.scaled_dot_product_attention`` for those.
    """
    proj = _resolve_features(q, feature_map, num_features, seed, projection, for_step=False)
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask: has dtype {key_padding_mask.dtype}, expected torch.bool (True = padding)")
    out, _ = _linear_fwd(q, k, v, proj, key_padding_mask, feature_map, bool(causal), float(eps))
    return out


def linear_attention_step(q_t: Tensor, k_t: Tensor, v_t: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None,
                          feature_map: str = "elu", num_features: Optional[int] = None, eps: float = 1e-6,
                          seed: Optional[int] = None, *, projection: Optional[Tensor] = None,
                          key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """Causal decode of T new tokens (q_t [B, Hq, T, D], k_t [B, Hkv, T, D], v_t [B, Hkv, T, Dv])
    from ``state = (S [B, Hkv, F, Dv], z [B, Hkv, F])`` (float32; None = nothing seen yet). Returns
    ``(out [B, Hq, T, Dv], (S', z'))``; the given state is not modified. New token t sees the
    state's keys and new keys 0..t. No autograd (a decoding primitive). FAVOR+ needs ``seed`` or
    ``projection`` (the same for every step)."""
    proj = _resolve_features(q_t, feature_map, num_features, seed, projection, for_step=True)
    B, Hkv, Dv = k_t.shape[0], k_t.shape[1], v_t.shape[3]
    F = q_t.shape[3] if proj is None else proj.shape[0]
    S_new = torch.empty(B, Hkv, F, Dv, dtype=torch.float32)
    z_new = torch.empty(B, Hkv, F, dtype=torch.float32)
    S_in, z_in = (None, None) if state is None else state
    if (S_in is None) != (z_in is None):
        raise ValueError("state: has only one of (S, z), expected None or the pair (S, z)")
    out = q_t.new_empty((q_t.shape[0], q_t.shape[1], q_t.shape[2], Dv))
    _core.linear_attention_step(out, S_new, z_new, q_t, k_t, v_t, S_in, z_in, feature_map=feature_map,
                                projection=proj, key_padding_mask=key_padding_mask, eps=float(eps))
    return out, (S_new, z_new)

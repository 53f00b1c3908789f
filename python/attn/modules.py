"""The seeds' attention classes, re-exported by ``attn.torch`` (docs/modules.md).

``MultiHeadAttention``, ``MultiQueryAttention``, ``GroupQueryAttention``, ``LocalAttention``,
``LinearAttention`` and ``get_attention``, with
the seeds' constructors and ``forward(x, context=None, mask=None, need_weights=False,
average_attn_weights=True, kv=None)``. They are ``attn._mha_core.AttentionCore`` modules, the same
code as ``attn.torch.MultiheadAttention``: ``nn.Linear`` projections (torch's GEMM and autograd)
and attn's op for the attention. What is theirs:

- one layout, ``[B, S, E]``; self-attention on x, cross-attention on ``context`` ``[B, S_kv, E]``;
- one mask convention: bool (**True = attend**, as the seeds' ``masked_fill(M == 0, -inf)``) or
  float (added to the scores before the softmax; a learnable mask gets its gradient), broadcast to
  ``[B, H, S, S_kv]``; a rank-3 mask is per batch row ``[B, S, S_kv]`` (the seeds'
  ``M.unsqueeze(1)``; PyTorch's SDPA reads rank 3 as ``[H, S, S_kv]``); key padding is
  ``[B, 1, 1, S_kv]``. Integer masks are refused. ``apply_causal_mask=True`` adds causal
  self-attention (the seeds' ``triu(ones, 1).bool()`` means True = blocked: invert it, or use this);
- parameters ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (``nn.Linear``; k/v
  ``[num_groups·head_dim, E]``), Xavier-uniform weights and zero biases; ``load_state_dict``
  also takes ``W_Q, W_K, W_V, W_O`` (``[out, in]``) and biases ``b_Q...`` and returns the report of
  ``attn.state_dict.load_state_dict``;
- ``project_kv(context)`` -> ``ProjectedKV`` (encoder K/V once, differentiable) for
  ``module(x_t, kv=kv)`` at every decoder step; ``make_cache(capacity)`` -> ``KVCache`` for
  incremental self-attention decoding (inference only).
"""

from __future__ import annotations

import weakref
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from . import state_dict as _sd
from ._mha_core import AttentionCore, check_mask_dtype

__all__ = ["MultiHeadAttention", "MultiQueryAttention", "GroupQueryAttention", "LocalAttention", "LinearAttention",
           "get_attention", "ProjectedKV", "KVCache", "ATTENTION_TYPES"]

_MASK_RULE = ("bool (True = attend) or float (added before the softmax), broadcast to [B, H, S, S_kv]; a rank-3 "
              "mask is per batch row [B, S, S_kv]; key padding is [B, 1, 1, S_kv]")


class ProjectedKV:
    """Cross-attention keys and values projected once from a context (``module.project_kv``):
    ``k``, ``v`` ``[B, num_groups, S_kv, head_dim]`` (strided views of the projections), still in
    the autograd graph of the context and the module's k/v weights."""

    def __init__(self, k: Tensor, v: Tensor):
        self.k, self.v = k, v

    @property
    def batch_size(self) -> int:
        return self.k.shape[0]

    @property
    def length(self) -> int:
        return self.k.shape[2]


class KVCache:
    """Keys and values of the tokens a self-attention module has seen, for incremental decoding
    (``module.make_cache(capacity)``; one cache per module and sequence batch). Each call
    ``module(x_t, kv=cache)`` appends x_t's keys and values, then attends to everything cached.
    Inference only: the buffers keep no autograd graph. Storage ``[B, capacity, num_groups,
    head_dim]``, allocated at the first call with x_t's batch size, dtype and device."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity: = {capacity}, expected > 0 (the most tokens the cache holds)")
        self.capacity = int(capacity)
        self.length = 0
        self._k: Optional[Tensor] = None
        self._v: Optional[Tensor] = None
        self._owner = None

    def reset(self) -> None:
        """Forget every token (the storage is kept)."""
        self.length = 0

    def _append(self, module: "_SeedAttention", k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        """k, v [B, Hkv, t, D] of this step -> every cached k, v [B, Hkv, length, D] (views)."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not module:
            raise ValueError("kv: this KVCache holds another module's keys, expected this module's own cache (one "
                             "cache per attention module; make_cache() on each)")
        b, hkv, t, d = k.shape
        if self._k is None:
            self._k = k.new_empty((b, self.capacity, hkv, d))
            self._v = v.new_empty((b, self.capacity, hkv, d))
            self._owner = weakref.ref(module)
        if self._k.shape[0] != b:
            raise ValueError(f"x: has batch size {b}, but the KVCache holds {self._k.shape[0]} sequences (expected "
                             f"the batch size of the first call; reset() keeps it, a new make_cache() does not)")
        if self._k.dtype != k.dtype:
            raise TypeError(f"x: gives keys of dtype {k.dtype}, expected {self._k.dtype}, the dtype the KVCache stores")
        if self.length + t > self.capacity:
            raise ValueError(f"x: has {t} new tokens, but the KVCache holds {self.length} of capacity "
                             f"{self.capacity} (expected at most {self.capacity - self.length}; make a larger cache)")
        self._k[:, self.length:self.length + t] = k.transpose(1, 2)
        self._v[:, self.length:self.length + t] = v.transpose(1, 2)
        self.length += t
        return self._k[:, :self.length].transpose(1, 2), self._v[:, :self.length].transpose(1, 2)


def _broadcasts(shape, target) -> bool:
    if len(shape) > len(target):
        return False
    return all(m == t or m == 1 for m, t in zip(reversed(shape), reversed(target)))


def _rename_wqkvo(state_dict, prefix, *args):
    """Load pre-hook: W_Q/W_K/W_V/W_O (and b_Q..., W_Q.weight/.bias) under ``prefix`` as this
    module's own names, so the seeds' keys load also when the module is inside a model."""
    for foreign, own in _sd.WQKVO_RENAMES:
        key = prefix + foreign
        if key in state_dict and prefix + own not in state_dict:
            state_dict[prefix + own] = state_dict.pop(key)


class _SeedAttention(AttentionCore):
    """The seeds' attention classes: num_groups K/V heads (num_heads: MHA, 1: MQA)."""

    def __init__(self, embed_dim: int, num_heads: int, num_groups: int, dropout: float, bias: bool,
                 apply_causal_mask: bool, device, dtype, groups_name: str):
        super().__init__()
        self._init_shape(embed_dim, num_heads, num_groups, groups_name)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: = {dropout}, expected 0 <= dropout < 1 (the probability of dropping an "
                             "attention weight in training)")
        self.num_groups = self.num_kv_heads
        self.dropout = float(dropout)
        self.apply_causal_mask = bool(apply_causal_mask)
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, self.kv_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, self.kv_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        self._register_load_state_dict_pre_hook(_rename_wqkvo)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_groups={self.num_groups}, "
                f"dropout={self.dropout}, apply_causal_mask={self.apply_causal_mask}")

    def _in_weights(self):
        q, k, v = self.q_proj, self.k_proj, self.v_proj
        return q.weight, k.weight, v.weight, q.bias, k.bias, v.bias

    # -- weights ---------------------------------------------------------------------------------

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Loads ``W_Q, W_K, W_V, W_O`` (``[out, in]`` as ``nn.Linear`` stores them; W_K/W_V
        ``[num_groups·head_dim, E]``), biases ``b_Q, b_K, b_V, b_O`` (or ``W_Q.weight``/``W_Q.bias``)
        and/or this module's own names (``q_proj.weight`` ...). Returns an
        ``attn.state_dict.LoadReport`` (missing, unexpected, mismatched; also ``missing_keys`` and
        ``unexpected_keys`` as torch's result has). strict: any of them is one ValueError listing
        all, and nothing is loaded; non-strict: what fits is copied, the rest is in the report."""
        if assign:  # torch's own loader (the pre-hook renames the seeds' keys)
            return super().load_state_dict(state_dict, strict=strict, assign=True)
        return _sd.load_state_dict(self, state_dict, names="wqkvo", strict=strict)

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: Tensor, context: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                need_weights: bool = False, average_attn_weights: bool = True, kv=None):
        """x ``[B, S, E]`` -> ``[B, S, E]``, or ``(out, weights)`` when need_weights (weights
        ``[B, S, S_kv]`` averaged over heads, or ``[B, H, S, S_kv]``; post-dropout in training).

        context ``[B, S_kv, E]``: cross-attention on it. kv: a ``ProjectedKV`` (cross-attention on
        keys and values projected once by ``project_kv``) or a ``KVCache`` (incremental
        self-attention: x's keys and values are appended first; inference only). mask: see the
        module docstring (``attn.modules``)."""
        self._check_x(x)
        if kv is not None and context is not None:
            raise ValueError("context, kv: both given, expected one (kv holds a context projected by project_kv, "
                             "or a KVCache for self-attention)")
        if kv is not None and not isinstance(kv, (ProjectedKV, KVCache)):
            raise TypeError(f"kv: is a {type(kv).__name__}, expected a ProjectedKV (project_kv(context)) or a "
                            "KVCache (make_cache(capacity))")
        cross = context is not None or isinstance(kv, ProjectedKV)
        self._check_call(cross, isinstance(kv, KVCache))
        if cross and self.apply_causal_mask:
            raise ValueError("apply_causal_mask: is True for a cross-attention call (context or project_kv given), "
                             "expected False (causal masking is for self-attention: build the cross-attention module "
                             "with apply_causal_mask=False, or pass a mask)")
        b, l, _ = x.shape
        hkv = self.num_kv_heads
        q = self.split_heads(self.project_q(x), self.num_heads)
        params = {}
        if isinstance(kv, ProjectedKV):
            self._check_projected(kv, x)
            k, v = kv.k, kv.v
        elif isinstance(kv, KVCache):
            if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
                raise ValueError("kv: a KVCache is for inference and keeps no autograd graph, but a gradient is "
                                 "required here (x or a parameter requires grad), expected torch.no_grad() or "
                                 "torch.inference_mode() (or train on whole sequences with apply_causal_mask=True)")
            k_new, v_new = self.project_k_v(x, x)
            k, v = kv._append(self, self.split_heads(k_new, hkv), self.split_heads(v_new, hkv))
            if self.apply_causal_mask:  # query r of this step sees the keys up to its own position
                params = dict(causal=True, alignment="bottom_right")
        else:
            src = x if context is None else context
            if context is not None:
                self._check_context(context, x)
            k, v = (self.split_heads(t, hkv) for t in self.project_k_v(src, src))
            if self.apply_causal_mask:
                params = dict(causal=True)  # S = S_kv: top-left and bottom-right agree
        params.update(self._extra_params(isinstance(kv, KVCache)))
        bool_mask, bias = self._mask(mask, b, l, k.shape[2], x, context)
        out, weights = self.attend(q, k, v, bool_mask=bool_mask, bias=bias, need_weights=need_weights,
                                   average_attn_weights=average_attn_weights, **params)
        return (out, weights) if need_weights else out

    def project_kv(self, context: Tensor) -> ProjectedKV:
        """context ``[B, S_kv, E]`` -> its keys and values, projected once for reuse at every decoder
        step (``module(x_t, kv=kv)``); gradients flow back to context and the k/v weights."""
        self._check_x(context, "context", "S_kv")
        hkv = self.num_kv_heads
        k, v = self.project_k_v(context, context)
        return ProjectedKV(self.split_heads(k, hkv), self.split_heads(v, hkv))

    def make_cache(self, capacity: int) -> KVCache:
        """An empty KVCache for incremental self-attention decoding of up to ``capacity`` tokens."""
        return KVCache(capacity)

    # -- what a subclass adds ---------------------------------------------------------------------

    def _check_call(self, cross: bool, cached: bool) -> None:
        """Refuses the call kinds a subclass does not support (cross-attention, the KV cache)."""

    def _extra_params(self, cached: bool) -> dict:
        """Entries of attn's parameter table the subclass adds to every call (cached: a KVCache step)."""
        return {}

    # -- checks ----------------------------------------------------------------------------------

    def _check_x(self, x: Tensor, name: str = "x", length: str = "S") -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: is a {type(x).__name__}, expected a tensor [B, {length}, E]")
        if x.dim() != 3 or x.shape[2] != self.embed_dim:
            hint = f" (one sequence: {name}.unsqueeze(0))" if x.dim() == 2 and x.shape[-1] == self.embed_dim else ""
            raise ValueError(f"{name}: has shape {list(x.shape)}, expected [B, {length}, E] with E = embed_dim = "
                             f"{self.embed_dim}{hint}")

    def _check_context(self, context: Tensor, x: Tensor) -> None:
        self._check_x(context, "context", "S_kv")
        if context.shape[0] != x.shape[0]:
            hint = ""
            if context.shape[1] == x.shape[1]:
                hint = (" (both look like (S, B, E) tensors; these classes take batch-first [B, S, E]: "
                        "transpose(0, 1))")
            raise ValueError(f"context: has shape {list(context.shape)}, but x has shape {list(x.shape)}, expected "
                             f"x's batch size (dim 0: {context.shape[0]} != {x.shape[0]}){hint}")

    def _check_projected(self, kv: ProjectedKV, x: Tensor) -> None:
        b = x.shape[0]
        want = (b, self.num_kv_heads, kv.length, self.head_dim)
        if tuple(kv.k.shape) != want or tuple(kv.v.shape) != want:
            hint = ""
            if kv.batch_size == x.shape[1] != b:
                hint = (f"; x = {list(x.shape)} looks like (S, B, E), but these classes take batch-first [B, S, E]: "
                        "transpose(0, 1)")
            raise ValueError(f"kv: holds k of shape {list(kv.k.shape)} and v of shape {list(kv.v.shape)}, expected "
                             f"{list(want)} ([B, num_groups, S_kv, head_dim] of this module for x's batch size "
                             f"{b}){hint}")

    def _mask(self, mask: Optional[Tensor], b: int, l: int, s: int, x: Tensor,
              context: Optional[Tensor]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """The seeds' mask as attn's (bool_mask, bias), broadcastable to [B, H, S, S_kv]."""
        if mask is None:
            return None, None
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask: is a {type(mask).__name__}, expected a tensor: {_MASK_RULE}")
        check_mask_dtype("mask", mask, "True = attend")
        target = (b, self.num_heads, l, s)
        m = mask.unsqueeze(1) if mask.dim() == 3 else mask  # rank 3: per batch row [B, S, S_kv]
        if mask.dim() == 0 or not _broadcasts(tuple(m.shape), target):
            hint = ""
            # x given as (S, B, E): its batch and length axes are swapped (and so is a self-attention's S_kv).
            s_alt = x.shape[0] if context is None else (context.shape[0] if context.dim() == 3 else s)
            if mask.dim() > 0 and _broadcasts(tuple(m.shape), (x.shape[1], self.num_heads, x.shape[0], s_alt)):
                hint = (f"; it would fit x as (S, B, E) = {list(x.shape)}, but these classes take batch-first "
                        "[B, S, E]: transpose(0, 1)")
            raise ValueError(f"mask: has shape {list(mask.shape)}, which does not broadcast to [B, H, S, S_kv] = "
                             f"{list(target)} (expected {_MASK_RULE}){hint}")
        return (m, None) if m.dtype == torch.bool else (None, m)


class MultiHeadAttention(_SeedAttention):
    """Multi-head attention: num_heads query heads, each with its own K/V head.

    ``mha = MultiHeadAttention(512, 8); y = mha(x)`` with x ``[B, S, 512]``. Parameters:
    4·E² weights + 4·E biases. See ``attn.modules`` for masks, cross-attention and caches."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 apply_causal_mask: bool = False, *, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, num_heads, dropout, bias, apply_causal_mask, device, dtype,
                         "num_heads")


class MultiQueryAttention(_SeedAttention):
    """Multi-query attention: num_heads query heads sharing one K/V head (head_dim = E / num_heads).

    Parameters: E²·(2 + 2/num_heads) weights + 2·E + 2·head_dim biases."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 apply_causal_mask: bool = False, *, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, 1, dropout, bias, apply_causal_mask, device, dtype, "num_groups")


class GroupQueryAttention(_SeedAttention):
    """Grouped-query attention: num_groups K/V heads (dividing num_heads), each shared by
    num_heads / num_groups query heads (query head h uses group h // (num_heads / num_groups)).

    Parameters: E²·(2 + 2·num_groups/num_heads) weights + 2·E + 2·num_groups·head_dim biases."""

    def __init__(self, embed_dim: int, num_heads: int, num_groups: int, dropout: float = 0.0, bias: bool = True,
                 apply_causal_mask: bool = False, *, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, num_groups, dropout, bias, apply_causal_mask, device, dtype,
                         "num_groups")


class LocalAttention(_SeedAttention):
    """Sliding-window (local) self-attention: query i sees keys j with |i − j| ≤ window_size
    (i − window_size ≤ j ≤ i with apply_causal_mask), on top of any mask; num_groups K/V heads
    (None: one per query head). attn's kernels skip the tiles outside the window, so the cost grows
    as N·window_size, not N². Self-attention only (a window over the positions of two different
    sequences is not defined here); the KV cache works (bottom-right aligned, the window counts
    back from each new token)."""

    def __init__(self, embed_dim: int, num_heads: int, window_size: int, num_groups: Optional[int] = None,
                 dropout: float = 0.0, bias: bool = True, apply_causal_mask: bool = False, *, device=None,
                 dtype=None):
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 0:
            raise ValueError(f"window_size: = {window_size!r}, expected an int >= 0 (keys within that distance "
                             "of the query are visible)")
        super().__init__(embed_dim, num_heads, num_heads if num_groups is None else num_groups, dropout, bias,
                         apply_causal_mask, device, dtype, "num_groups")
        self.window_size = window_size

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window_size={self.window_size}"

    def _check_call(self, cross, cached):
        if cross:
            raise ValueError("context/kv: LocalAttention is self-attention only (its window is over the positions of "
                             "x), expected no context and no ProjectedKV; use MultiHeadAttention for cross-attention")

    def _extra_params(self, cached):
        w = self.window_size
        return dict(window_left=w, window_right=w, **({"alignment": "bottom_right"} if cached else {}))


class LinearAttention(_SeedAttention):
    """Linear ("fast") attention in the seeds' module form: the same projections, then
    ``attn.torch.linear_attention`` (docs/linear_attention.md: out_i = φ(q_i)ᵀS / (φ(q_i)ᵀz + eps),
    O(N)) instead of softmax attention. feature_map ``"elu"`` (elu + 1) or ``"favor"`` (FAVOR+
    with ``num_features`` random features; the projection is drawn once, from ``seed`` or torch's
    generator, and kept as the buffer ``projection``). Masks: only key padding ``[B, 1, 1, S_kv]``
    bool (True = attend) and ``apply_causal_mask``; no weights, no dropout, no KV cache (decode with
    ``attn.torch.linear_attention_step``). Cross-attention and project_kv work."""

    def __init__(self, embed_dim: int, num_heads: int, num_groups: Optional[int] = None, bias: bool = True,
                 apply_causal_mask: bool = False, feature_map: str = "elu", num_features: Optional[int] = None,
                 seed: Optional[int] = None, eps: float = 1e-6, *, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, num_heads if num_groups is None else num_groups, 0.0, bias,
                         apply_causal_mask, device, dtype, "num_groups")
        if feature_map not in ("elu", "favor"):
            raise ValueError(f"feature_map: is {feature_map!r}, expected 'elu' or 'favor'")
        self.feature_map, self.eps = feature_map, float(eps)
        if feature_map == "favor":
            from .linear import default_num_features, favor_projection
            m = default_num_features(self.head_dim) if num_features is None else num_features
            if seed is None:
                seed = int(torch.randint(0, 2**62, ()).item())
            self.register_buffer("projection", favor_projection(m, self.head_dim, seed).to(device))
        elif num_features is not None or seed is not None:
            raise ValueError("num_features/seed: are FAVOR+ settings, expected None with feature_map='elu'")
        else:
            self.projection = None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", feature_map={self.feature_map!r}"

    def _check_call(self, cross, cached):
        if cached:
            raise ValueError("kv: LinearAttention has no KVCache (its decoding state is (S, z), see "
                             "attn.torch.linear_attention_step), expected a ProjectedKV or None")

    def attend(self, q, k, v, *, bool_mask=None, bias=None, need_weights=False, average_attn_weights=True, **params):
        from .linear import linear_attention
        if need_weights:
            raise ValueError("need_weights: is True, but linear attention never forms the attention weights "
                             "(expected False; use MultiHeadAttention for weights)")
        padding = None
        b, s = k.shape[0], k.shape[2]
        if bias is not None or (bool_mask is not None and (bool_mask.dim() != 4 or bool_mask.shape[1:3] != (1, 1))):
            m = bias if bias is not None else bool_mask
            raise ValueError(f"mask: has shape {list(m.shape)} and dtype {m.dtype}, expected key padding only: a bool "
                             f"[B, 1, 1, S_kv] mask (True = attend; other masks have no linear form, use "
                             "MultiHeadAttention)")
        if bool_mask is not None:
            padding = ~bool_mask.reshape(bool_mask.shape[0], s).expand(b, s)
        out = linear_attention(q, k, v, self.feature_map, bool(params.get("causal", False)), key_padding_mask=padding,
                               eps=self.eps, projection=self.projection)
        return self.merge_heads(out), None


class StridedAttention(_SeedAttention):
    """Strided sparse self-attention (Child et al. 2019), optionally with a local window and global
    tokens (Longformer / BigBird): query i sees key j iff (i − j) mod stride = 0, or |i − j| ≤
    window, or j < global_tokens, or i < global_tokens (with apply_causal_mask only j ≤ i), in one
    softmax over the union (``attn.torch.strided_attention``, docs/sparse_attention.md). Cost
    N·(window + global_tokens + N/stride), never N². num_groups K/V heads (None: one per query
    head). Key padding as the other classes take it (a bool [B, 1, 1, S] mask, True = attend),
    padding at the end of each row only; no other masks, weights, dropout, cross-attention or KV
    cache (a clear error says so)."""

    def __init__(self, embed_dim: int, num_heads: int, stride: int, window: int = 0, num_groups: Optional[int] = None,
                 bias: bool = True, apply_causal_mask: bool = False, global_tokens: int = 0, dropout: float = 0.0, *,
                 device=None, dtype=None):
        if dropout != 0.0:
            raise ValueError(f"dropout: = {dropout!r}, expected 0.0 (strided attention never forms the attention "
                             "weights, so there is nothing to drop)")
        for name, value, lowest in (("stride", stride, 1), ("window", window, 0), ("global_tokens", global_tokens, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{name}: = {value!r}, expected an int >= {lowest}")
        super().__init__(embed_dim, num_heads, num_heads if num_groups is None else num_groups, 0.0, bias,
                         apply_causal_mask, device, dtype, "num_groups")
        self.stride, self.window, self.global_tokens = stride, window, global_tokens

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}, window={self.window}, global_tokens={self.global_tokens}"

    def _check_call(self, cross, cached):
        if cross or cached:
            raise ValueError("context/kv: StridedAttention is self-attention over whole sequences (its pattern is over "
                             "the positions of x), expected no context and no kv; use MultiHeadAttention for "
                             "cross-attention or cached decoding")

    def attend(self, q, k, v, *, bool_mask=None, bias=None, need_weights=False, average_attn_weights=True, **params):
        from .sparse import strided_attention
        if need_weights:
            raise ValueError("need_weights: is True, but strided attention never forms the [S, S] weights "
                             "(expected False; use MultiHeadAttention with the equivalent mask for weights)")
        b, s = k.shape[0], k.shape[2]
        if bias is not None or (bool_mask is not None and (bool_mask.dim() != 4 or bool_mask.shape[1:3] != (1, 1))):
            m = bias if bias is not None else bool_mask
            raise ValueError(f"mask: has shape {list(m.shape)} and dtype {m.dtype}, expected None or key padding: "
                             "a bool [B, 1, 1, S_kv] mask (True = attend, the padding at the end of each row); "
                             "StridedAttention's pattern is its mask, use MultiHeadAttention with a dense mask to "
                             "combine it with others")
        padding = None if bool_mask is None else ~bool_mask.reshape(bool_mask.shape[0], s).expand(b, s)
        out = strided_attention(q, k, v, self.stride, self.window, bool(params.get("causal", False)),
                                self.global_tokens, key_padding_mask=padding)
        return self.merge_heads(out), None


ATTENTION_TYPES = {"mha": MultiHeadAttention, "mqa": MultiQueryAttention, "gqa": GroupQueryAttention,
                   "local": LocalAttention, "linear": LinearAttention, "strided": StridedAttention}


def get_attention(attention_type: str, embed_dim: int, num_heads: int, num_groups: Optional[int] = None,
                  apply_causal_mask: bool = False, **kw) -> _SeedAttention:
    """The seeds' factory: ``"mha"`` (num_groups None or num_heads), ``"mqa"`` (None or 1),
    ``"gqa"`` (num_groups required), ``"local"`` (``window_size=`` required; num_groups optional),
    ``"linear"`` (num_groups optional; ``feature_map=``, ``num_features=``, ``seed=``, ``eps=``),
    ``"strided"`` (``stride=`` required; ``window=``, ``global_tokens=``, num_groups optional).
    Other ``kw``: dropout (not linear, strided), bias, device, dtype."""
    known = ", ".join(repr(t) for t in ATTENTION_TYPES)
    if attention_type not in ATTENTION_TYPES:
        raise ValueError(f"attention_type: is {attention_type!r}, expected one of {known}")
    cls = ATTENTION_TYPES[attention_type]
    if attention_type == "gqa":
        if num_groups is None:
            raise ValueError(f"num_groups: is None, expected the number of K/V heads (dividing num_heads = "
                             f"{num_heads}) for attention_type='gqa'")
        return cls(embed_dim, num_heads, num_groups, apply_causal_mask=apply_causal_mask, **kw)
    if attention_type in ("local", "linear", "strided"):
        if attention_type == "local" and "window_size" not in kw:
            raise ValueError("window_size: is missing, expected window_size=<int> for attention_type='local'")
        if attention_type == "strided" and "stride" not in kw:
            raise ValueError("stride: is missing, expected stride=<int> for attention_type='strided'")
        return cls(embed_dim, num_heads, num_groups=num_groups, apply_causal_mask=apply_causal_mask, **kw)
    implied = num_heads if attention_type == "mha" else 1
    if num_groups is not None and num_groups != implied:
        raise ValueError(f"num_groups: = {num_groups}, but attention_type={attention_type!r} has {implied} K/V "
                         f"head{'s' if implied != 1 else ''} (expected None or {implied}; use 'gqa' for other counts)")
    return cls(embed_dim, num_heads, apply_causal_mask=apply_causal_mask, **kw)

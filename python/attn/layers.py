"""Transformer layers on attn's attention modules, re-exported by ``attn.torch`` (docs/layers.md).

``TransformerEncoderLayer`` and ``TransformerDecoderLayer``: plain ``nn.Module`` blocks (torch's
``nn.Linear``/``nn.LayerNorm``/dropout and autograd) around the seeds' attention classes of
``attn.modules``, chosen by ``attention_type`` through ``get_attention`` (``"mha" | "gqa" | "mqa" |
"linear" | "local" | "strided"``).
The blocks are those of torch's layers and attn's C++ ones (docs/nn.md):

- pre-norm: ``h = x + drop(attn(norm1(x)))``, ``y = h + drop(ffn(norm2(h)))``;
- post-norm: ``h = norm1(x + drop(attn(x)))``, ``y = norm2(h + drop(ffn(h)))``;
- ``ffn(x) = linear2(drop(act(linear1(x))))`` (torch's layer: dropout after the activation too);
- decoder: causal self-attention, cross-attention over the encoder's states (``memory``, or its
  K/V projected once by ``project_memory`` and reused at every step), FFN; norm1..norm3.

Masks follow the seeds' classes: bool **True = attend** or float added before the softmax,
broadcast to ``[B, H, S, S_kv]``, key padding ``[B, 1, 1, S_kv]``. ``checkpoint=True`` recomputes
the layer's forward in backward (``torch.utils.checkpoint``, non-reentrant, RNG state preserved, so
dropout draws the same bits). Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the
projections run in bf16 and attn's kernels take the bf16 q, k, v.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as _ckpt
from torch import Tensor, nn

from .modules import KVCache, LinearAttention, ProjectedKV, get_attention

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "LinearState", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
}


def check_probability(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: = {p!r}, expected a probability 0 <= p < 1")
    return float(p)


def check_positive(name: str, n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{name}: = {n!r}, expected an int > 0 ({what})")
    return n


def make_attention(attention_type: str, embed_dim: int, num_heads: int, num_groups: Optional[int], causal: bool,
                   attn_dropout: float, bias: bool, factory: dict, attention_kw: dict, name: str = "attention_type"):
    """``get_attention`` with the layer's options; linear attention has no weights to drop."""
    kw = dict(attention_kw)
    if attention_type in ("linear", "strided"):
        if attn_dropout:
            raise ValueError(f"attn_dropout: = {attn_dropout}, expected 0 with {name}={attention_type!r} ({attention_type} "
                             "attention never forms the attention weights, so there is nothing to drop)")
    else:
        kw["dropout"] = attn_dropout
    try:
        return get_attention(attention_type, embed_dim, num_heads, num_groups=num_groups, apply_causal_mask=causal,
                             bias=bias, **factory, **kw)
    except TypeError as e:  # an option the chosen attention class does not take
        raise TypeError(f"{name}: {attention_type!r} does not take these options: {e}") from None


def check_input(x: Tensor, embed_dim: int, name: str = "x", length: str = "S") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: is a {type(x).__name__}, expected a tensor [B, {length}, E]")
    if x.dim() != 3 or x.shape[2] != embed_dim:
        raise ValueError(f"{name}: has shape {list(x.shape)}, expected [B, {length}, E] with E = embed_dim = "
                         f"{embed_dim} (batch first)")


def _needs_grad(module: nn.Module, *tensors: Optional[Tensor]) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors) or any(p.requires_grad for p in module.parameters())


class _Block(nn.Module):
    """What both layers share: the FFN, the residual dropout, the norms and checkpointing."""

    def _init_common(self, embed_dim: int, num_heads: int, ffn_dim: Optional[int], dropout: float, activation: str,
                     norm_first: bool, norm_eps: float, bias: bool, checkpoint: bool, n_norms: int, factory: dict):
        check_positive("embed_dim", embed_dim, "the model width E")
        check_positive("num_heads", num_heads, "query heads")
        ffn_dim = 4 * embed_dim if ffn_dim is None else check_positive("ffn_dim", ffn_dim, "the FFN's hidden width")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: is {activation!r}, expected one of {', '.join(map(repr, ACTIVATIONS))}")
        if not norm_eps > 0:
            raise ValueError(f"norm_eps: = {norm_eps}, expected > 0 (added to the LayerNorm variance)")
        self.embed_dim, self.ffn_dim, self.activation = embed_dim, ffn_dim, activation
        self.dropout = check_probability("dropout", dropout)
        self.norm_first, self.checkpoint = bool(norm_first), bool(checkpoint)
        self.linear1 = nn.Linear(embed_dim, ffn_dim, bias=bias, **factory)
        self.linear2 = nn.Linear(ffn_dim, embed_dim, bias=bias, **factory)
        for i in range(1, n_norms + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(embed_dim, eps=norm_eps, **factory))

    def _drop(self, t: Tensor) -> Tensor:
        return F.dropout(t, self.dropout, self.training) if self.dropout else t

    def _ff(self, t: Tensor) -> Tensor:
        return self._drop(self.linear2(self._drop(ACTIVATIONS[self.activation](self.linear1(t)))))

    def _maybe_checkpoint(self, fn, *args):
        if self.checkpoint and _needs_grad(self, *(a for a in args if isinstance(a, Tensor))):
            return _ckpt.checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=True)
        return fn(*args)

    def extra_repr(self) -> str:
        return (f"ffn_dim={self.ffn_dim}, activation={self.activation!r}, dropout={self.dropout}, "
                f"norm_first={self.norm_first}, checkpoint={self.checkpoint}")


class TransformerEncoderLayer(_Block):
    """Self-attention + FFN, pre- or post-norm (see the module docstring).

    ``TransformerEncoderLayer(embed_dim, num_heads, ffn_dim=4E, attention_type="mha",
    num_groups=None, dropout=0.0, attn_dropout=0.0, activation="gelu", norm_first=True,
    norm_eps=1e-5, bias=True, apply_causal_mask=False, checkpoint=False, **attention_kw)``;
    ``attention_kw`` go to the attention class (``window_size=`` for local, ``feature_map=``,
    ``num_features=``, ``seed=``, ``eps=`` for linear). ``dropout`` acts on the two residual
    branches and inside the FFN, ``attn_dropout`` on the attention weights. Parameters
    ``self_attn.{q,k,v,out}_proj.*``, ``linear1.*``, ``linear2.*``, ``norm1.*``, ``norm2.*``.
    ``forward(x [B, S, E], mask=None) -> [B, S, E]``."""

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: Optional[int] = None, attention_type: str = "mha",
                 num_groups: Optional[int] = None, dropout: float = 0.0, attn_dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = True, norm_eps: float = 1e-5, bias: bool = True,
                 apply_causal_mask: bool = False, checkpoint: bool = False, *, device=None, dtype=None,
                 **attention_kw):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self._init_common(embed_dim, num_heads, ffn_dim, dropout, activation, norm_first, norm_eps, bias, checkpoint,
                          2, factory)
        self.attention_type = attention_type
        self.self_attn = make_attention(attention_type, embed_dim, num_heads, num_groups, apply_causal_mask,
                                        check_probability("attn_dropout", attn_dropout), bias, factory, attention_kw)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        check_input(x, self.embed_dim)
        return self._maybe_checkpoint(self._forward, x, mask)

    def _forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        if self.norm_first:
            x = x + self._drop(self.self_attn(self.norm1(x), mask=mask))
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._drop(self.self_attn(x, mask=mask)))
        return self.norm2(x + self._ff(x))


class LinearState:
    """A linear-attention decoder layer's self-attention state (S, z) for incremental decoding
    (``attn.torch.linear_attention_step``); the counterpart of a ``KVCache``, of constant size."""

    def __init__(self):
        self.state = None
        self.length = 0

    def reset(self) -> None:
        self.state, self.length = None, 0


class TransformerDecoderLayer(_Block):
    """Causal self-attention, cross-attention over the encoder states, FFN; pre- or post-norm:
    pre ``h1 = x + drop(self(norm1(x)))``, ``h2 = h1 + drop(cross(norm2(h1), memory))``,
    ``y = h2 + drop(ffn(norm3(h2)))``; post ``h1 = norm1(x + ...)`` and so on.

    The constructor takes the encoder layer's arguments (``apply_causal_mask`` defaults to True
    here) plus ``cross_attention_type`` (None: the same as ``attention_type``; ``"local"`` has no
    cross-attention form, so it must then be given) and ``cross_attention_kw`` (options of the
    cross-attention class). Parameters ``self_attn.*``, ``multihead_attn.*`` (the cross-attention,
    torch's name), ``linear1/2.*``, ``norm1..3.*``.

    ``forward(x [B, T, E], memory=None, mask=None, memory_mask=None, memory_kv=None)``: memory
    ``[B, S, E]`` or ``memory_kv = project_memory(memory)`` (the encoder K/V projected once, in the
    autograd graph); ``mask`` is added to the self-attention, ``memory_mask`` (e.g. key padding
    ``[B, 1, 1, S]``) to the cross-attention. ``step(x_t, memory_kv, cache)`` decodes x_t's new
    tokens incrementally (inference only; ``make_cache(capacity)`` gives the cache)."""

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: Optional[int] = None, attention_type: str = "mha",
                 num_groups: Optional[int] = None, dropout: float = 0.0, attn_dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = True, norm_eps: float = 1e-5, bias: bool = True,
                 apply_causal_mask: bool = True, checkpoint: bool = False, cross_attention_type: Optional[str] = None,
                 cross_attention_kw: Optional[dict] = None, *, device=None, dtype=None, **attention_kw):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self._init_common(embed_dim, num_heads, ffn_dim, dropout, activation, norm_first, norm_eps, bias, checkpoint,
                          3, factory)
        attn_dropout = check_probability("attn_dropout", attn_dropout)
        cross_type = attention_type if cross_attention_type is None else cross_attention_type
        if cross_type in ("local", "strided"):
            which = "cross_attention_type" if cross_attention_type is not None else "attention_type"
            raise ValueError(f"{which}: is {cross_type!r} for the cross-attention, expected 'mha', 'gqa', 'mqa' or "
                             "'linear' (a pattern over the positions of two different sequences is not defined; pass "
                             f"cross_attention_type='mha' to keep {cross_type} self-attention)")
        if cross_attention_kw is None:
            cross_attention_kw = {} if cross_attention_type is not None else {
                k: v for k, v in attention_kw.items() if k not in ("window_size", "stride", "window", "global_tokens")}
        self.attention_type, self.cross_attention_type = attention_type, cross_type
        self.self_attn = make_attention(attention_type, embed_dim, num_heads, num_groups, apply_causal_mask,
                                        attn_dropout, bias, factory, attention_kw)
        self.multihead_attn = make_attention(cross_type, embed_dim, num_heads, num_groups, False, attn_dropout, bias,
                                             factory, cross_attention_kw, "cross_attention_type")

    def project_memory(self, memory: Tensor) -> ProjectedKV:
        """The cross-attention's K/V of memory ``[B, S, E]``, projected once (differentiable)."""
        check_input(memory, self.embed_dim, "memory")
        return self.multihead_attn.project_kv(memory)

    def forward(self, x: Tensor, memory: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None, memory_kv: Optional[ProjectedKV] = None) -> Tensor:
        check_input(x, self.embed_dim, length="T")
        if (memory is None) == (memory_kv is None):
            raise ValueError("memory, memory_kv: " + ("both given" if memory is not None else "neither given") +
                             ", expected exactly one (the encoder states [B, S, E], or project_memory(memory))")
        if memory is not None:
            check_input(memory, self.embed_dim, "memory")
        elif not isinstance(memory_kv, ProjectedKV):
            raise TypeError(f"memory_kv: is a {type(memory_kv).__name__}, expected a ProjectedKV "
                            "(layer.project_memory(memory))")
        if memory_kv is not None:  # a ProjectedKV holds no tensor argument the checkpoint could see: unpack it
            return self._maybe_checkpoint(self._forward_kv, x, memory_kv.k, memory_kv.v, mask, memory_mask)
        return self._maybe_checkpoint(self._forward, x, memory, mask, memory_mask)

    def _forward(self, x, memory, mask, memory_mask):
        return self._blocks(x, lambda t: self.self_attn(t, mask=mask),
                            lambda t: self.multihead_attn(t, context=memory, mask=memory_mask))

    def _forward_kv(self, x, k, v, mask, memory_mask):
        kv = ProjectedKV(k, v)
        return self._blocks(x, lambda t: self.self_attn(t, mask=mask),
                            lambda t: self.multihead_attn(t, kv=kv, mask=memory_mask))

    def _blocks(self, x, self_attend, cross_attend):
        if self.norm_first:
            x = x + self._drop(self_attend(self.norm1(x)))
            x = x + self._drop(cross_attend(self.norm2(x)))
            return x + self._ff(self.norm3(x))
        x = self.norm1(x + self._drop(self_attend(x)))
        x = self.norm2(x + self._drop(cross_attend(x)))
        return self.norm3(x + self._ff(x))

    # -- incremental decoding -------------------------------------------------------------------

    def make_cache(self, capacity: int):
        """The self-attention's decoding state: a ``KVCache`` of ``capacity`` tokens, or for linear
        attention a ``LinearState`` (S, z) whose size does not grow with the tokens."""
        if isinstance(self.self_attn, LinearAttention):
            check_positive("capacity", capacity, "the most tokens decoded")
            return LinearState()
        return self.self_attn.make_cache(capacity)

    @torch.no_grad()
    def step(self, x_t: Tensor, memory_kv: ProjectedKV, cache, memory_mask: Optional[Tensor] = None) -> Tensor:
        """x_t ``[B, t, E]``, the next t tokens' inputs -> their outputs, attending to every token
        decoded so far through ``cache`` (updated) and to the memory through ``memory_kv``.
        Step by step it equals ``forward`` on the whole sequence (tested). Inference only."""
        check_input(x_t, self.embed_dim, "x_t", "t")
        if not isinstance(memory_kv, ProjectedKV):
            raise TypeError(f"memory_kv: is a {type(memory_kv).__name__}, expected a ProjectedKV "
                            "(layer.project_memory(memory))")
        if isinstance(cache, LinearState):
            self_attend = lambda t: self._linear_step(t, cache)  # noqa: E731
        elif isinstance(cache, KVCache):
            self_attend = lambda t: self.self_attn(t, kv=cache)  # noqa: E731
        else:
            raise TypeError(f"cache: is a {type(cache).__name__}, expected the layer's make_cache(capacity)")
        return self._blocks(x_t, self_attend, lambda t: self.multihead_attn(t, kv=memory_kv, mask=memory_mask))

    def _linear_step(self, t: Tensor, cache: LinearState) -> Tensor:
        from .linear import linear_attention_step
        m = self.self_attn
        if not m.apply_causal_mask:
            raise ValueError("cache: incremental decoding of linear attention is causal, expected the layer built "
                             "with apply_causal_mask=True")
        q = m.split_heads(m.project_q(t), m.num_heads)
        k, v = (m.split_heads(u, m.num_kv_heads) for u in m.project_k_v(t, t))
        out, cache.state = linear_attention_step(q, k, v, cache.state, m.feature_map, eps=m.eps,
                                                 projection=m.projection)
        cache.length += t.shape[1]
        return m.merge_heads(out)

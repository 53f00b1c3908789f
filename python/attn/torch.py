"""PyTorch drop-ins backed by attn (CPU tensors; pure Python use of torch, no libtorch linking).

* ``scaled_dot_product_attention``: the signature, defaults and results of
  ``torch.nn.functional.scaled_dot_product_attention`` (bool mask True = attend, float mask added,
  ``is_causal`` = top-left causal, ``enable_gqa``), plus attn's extras as keyword-only arguments.
* ``MultiheadAttention``: ``torch.nn.MultiheadAttention``'s constructor, forward, returned weights
  and state-dict names, plus ``num_kv_heads`` (GQA/MQA).
* The seeds' classes ``MultiHeadAttention``, ``MultiQueryAttention``, ``GroupQueryAttention`` and
  ``get_attention`` (``attn/modules.py``, docs/modules.md): ``[B, S, E]``, masks True = attend.
  They and ``MultiheadAttention`` are one module code, ``attn._mha_core.AttentionCore``.

The attention core is a pair of ``torch.library`` custom ops, ``attn::sdpa_fwd`` and
``attn::sdpa_bwd``, with fake kernels (same shapes and strides as the real ones) and
``register_autograd``, so autograd, ``torch.compile(fullgraph=True)`` and ``torch.export`` work.
Their schemas, and every packing of their arguments, come by name from attn's one parameter
table (``attn._params``); ``_attention`` is the entry point that functions and modules call.
Dropout draws (seed, offset) from torch's default generator (``torch.manual_seed`` reproduces a
run) and passes them to the ops as a tensor that backward reuses; the keep decision is attn's
Philox stream (docs/contract.md §7), so the dropped positions differ from PyTorch's own.

Differences from PyTorch, on purpose: a fully masked row gives 0 (PyTorch gives NaN); an
``attn_mask`` together with ``is_causal=True`` applies both (PyTorch refuses); the float mask may
have any float dtype (an integer mask is a TypeError, as in PyTorch); the returned lse is differentiable, and so are MultiheadAttention's weights
when dropout is off (their gradient is then computed with torch ops on the [B, H, L, S] weights).
"""

from __future__ import annotations

import inspect
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _core, _params
from ._mha_core import AttentionCore
from ._mha_core import check_mask_dtype as _check_mask_dtype

__all__ = ["scaled_dot_product_attention", "MultiheadAttention", "set_num_threads"]

_num_threads = 0


def set_num_threads(n: int) -> None:
    """Threads attn's kernels use from attn.torch (0 = all cores; results do not depend on it)."""
    global _num_threads
    if n < 0:
        raise ValueError(f"num_threads: = {n}, expected >= 0 (0 = all cores)")
    _num_threads = int(n)


# --------------------------------------------------------------------------------------------
# Custom ops: schemas generated from the parameter table (attn/_params.py), arguments by name.


def _out_like(q: Tensor, last: int, dtype: torch.dtype) -> Tensor:
    """An empty [B, H, N, last] tensor laid out in q's dimension order (also for fake tensors)."""
    order = sorted(range(4), key=lambda d: (-q.stride(d), d))
    shape = (*q.shape[:3], last)
    return torch.empty_permuted(shape, order, dtype=dtype, device=q.device)


_FWD = _params.OpArgs(head=[("Tensor", "q"), ("Tensor", "k"), ("Tensor", "v")],
                      extra=[("bool", "need_probs", False)], returns="(Tensor, Tensor, Tensor)")
_BWD = _params.OpArgs(head=[("Tensor", n) for n in ("dout", "q", "k", "v", "out", "lse")] + [("Tensor?", "dlse")],
                      extra=[("bool", "need_dbias", False)], returns="(Tensor, Tensor, Tensor, Tensor)")


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """lse's dtype for inputs of `dtype`: float64 for float64 (fp64 gradients stay exact), else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fwd_outputs(a: dict) -> Tuple[Tensor, Tensor, Tensor]:
    q, k, v = a["q"], a["k"], a["v"]
    out = _out_like(q, v.shape[3], q.dtype)
    lse = q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    probs = q.new_empty((q.shape[0], q.shape[1], q.shape[2], k.shape[2]) if a["need_probs"] else (0,))
    return out, lse, probs


def _sdpa_fwd_cpu(*args, **kwargs):
    a = _FWD.bind(args, kwargs)
    out, lse, probs = _fwd_outputs(a)
    _core.sdpa_forward(out, a["q"], a["k"], a["v"], lse=lse, probs=probs if a["need_probs"] else None,
                       **_params.to_core(a))
    return out, lse, probs


def _bwd_outputs(a: dict) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    q, bias = a["q"], a["bias"]
    dbias = torch.empty_like(bias) if a["need_dbias"] and bias is not None else q.new_empty((0,))
    return torch.empty_like(q), torch.empty_like(a["k"]), torch.empty_like(a["v"]), dbias


def _sdpa_bwd_cpu(*args, **kwargs):
    a = _BWD.bind(args, kwargs)
    dq, dk, dv, dbias = _bwd_outputs(a)
    _core.sdpa_backward(dq, dk, dv, a["dout"], a["q"], a["k"], a["v"], a["out"], a["lse"],
                        dbias=dbias if a["need_dbias"] and a["bias"] is not None else None, dlse=a["dlse"],
                        **_params.to_core(a))
    return dq, dk, dv, dbias


_sdpa_fwd = torch.library.custom_op("attn::sdpa_fwd", _sdpa_fwd_cpu, mutates_args=(), device_types="cpu",
                                    schema=_FWD.schema)
_sdpa_fwd.register_fake(lambda *args, **kwargs: _fwd_outputs(_FWD.bind(args, kwargs)))
_sdpa_bwd = torch.library.custom_op("attn::sdpa_bwd", _sdpa_bwd_cpu, mutates_args=(), device_types="cpu",
                                    schema=_BWD.schema)
_sdpa_bwd.register_fake(lambda *args, **kwargs: _bwd_outputs(_BWD.bind(args, kwargs)))


def _setup_context(ctx, inputs, keyword_only_inputs, output):
    a = _FWD.bind(inputs, keyword_only_inputs)
    _, lse, probs = output
    tensors = [n for n in _FWD.positional if isinstance(a[n], Tensor)]
    ctx.tensor_names = tensors
    ctx.values = {n: x for n, x in a.items() if n not in tensors}
    ctx.save_for_backward(output[0], lse, probs, *[a[n] for n in tensors])
    ctx.set_materialize_grads(False)  # an output the loss does not use gets None, not zeros


def _probs_grad(q, k, probs, dprobs, scale, dropout_p, softcap, cu_seqlens_q):
    """Score gradient of the returned weights: dS = P∘(dW − rowsum(P∘dW)) (softmax's Jacobian), in
    torch ops on the [B, Hq, L, S] tensors that returning the weights already materialised. Needs
    the weights to be the softmax itself: no dropout (the dropped entries' P is not kept), no
    softcap, no varlen packing."""
    if dropout_p > 0 or softcap > 0 or cu_seqlens_q is not None:
        raise ValueError("attn_output_weights: carry a gradient, expected dropout_p = 0, no softcap and no cu_seqlens "
                         "for that (detach the weights, or compute them with torch in this case)")
    p = probs.to(torch.float32 if probs.dtype != torch.float64 else torch.float64)
    dw = dprobs.to(p.dtype)
    ds = p * (dw - (p * dw).sum(-1, keepdim=True))
    g = q.shape[1] // k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k_exp = k.to(p.dtype).repeat_interleave(g, dim=1)
    dq = scale * (ds @ k_exp)
    dk = scale * (ds.transpose(-1, -2) @ q.to(p.dtype))
    dk = dk.view(k.shape[0], k.shape[1], g, *dk.shape[2:]).sum(2)
    return ds, dq, dk


def _backward(ctx, dout, dlse, dprobs):
    out, lse, probs, *saved = ctx.saved_tensors
    a = dict(ctx.values, **dict(zip(ctx.tensor_names, saved)))
    q, k, bias = a["q"], a["k"], a["bias"]
    bias_slot = _FWD.positional.index("bias")
    need_dbias = bias is not None and ctx.needs_input_grad[bias_slot]
    b = {n: a[n] for n in _BWD.defaults if n in a}  # the table's entries, by name
    b.update(dout=torch.zeros_like(out) if dout is None else dout, q=q, k=k, v=a["v"], out=out, lse=lse,
             need_dbias=need_dbias, dlse=dlse.contiguous() if dlse is not None else None)  # d lse_i/d s_ij = P_ij
    args, kwargs = _BWD.split(b)
    dq, dk, dv, dbias = _sdpa_bwd(*args, **kwargs)
    if dprobs is not None and dprobs.numel() > 0:
        ds, dq_w, dk_w = _probs_grad(q, k, probs, dprobs, a["scale"], a["dropout_p"], a["softcap"], a["cu_seqlens_q"])
        dq, dk = (dq + dq_w).to(dq.dtype), (dk + dk_w).to(dk.dtype)
        if need_dbias:
            dbias = (dbias + ds.sum_to_size(bias.shape)).to(dbias.dtype)
    grads = {"q": dq, "k": dk, "v": dv, "bias": dbias if need_dbias else None}
    return tuple(grads.get(n) for n in _FWD.positional)


_sdpa_fwd.register_autograd(_backward, setup_context=_setup_context)


# attn.torch's defaults where they are not the table's, as its signatures show them (applied in _attention).
_TORCH_DEFAULTS = {
    "alignment": ("top_left", "PyTorch's rule"),
    "num_threads": (None, "None = set_num_threads's setting"),
    "dropout_seed": (None, "None = drawn from torch's default generator, so torch.manual_seed reproduces it"),
}


def _attention(q: Tensor, k: Tensor, v: Tensor, *, bool_mask: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               need_probs: bool = False, **params) -> Tuple[Tensor, Tensor, Tensor]:
    """The one entry point of attn.torch's functions and modules: attn::sdpa_fwd on q [B, Hq, L, D],
    k [B, Hkv, S, D], v [B, Hkv, S, Dv] (any strides) with any parameter of the table by name, as a
    user gives it (sequences or tensors for lengths and slopes). attn.torch's defaults: alignment
    'top_left' (PyTorch's rule), num_threads from set_num_threads, and dropout's (seed, offset)
    drawn from torch's default generator unless given. Returns (out, lse, probs); bias is
    differentiable, probs is [B, Hq, L, S] post-dropout when need_probs (else empty)."""
    if params.get("alignment") is None:
        params["alignment"] = "top_left"
    if params.get("num_threads") is None:
        params["num_threads"] = _num_threads
    if params.get("dropout_p", 0.0) > 0 and params.get("dropout_seed") is None:
        rng = torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64)
        params["dropout_seed"] = rng[0]
        if params.get("dropout_offset") is None:
            params["dropout_offset"] = rng[1]
    a = _params.to_op(params, "attn.torch's sdpa")
    a.update(q=q, k=k, v=v, bool_mask=bool_mask, bias=bias, need_probs=need_probs)
    args, kwargs = _FWD.split(a)
    return _sdpa_fwd(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention


def _to_4d(t: Tensor, name: str) -> Tensor:
    if t.dim() == 4:
        return t
    if t.dim() < 2:
        raise ValueError(f"{name}: has shape {list(t.shape)}, expected [..., H, L, E] (at least 2 dims)")
    if t.dim() < 4:
        return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))
    return t.reshape(-1, *t.shape[-3:])


# Table entries that torch's own arguments of scaled_dot_product_attention set.
_SDPA_TORCH_ARGS = {"bool_mask", "bias", "causal", "dropout_p", "scale"}


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False, *, return_lse: bool = False, **params):
    """``torch.nn.functional.scaled_dot_product_attention`` computed by attn.

    query [N, ..., Hq, L, E], key [N, ..., Hkv, S, E], value [N, ..., Hkv, S, Ev] (torch's layout
    (N, H, L, E) is attn's [B, H, N, D]); returns [N, ..., Hq, L, Ev] in query's dimension order.
    attn_mask: bool (True = attend) or float (added), broadcast to [N, Hq, L, S]. is_causal:
    top-left causal. enable_gqa: allow Hkv dividing Hq. return_lse: also return lse [..., Hq, L]
    (natural log; float64 for float64 inputs, float32 otherwise).

    Extras (keyword-only; attn's parameter table, see help(attn.sdpa_forward)):
    """
    hq, hkv = query.shape[-3] if query.dim() >= 3 else 1, key.shape[-3] if key.dim() >= 3 else 1
    if hq != hkv and not enable_gqa:
        raise ValueError(f"key: has {hkv} heads, expected {hq} as query (or pass enable_gqa=True for GQA/MQA, "
                         "as torch.nn.functional.scaled_dot_product_attention)")
    for name in params:
        if name in _SDPA_TORCH_ARGS:
            raise TypeError(f"{name}: is given as a keyword, expected it through torch's arguments of "
                            "scaled_dot_product_attention (attn_mask, is_causal, dropout_p, scale)")
    lead = query.shape[:-3] if query.dim() >= 3 else ()
    q4, k4, v4 = _to_4d(query, "query"), _to_4d(key, "key"), _to_4d(value, "value")
    bool_mask = bias = None
    _check_mask_dtype("attn_mask", attn_mask, "True = attend")
    if attn_mask is not None:
        m = attn_mask
        if query.dim() > 4:
            m = m.expand(*lead, hq, q4.shape[2], k4.shape[2]).reshape(q4.shape[0], hq, q4.shape[2], k4.shape[2])
        if m.dtype == torch.bool:
            bool_mask = m
        else:
            bias = m
    out, lse, _ = _attention(q4, k4, v4, bool_mask=bool_mask, bias=bias, scale=scale, dropout_p=float(dropout_p),
                             causal=bool(is_causal), **params)
    if query.dim() != 4:
        out = out.reshape(*query.shape[:-1], value.shape[-1])
        lse = lse.reshape(query.shape[:-1])
    return (out, lse) if return_lse else out


def _sdpa_signature() -> None:
    """help(scaled_dot_product_attention) shows the table's extras with attn.torch's defaults."""
    sig = inspect.signature(scaled_dot_product_attention)
    ps = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    lines = []
    for p in _params.OP_PARAMS:
        if p.name in _SDPA_TORCH_ARGS:
            continue
        default, note = _TORCH_DEFAULTS.get(p.name, (p.default, ""))
        ps.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default))
        lines.append(f"    {p.name}: {p.type} = {default!r} ({p.doc}{'; ' + note if note else ''})")
    scaled_dot_product_attention.__signature__ = sig.replace(parameters=ps)
    scaled_dot_product_attention.__doc__ = scaled_dot_product_attention.__doc__.rstrip() + "\n" + "\n".join(lines) + "\n"


_sdpa_signature()


# --------------------------------------------------------------------------------------------
# MultiheadAttention


def _merge_masks(attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], n: int, h: int, l: int,
                 s: int, dtype: torch.dtype) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """torch's MHA masks (bool True = blocked, float added; attn_mask [L, S] or [N·H, L, S],
    key_padding_mask [N, S]) as attn's (bool_mask True = attend, bias), broadcastable to [N, H, L, S]."""
    parts = []
    if attn_mask is not None:
        if attn_mask.dim() == 3:
            if attn_mask.shape[0] != n * h:
                raise ValueError(f"attn_mask: has shape {list(attn_mask.shape)}, expected [L, S] = [{l}, {s}] or "
                                 f"[N·num_heads, L, S] = [{n * h}, {l}, {s}]")
            attn_mask = attn_mask.view(n, h, l, s)
        elif attn_mask.dim() != 2:
            raise ValueError(f"attn_mask: has shape {list(attn_mask.shape)}, expected [L, S] or [N·num_heads, L, S]")
        parts.append(attn_mask)
    if key_padding_mask is not None:
        if key_padding_mask.shape != (n, s):
            raise ValueError(f"key_padding_mask: has shape {list(key_padding_mask.shape)}, expected [N, S] = [{n}, {s}]")
        parts.append(key_padding_mask.view(n, 1, 1, s))
    if not parts:
        return None, None
    if all(p.dtype == torch.bool for p in parts):
        keep = ~parts[0]
        for p in parts[1:]:
            keep = keep & ~p
        return keep, None
    bias = None
    for p in parts:
        b = torch.zeros(p.shape, dtype=dtype, device=p.device).masked_fill(p, float("-inf")) \
            if p.dtype == torch.bool else p.to(dtype)
        bias = b if bias is None else bias + b
    return None, bias


class MultiheadAttention(AttentionCore):
    """``torch.nn.MultiheadAttention`` with attn as its attention core, plus ``num_kv_heads``.

    Same constructor, forward, returned weights (post-dropout; averaged over heads or per head)
    and state-dict names (``in_proj_weight``/``in_proj_bias`` or ``q_proj_weight``,
    ``k_proj_weight``, ``v_proj_weight`` when kdim/vdim differ; ``out_proj.weight``/``.bias``;
    ``bias_k``/``bias_v``), so ``load_state_dict`` works both ways for MHA. ``num_kv_heads``
    (dividing num_heads; default num_heads) makes it GQA/MQA: k and v project to
    num_kv_heads·head_dim, the fused ``in_proj_weight`` is [E + 2·Ekv, E], and such a module cannot
    load into ``torch.nn.MultiheadAttention`` (torch reports the size mismatch) nor load an MHA
    state dict (a ValueError says why). Differences: ``is_causal=True`` works without attn_mask
    (top-left causal); a fully masked row gives 0 where torch gives NaN; gradients through the
    returned weights need dropout off (in eval mode or dropout=0; otherwise backward raises).

    Inputs follow torch's rules, checked with errors naming the shapes: (L, E) unbatched,
    (B, L, E) with batch_first, (L, B, E) without; key and value of one batch size and length,
    the query's batch size, last dims embed_dim/kdim/vdim; masks bool (True = blocked) or
    floating (added), never integer. Nested [B, L_b, E] inputs (batch_first, no masks, no
    weights) attend within each row's length.

    Inside ``torch.nn.TransformerEncoderLayer``/``TransformerEncoder``/``TransformerDecoderLayer``
    it runs in training, eval + no_grad and inference_mode: torch's encoder layer would replace
    the module's call by its own fused kernel in eval without grad unless a submodule has hooks,
    so this module registers a no-op forward pre-hook (``_decline_fused_fast_path``) that keeps
    attn's kernels running; TransformerEncoder's nested tensors (from src_key_padding_mask) are
    accepted as above. Results match torch's layers with the same weights.
    """

    __constants__ = ["batch_first"]

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None, *, num_kv_heads=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self._init_shape(embed_dim, num_heads, num_heads if num_kv_heads is None else num_kv_heads, "num_kv_heads")
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.dropout = dropout
        self.batch_first = batch_first
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = nn.Parameter(torch.empty((embed_dim, embed_dim), **factory))
            self.k_proj_weight = nn.Parameter(torch.empty((self.kv_dim, self.kdim), **factory))
            self.v_proj_weight = nn.Parameter(torch.empty((self.kv_dim, self.vdim), **factory))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = nn.Parameter(torch.empty((embed_dim + 2 * self.kv_dim, embed_dim), **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(embed_dim + 2 * self.kv_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, self.kv_dim), **factory))
            self.bias_v = nn.Parameter(torch.empty((1, 1, self.kv_dim), **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()
        self._register_load_state_dict_pre_hook(self._check_state_dict)
        self.register_forward_pre_hook(_decline_fused_fast_path)

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_v)

    def _check_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A clear error for MHA weights loaded into a GQA/MQA module (or other head counts)."""
        for name in ("in_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias"):
            mine, theirs = getattr(self, name), state_dict.get(prefix + name)
            if mine is None or theirs is None or theirs.shape == mine.shape:
                continue
            raise ValueError(
                f"{prefix}{name}: has shape {list(theirs.shape)}, expected {list(mine.shape)} for this "
                f"MultiheadAttention (embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_kv_heads="
                f"{self.num_kv_heads}; weights of a module with other kv heads, e.g. a torch.nn.MultiheadAttention "
                f"into a GQA/MQA module, cannot be loaded without a reshape that would change the model)")

    def _in_weights(self):
        e, ekv = self.embed_dim, self.kv_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split([e, ekv, ekv])
        if self._qkv_same_embed_dim:
            wq, wk, wv = self.in_proj_weight.split([e, ekv, ekv])
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return wq, wk, wv, bq, bk, bv

    def _fused_qkv(self):
        return (self.in_proj_weight, self.in_proj_bias) if self._qkv_same_embed_dim else None

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        """torch's shape rules for query/key/value (the batch axis is 0 with batch_first, else 1)."""
        if query.dim() not in (2, 3):
            raise ValueError(f"query: has shape {list(query.shape)}, {_LAYOUTS}")
        for name, t in (("key", key), ("value", value)):
            if t.dim() != query.dim():
                raise ValueError(f"{name}: has shape {list(t.shape)}, but query has shape {list(query.shape)}, expected "
                                 f"the layout of query (query, key and value share one: {_LAYOUTS[len('expected '):]})")
        for name, t, e, what in (("query", query, self.embed_dim, "embed_dim"), ("key", key, self.kdim, "kdim"),
                                 ("value", value, self.vdim, "vdim")):
            if t.shape[-1] != e:
                raise ValueError(f"{name}: has shape {list(t.shape)}, expected a last dim of {what} = {e}")
        axis = None if query.dim() == 2 else (0 if self.batch_first else 1)
        if axis is not None and key.shape[axis] != query.shape[axis]:
            raise ValueError(f"key: has shape {list(key.shape)}, but query has shape {list(query.shape)}, expected "
                             f"the batch size of query (dim {axis}: {key.shape[axis]} != {query.shape[axis]})")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"value: has shape {list(value.shape)}, but key has shape {list(key.shape)}, expected key's "
                             "batch size and length")

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        if query.is_nested or key.is_nested or value.is_nested:
            return self._forward_nested(query, key, value, key_padding_mask, need_weights, attn_mask, is_causal)
        self._check_inputs(query, key, value)
        _check_mask_dtype("attn_mask", attn_mask, "True = blocked")
        _check_mask_dtype("key_padding_mask", key_padding_mask, "True = padding")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # [L, N, E] -> [N, L, E] (views)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, l, _ = query.shape
        hkv, d = self.num_kv_heads, self.head_dim
        q, k, v = self.project_qkv(query, key, value)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, self.kv_dim)], dim=1)
            v = torch.cat([v, self.bias_v.expand(n, 1, self.kv_dim)], dim=1)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        q, k, v = self.split_heads(q, self.num_heads), self.split_heads(k, hkv), self.split_heads(v, hkv)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(n, hkv, 1, d)], dim=2)
            v = torch.cat([v, v.new_zeros(n, hkv, 1, d)], dim=2)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        bool_mask, bias = _merge_masks(attn_mask, key_padding_mask, n, self.num_heads, l, k.shape[2], q.dtype)
        out, weights = self.attend(q, k, v, bool_mask=bool_mask, bias=bias, need_weights=bool(need_weights),
                                   average_attn_weights=average_attn_weights, causal=bool(is_causal))
        if unbatched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def _forward_nested(self, query, key, value, key_padding_mask, need_weights, attn_mask, is_causal):
        """Nested [B, L_b, E] inputs (what torch.nn.TransformerEncoder builds from src_key_padding_mask in
        eval mode without grad): padded to [B, max L_b, E], the keys beyond each L_b masked, the
        output nested again with query's lengths."""
        if not (query.is_nested and key.is_nested and value.is_nested):
            raise ValueError("query, key and value: some are nested tensors and some are not, expected all or none")
        if not self.batch_first:
            raise ValueError("query: is a nested tensor with batch_first=False, expected batch_first=True "
                             "([B, L_b, E]) for nested inputs")
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError("key_padding_mask/attn_mask: given with nested inputs, which carry their own lengths "
                             "(expected None)")
        if need_weights:
            raise ValueError("need_weights: is True with nested inputs, expected False (weights are dense)")
        q_lengths = [t.shape[0] for t in query.unbind()]
        k_lengths = [t.shape[0] for t in key.unbind()]
        padded = [torch.nested.to_padded_tensor(t, 0.0) for t in (query, key, value)]
        s = padded[1].shape[1]
        padding = torch.arange(s, device=padded[1].device)[None, :] >= torch.tensor(k_lengths)[:, None]
        out, _ = self.forward(*padded, key_padding_mask=padding, need_weights=False, is_causal=is_causal)
        rows = [out[b, :n] for b, n in enumerate(q_lengths)]
        return torch.nested.as_nested_tensor(rows, layout=query.layout), None


def _decline_fused_fast_path(module, args):
    """A no-op forward pre-hook. torch.nn.TransformerEncoderLayer replaces its self_attn call by
    torch's fused kernel (torch._transformer_encoder_layer_fwd, through self_attn.merge_masks) in
    eval mode without grad, unless a submodule has hooks: this hook keeps the layer calling
    attn's module, so attn's kernels run in every mode."""
    return None


_LAYOUTS = "expected (L, E) unbatched, (B, L, E) with batch_first=True or (L, B, E) with batch_first=False"

from .linear import linear_attention, linear_attention_step  # noqa: E402,F401  (docs/linear_attention.md)
from .sparse import strided_attention  # noqa: E402,F401  (docs/sparse_attention.md)

# Foreign state dicts (torch, Hugging Face BERT/LLaMA/GPT-2, W_Q/W_K/W_V/W_O) for MultiheadAttention:
# the name maps and reports live in attn/state_dict.py.
from .state_dict import export_state_dict, load_state_dict  # noqa: E402

__all__ += ["load_state_dict", "export_state_dict"]

# The seeds' classes (MultiHeadAttention, MultiQueryAttention, GroupQueryAttention, get_attention): the same
# AttentionCore as MultiheadAttention above, with the seeds' layout and masks (attn/modules.py, docs/modules.md).
from .modules import (GroupQueryAttention, KVCache, LinearAttention, LocalAttention,  # noqa: E402
                      MultiHeadAttention, MultiQueryAttention, ProjectedKV, StridedAttention, get_attention)

__all__ += ["MultiHeadAttention", "MultiQueryAttention", "GroupQueryAttention", "LocalAttention", "LinearAttention",
            "StridedAttention", "get_attention", "ProjectedKV", "KVCache"]

# Transformer layers, stacks and models on the seeds' classes (attn/layers.py, attn/transformer.py, docs/layers.md).
from .layers import LinearState, TransformerDecoderLayer, TransformerEncoderLayer  # noqa: E402
from .transformer import (RegressionTransformer, TransformerDecoder, TransformerEncoder,  # noqa: E402
                          TransformerModel)

__all__ += ["TransformerEncoderLayer", "TransformerDecoderLayer", "LinearState", "TransformerEncoder",
            "TransformerDecoder", "TransformerModel", "RegressionTransformer"]
